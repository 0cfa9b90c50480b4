"""The generated control-API types go stale, and `--check` says so, when a model changes.

`make lint` runs `python -m nstarx_jupyter.serving.control_schema --check` and (through `npm run
typecheck`) `node labextension/gen-types.mjs --check`. Here the whole chain runs on a copy of
the generator and its files in tmp_path: a model added to a control module makes the schema,
then the TypeScript, stale until each is written again.
"""

from __future__ import annotations

import shutil
import subprocess
import types
from pathlib import Path

import pytest

from nstarx_jupyter.pipelines import served
from nstarx_jupyter.protocol import control
from nstarx_jupyter.serving import control_schema

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (ROOT / "node_modules" / "json-schema-to-typescript").exists(),
    reason="no node, or the front ends' node_modules are not installed",
)


def _gen_types(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run([NODE, str(folder / "gen-types.mjs"), *args], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_a_changed_model_fails_both_checks_until_both_files_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    shutil.copy(ROOT / "labextension" / "gen-types.mjs", tmp_path)
    shutil.copytree(ROOT / "labextension" / "src" / "generated", tmp_path / "src" / "generated")
    schema = tmp_path / "src" / "generated" / "control.schema.json"
    assert control_schema.main(["--check", "--file", str(schema)]) == 0
    assert _gen_types(tmp_path, "--check").returncode == 0

    class Verdict(control.Answer):
        """An answer a later change adds."""

        score: float
        drifted: list[str]

    module = types.ModuleType("added")
    module.Verdict = Verdict  # type: ignore[attr-defined]
    module.__all__ = ["Verdict"]  # type: ignore[attr-defined]
    monkeypatch.setattr(control_schema, "CONTROL_MODULES", (control, served, module))
    assert control_schema.main(["--check", "--file", str(schema)]) == 1
    assert control_schema.main(["--file", str(schema)]) == 0

    stale = _gen_types(tmp_path, "--check")
    assert stale.returncode == 1
    assert "control.ts is stale" in stale.stderr
    assert "api.ts" not in stale.stderr  # only the file whose schema changed
    assert _gen_types(tmp_path).returncode == 0
    assert _gen_types(tmp_path, "--check").returncode == 0
    written = (tmp_path / "src" / "generated" / "control.ts").read_text()
    assert "export interface Verdict {\n  drifted: string[];\n  score: number;\n" in written
