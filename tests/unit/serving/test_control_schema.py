"""The control API's JSON Schema for the front ends: every answer model found, staleness caught."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from pydantic import BaseModel

from nstarx_jupyter.pipelines import served
from nstarx_jupyter.protocol import control
from nstarx_jupyter.serving import control_schema
from nstarx_jupyter.serving.control_schema import control_models, main, schema_text

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / control_schema.DEFAULT_FILE


def _exported_models(module: types.ModuleType) -> set[str]:
    return {name for name in module.__all__
            if isinstance(getattr(module, name), type)
            and issubclass(getattr(module, name), BaseModel)}  # fmt: skip


def test_every_model_the_control_modules_export_is_in_the_schema() -> None:
    defs = json.loads(schema_text())["$defs"]
    for module in (control, served):
        assert _exported_models(module) <= set(defs), module.__name__
    assert "KeyState" not in defs  # a Literal alias is inlined where a model uses it
    assert defs["KeyRecord"]["properties"]["state"]["enum"] == ["active", "expired", "revoked"]
    # As sent: a field the server leaves out when it has no value is optional.
    assert "expires" not in defs["KeyRecord"]["required"]
    assert "spec" in defs["PipelineView"]["required"]


def test_a_model_added_to_a_control_module_is_found_without_listing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("added")

    class DriftFigures(control.Answer):
        """An answer a later change adds."""

        score: float

    module.DriftFigures = DriftFigures  # type: ignore[attr-defined]
    module.Helper = int  # type: ignore[attr-defined]  # exported but no model: skipped
    module.__all__ = ["DriftFigures", "Helper"]  # type: ignore[attr-defined]
    monkeypatch.setattr(control_schema, "CONTROL_MODULES", (control, served, module))
    assert control_models()[-1] is DriftFigures
    assert int not in control_models()  # type: ignore[comparison-overlap]
    assert json.loads(schema_text())["$defs"]["DriftFigures"]["required"] == ["score"]


def test_the_committed_schema_is_fresh() -> None:
    assert main(["--check", "--file", str(COMMITTED)]) == 0


def test_check_fails_when_a_model_changed_and_the_file_was_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "control.schema.json"
    assert main(["--check", "--file", str(target)]) == 1  # missing counts as stale
    assert main(["--file", str(target)]) == 0
    assert main(["--check", "--file", str(target)]) == 0

    class KeyRecord(control.KeyRecord):  # the same model, one field more
        label: str

    module = types.ModuleType("changed")
    module.KeyRecord = KeyRecord  # type: ignore[attr-defined]
    module.__all__ = ["KeyRecord"]  # type: ignore[attr-defined]
    monkeypatch.setattr(control_schema, "CONTROL_MODULES", (module,))
    capsys.readouterr()
    assert main(["--check", "--file", str(target)]) == 1
    assert f"{target} stale: run python -m nstarx_jupyter.serving.control_schema" in (
        capsys.readouterr().err
    )
    assert main(["--file", str(target)]) == 0
    assert main(["--check", "--file", str(target)]) == 0
    written = json.loads(target.read_text())["$defs"]["KeyRecord"]
    assert "label" in written["required"]
