"""The `*.pipeline.json` format: its version number and the migrations between versions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines import spec as spec_module
from nstarx_jupyter.pipelines.spec import SCHEMA_VERSION, PipelineSpec, migrate

DOC: dict[str, Any] = {
    "name": "fraud",
    "nodes": [{"id": "in", "component": "validate"}, {"id": "out", "component": "fields"}],
    "edges": [{"id": "e1", "source": "in", "target": "out"}],
}


def test_a_document_without_a_version_is_read_as_the_first_format() -> None:
    spec = PipelineSpec.parse(json.dumps(DOC))
    assert spec.schema_version == SCHEMA_VERSION
    assert [node.id for node in spec.nodes] == ["in", "out"]
    assert json.loads(spec.to_json())["schema_version"] == SCHEMA_VERSION


def test_the_current_format_is_read_unchanged() -> None:
    written = PipelineSpec.parse(DOC).to_json()
    assert PipelineSpec.parse(written).to_json() == written


def test_a_newer_format_is_refused_naming_both_versions() -> None:
    with pytest.raises(InvalidInputError, match=r"schema_version 7 is newer .*\(1\)"):
        PipelineSpec.parse({**DOC, "schema_version": 7})


@pytest.mark.parametrize("bad", ["1", -1, True, 1.5])
def test_a_version_that_is_not_a_number_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="schema_version"):
        migrate({**DOC, "schema_version": bad})


def test_migrations_run_one_format_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A document two formats old goes through both steps, in order, to the current one."""
    steps: list[int] = []

    def step(version: int) -> Any:
        def run(doc: dict[str, Any]) -> dict[str, Any]:
            steps.append(version)
            renamed = {**doc, "schema_version": version + 1}
            if version == 1:  # the imagined format 2 renamed `title` to `description`
                renamed["description"] = renamed.pop("title", "")
            return renamed

        return run

    monkeypatch.setattr(spec_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(spec_module, "MIGRATIONS", {0: step(0), 1: step(1)})
    migrated = spec_module.migrate({**DOC, "title": "scores payments"})
    assert steps == [0, 1]
    assert migrated["schema_version"] == 2
    assert migrated["description"] == "scores payments"
    assert "title" not in migrated


def test_malformed_json_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="not JSON"):
        PipelineSpec.parse("{nodes: [")
