"""`Component[ConfigT]`: the type parameter names a component's config model, and the older way
(`class Mine(Component)` with `Config = MineConfig`) keeps working beside it."""

from __future__ import annotations

import types
from typing import Any, ClassVar

import pytest
from pydantic import Field
from typing_extensions import TypeVar

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.notebook.pipeline import Pipeline
from nstarx_jupyter.pipelines import Batch, Component, ComponentConfig, register_component
from nstarx_jupyter.pipelines.contract import check_component


@pytest.fixture(autouse=True)
def _library_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's registrations go with it (the library is process-wide)."""
    from nstarx_jupyter.pipelines import component, palette

    palette.components()  # the built-ins and plug-ins, loaded once for every test
    monkeypatch.setattr(component, "_LIBRARY", dict(component._LIBRARY))


ScaleConfigT = TypeVar("ScaleConfigT", bound="ScaleByConfig")


class ScaleByConfig(ComponentConfig):
    field: str = Field(description="The field to scale.")
    factor: float = Field(default=2.0, description="What the field is multiplied by.")


class ScaleBy(Component[ScaleByConfig]):
    """A typed custom component: `self.config` and `problems`' config are `ScaleByConfig`."""

    kind: ClassVar[Any] = "input"
    name: ClassVar[str] = "test-scale-by"

    @classmethod
    def problems(cls, config: ScaleByConfig) -> list[str]:
        return [] if config.factor else ["a factor of 0 loses the field"]

    def process(self, batch: Batch) -> Batch:
        field, factor = self.config.field, self.config.factor
        return batch.replace([{**row, field: row[field] * factor} for row in batch.rows])


def test_the_type_parameter_is_the_config_the_palette_and_a_pipeline_use() -> None:
    assert ScaleBy.Config is ScaleByConfig
    schema = ScaleBy.describe()["config_schema"]
    assert schema == ScaleByConfig.model_json_schema()
    assert check_component(ScaleBy, {"field": "x"}, [{"x": 1.5}]) == {
        "out": Batch([{"x": 3.0}], [10])
    }
    register_component(ScaleBy)
    pipe = Pipeline(name="typed")
    pipe.add("test-scale-by", "triple", field="x", factor=3)
    pipe.add("records", "out")
    pipe.chain("triple", "out")
    assert pipe.predict({"x": 2}) == {"x": 6}
    pipe.add("test-scale-by", "nothing", field="x", factor=0)
    pipe.chain("triple", "nothing")
    assert [p.message for p in pipe.validate() if p.code == "invalid-config"] == [
        "a factor of 0 loses the field"
    ]


def test_a_subclass_inherits_the_config_and_may_set_a_wider_one() -> None:
    class ScaleByWithNote(ScaleByConfig):
        note: str = Field(default="", description="Kept with the node.")

    class Inherited(ScaleBy):
        name: ClassVar[str] = "test-inherited"

    class Widened(ScaleBy):
        name: ClassVar[str] = "test-widened"
        Config: ClassVar[type[ComponentConfig]] = ScaleByWithNote

    assert Inherited.Config is ScaleByConfig
    assert Widened.Config is ScaleByWithNote


def test_a_generic_base_passes_its_parameter_on_to_the_concrete_class() -> None:
    class Scaler(Component[ScaleConfigT]):
        kind: ClassVar[Any] = "input"

    class Concrete(Scaler[ScaleByConfig]):
        name: ClassVar[str] = "test-concrete"

    assert Scaler.Config is ComponentConfig  # a type variable names no model yet
    assert Concrete.Config is ScaleByConfig


def test_a_config_the_type_parameter_contradicts_is_refused_where_the_class_is_written() -> None:
    class Other(ComponentConfig):
        pass

    with pytest.raises(TypeError, match=r"Mismatched.Config is .*Other.*not the ScaleByConfig"):

        class Mismatched(Component[ScaleByConfig]):
            Config: ClassVar[type[ComponentConfig]] = Other


def test_a_type_parameter_that_is_not_a_component_config_is_refused() -> None:
    written = types.GenericAlias(Component, (dict,))  # `Component[dict]`, unchecked by mypy
    with pytest.raises(TypeError, match="must be a ComponentConfig subclass, not <class 'dict'>"):
        types.new_class("Untyped", (written,))


def test_the_older_way_without_a_type_parameter_still_declares_the_config() -> None:
    class Doubler(Component):
        kind: ClassVar[Any] = "input"
        name: ClassVar[str] = "test-doubler"
        Config: ClassVar[type[ComponentConfig]] = ScaleByConfig
        config: ScaleByConfig

        def process(self, batch: Batch) -> Batch:
            field = self.config.field
            return batch.replace([{**row, field: row[field] * 2} for row in batch.rows])

    class Empty(Component):
        kind: ClassVar[Any] = "input"
        name: ClassVar[str] = "test-empty"

    assert Doubler.Config is ScaleByConfig
    assert Empty.Config is ComponentConfig
    assert check_component(Doubler, {"field": "x"}, [{"x": 1}])["out"].rows == [{"x": 2}]
    with pytest.raises(InvalidInputError, match="Config must be a pydantic model"):
        register_component(type("Broken", (Doubler,), {"name": "test-broken", "Config": 1}))
