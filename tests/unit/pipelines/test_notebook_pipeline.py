"""`Pipeline` in the notebook: building, fitting, test runs in the kernel, versions in the
registry, custom components, and the KServe compilation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from nstarx_jupyter.errors import ConflictError, InvalidInputError, NotFoundError
from nstarx_jupyter.notebook.pipeline import Pipeline
from nstarx_jupyter.pipelines import (
    Batch,
    Component,
    ComponentConfig,
    components,
    register_component,
)
from tests.conftest import IRIS_FEATURES

ROW = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


def _iris(named_iris: Path) -> Pipeline:
    pipe = Pipeline(name="flowers")
    pipe.add("impute", "fill", strategy="mean", columns=IRIS_FEATURES)
    pipe.add("model", "clf", model=named_iris.as_uri())
    pipe.add("fields", "out", fields={"species": "prediction", "confidence": "confidence"})
    pipe.chain("fill", "clf", "out")
    return pipe


def test_build_fit_and_run_in_the_kernel(named_iris: Path) -> None:
    pipe = _iris(named_iris)
    assert [p.code for p in pipe.validate()] == ["not-fitted"]
    pipe.fit([ROW, {**ROW, "sepal_length": 6.1}])
    assert pipe.spec.node("fill").config["values"]["sepal_length"] == pytest.approx(5.6)
    assert pipe.validate() == []
    result = pipe.run({**ROW, "petal_width": None})
    assert result.output["species"] == 0
    assert set(result.nodes) == {"fill", "clf", "out"}
    assert result.nodes["fill"].preview["out"][0]["petal_width"] == pytest.approx(0.2)
    with pytest.raises(InvalidInputError, match="already exists"):
        pipe.add("records", "out")
    pipe.remove("out")
    assert [n.id for n in pipe.spec.nodes] == ["fill", "clf"]
    assert [e.target for e in pipe.spec.edges] == ["clf"]
    with pytest.raises(NotFoundError):
        pipe.remove("nope")


def test_fit_names_the_node_that_fails_on_the_reference() -> None:
    pipe = Pipeline(name="p")
    pipe.add("validate", "check", schema={"type": "object", "required": ["a"]})
    pipe.add("records", "out")
    pipe.chain("check", "out")
    with pytest.raises(InvalidInputError, match="fit: node 'check': row 1"):
        pipe.fit([{"a": 1}, {"b": 2}])


@pytest.mark.xdist_group("mlflow")  # with the registry tests: one MLflow import
def test_versions_diff_and_restore_in_the_registry(named_iris: Path) -> None:
    pytest.importorskip("mlflow")
    pipe = _iris(named_iris).fit([ROW])
    first = pipe.save("first", author="ann")
    pipe.configure("out", fields={"species": "prediction"})
    pipe.add("records", "unused")
    second = pipe.save("fewer fields")
    assert (first, second) == (1, 2)
    versions = pipe.versions()
    assert list(versions["version"]) == [2, 1]
    assert list(versions["message"]) == ["fewer fields", "first"]
    assert versions["author"].iloc[1] == "ann"
    diff = pipe.diff(first, second)
    assert diff.added_nodes == ["unused"]
    assert set(diff.changed_nodes) == {"out"}
    assert '"confidence": "confidence"' in diff.text
    assert not pipe.diff(second)  # nothing changed since
    third = pipe.restore(first)
    assert third == 3
    assert Pipeline.load("flowers").spec == Pipeline.load("flowers", first).spec
    with pytest.raises(NotFoundError, match="no version 9"):
        Pipeline.load("flowers", 9)


@pytest.mark.xdist_group("mlflow")  # with the registry tests: one MLflow import
def test_a_pipeline_name_taken_by_a_model_is_refused(named_iris: Path) -> None:
    pytest.importorskip("mlflow")
    from sklearn.linear_model import LogisticRegression

    from nstarx_jupyter.registry import Registry

    registry = Registry()
    registry.register(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "flowers")
    with pytest.raises(ConflictError, match="already a registered model"):
        _iris(named_iris).fit([ROW]).save()
    assert list(registry.models()["name"]) == ["flowers"]


class _DoubleConfig(ComponentConfig):
    field: str = Field(description="The field to double.")


class Double(Component):
    """A custom component, as a notebook would write one."""

    kind: ClassVar[Any] = "input"
    name: ClassVar[str] = "double"
    title: ClassVar[str] = "Double a field"
    Config: ClassVar[type[ComponentConfig]] = _DoubleConfig

    def process(self, batch: Batch) -> Batch:
        field = getattr(self.config, "field", "")
        return batch.replace([{**row, field: row[field] * 2} for row in batch.rows])


def test_a_custom_component_registers_runs_and_shows_in_the_palette() -> None:
    register_component(Double, replace=True)
    entry = components()["double"].describe()
    assert entry["kind"] == "input"
    assert entry["config_schema"]["properties"]["field"]["description"] == "The field to double."
    assert entry["inputs"] == [{"name": "in", "type": "records", "many": False, "required": True}]
    other = type("Other", (Double,), {})
    with pytest.raises(ConflictError, match="already registered"):
        register_component(other)
    pipe = Pipeline(name="custom")
    pipe.add("double", "twice", field="x")
    pipe.add("records", "out")
    pipe.chain("twice", "out")
    assert pipe.predict({"x": 2}) == {"x": 4}
    with pytest.raises(InvalidInputError, match="Component subclass"):
        register_component(object)  # type: ignore[arg-type]


def test_to_kserve_needs_remote_artifacts(named_iris: Path) -> None:
    pipe = _iris(named_iris).fit([ROW])
    with pytest.raises(InvalidInputError, match="clf"):
        pipe.to_kserve()
    docs = pipe.to_kserve(storage_uris={named_iris.as_uri(): "s3://models/iris/1"})
    assert [d["kind"] for d in docs] == ["InferenceService", "InferenceGraph"]


def test_components_from_an_entry_point_join_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package declares `[project.entry-points."nstarx_jupyter.components"]`."""
    from nstarx_jupyter.pipelines.palette import load_entry_points

    (tmp_path / "acme_steps.py").write_text(
        "from nstarx_jupyter.pipelines import Component\n"
        "class Upper(Component):\n"
        "    kind = 'input'\n"
        "    name = 'acme-upper'\n"
        "    def process(self, batch):\n"
        "        return batch.replace([{k: str(v).upper() for k, v in r.items()}"
        " for r in batch.rows])\n"
        "class Broken:\n"
        "    pass\n"
    )
    dist = tmp_path / "acme_steps-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-steps\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[nstarx_jupyter.components]\nupper = acme_steps:Upper\nbroken = acme_steps:Broken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_entry_points() == ["acme-upper"]  # the broken one is logged and skipped
    assert components()["acme-upper"].kind == "input"
    pipe = Pipeline(name="shout")
    pipe.add("acme-upper", "up")
    pipe.add("records", "out")
    pipe.chain("up", "out")
    assert pipe.predict({"word": "hi"}) == {"word": "HI"}
