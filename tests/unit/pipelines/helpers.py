"""Small components for testing the validator and the executor apart from the library."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    Port,
    register_component,
)
from nstarx_jupyter.pipelines.spec import PipelineSpec

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class AddConfig(ComponentConfig):
    field: str = "x"
    amount: float = Field(description="Added to the field.")
    delay_s: float = 0.0


@register_component
class Add(Component):
    """Adds `amount` to a field, after `delay_s` of waiting (to see branches overlap)."""

    kind: ClassVar[Any] = "input"
    name: ClassVar[str] = "test-add"
    Config: ClassVar[type[ComponentConfig]] = AddConfig
    waiting: ClassVar[int] = 0
    """How many `Add` steps are in their delay right now."""
    most_waiting: ClassVar[int] = 0
    """The most that were at once (a test resets it): 2 when two branches overlapped."""

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        config: Any = self.config
        if config.delay_s:
            Add.waiting += 1
            Add.most_waiting = max(Add.most_waiting, Add.waiting)
            try:
                await asyncio.sleep(config.delay_s)
            finally:
                Add.waiting -= 1
        batch = Batch.merge([b for port in inputs.values() for b in port])
        if any(row.get(config.field) == "boom" for row in batch.rows):
            raise InvalidInputError(f"field '{config.field}' is boom")
        rows = [{**row, config.field: row[config.field] + config.amount} for row in batch.rows]
        return {"out": batch.replace(rows)}


@register_component
class Score(Component):
    """A stand-in model: `prediction` = x * weight."""

    kind: ClassVar[Any] = "model"
    name: ClassVar[str] = "test-score"

    class Config(ComponentConfig):
        weight: float = 1.0
        output: str = "prediction"

    @classmethod
    def ports(cls, config: ComponentConfig | None) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        return (Port("in", "records"),), (Port("out", "scored"),)

    def process(self, batch: Batch) -> Batch:
        config: Any = self.config
        return batch.replace([{**r, config.output: r["x"] * config.weight} for r in batch.rows])


@register_component
class Mean(Component):
    """A stand-in ensemble: the mean of the `p*` fields present in each row."""

    kind: ClassVar[Any] = "ensemble"
    name: ClassVar[str] = "test-mean"

    @classmethod
    def ports(cls, config: ComponentConfig | None) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        return (Port("in", "scored", many=True),), (Port("out", "scored"),)

    def process(self, batch: Batch) -> Batch:
        rows = []
        for row in batch.rows:
            scores = [v for k, v in row.items() if k.startswith("p")]
            rows.append({**row, "mean": sum(scores) / len(scores)})
        return batch.replace(rows)


@register_component
class Split(Component):
    """A stand-in router: rows with x > limit go to `high`, the others to `default`."""

    kind: ClassVar[Any] = "router"
    name: ClassVar[str] = "test-split"

    class Config(ComponentConfig):
        limit: float = 0.0
        default: str = "default"

    @classmethod
    def ports(cls, config: ComponentConfig | None) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        return (Port("in", "any"),), (Port("high", "any"), Port("default", "any"))

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        batch = Batch.merge(list(inputs["in"]))
        limit = getattr(self.config, "limit", 0.0)
        high = [i for i, row in enumerate(batch.rows) if row["x"] > limit]
        low = [i for i in range(len(batch)) if i not in high]
        return {"high": batch.subset(high), "default": batch.subset(low)}


@register_component
class Fields(Component):
    """A stand-in formatter: the listed fields of each row."""

    kind: ClassVar[Any] = "output"
    name: ClassVar[str] = "test-fields"

    class Config(ComponentConfig):
        fields: list[str] = Field(default_factory=lambda: ["x"])

    @classmethod
    def ports(cls, config: ComponentConfig | None) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        return (Port("in", "any"),), (Port("out", "response"),)

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        batch = Batch.merge([b for port in inputs.values() for b in port])
        fields: list[str] = getattr(self.config, "fields", [])
        return {"out": [{f: row.get(f) for f in fields} for row in batch.rows]}


def chain(*components: tuple[str, dict[str, Any]], name: str = "p") -> PipelineSpec:
    """A straight pipeline n0 → n1 → ... of the given (component, config) pairs."""
    nodes = [
        {"id": f"n{i}", "component": c, "config": cfg} for i, (c, cfg) in enumerate(components)
    ]
    edges = [{"id": f"e{i}", "source": f"n{i}", "target": f"n{i + 1}"}
             for i in range(len(components) - 1)]  # fmt: skip
    return PipelineSpec.model_validate({"name": name, "nodes": nodes, "edges": edges})
