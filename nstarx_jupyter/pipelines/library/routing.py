"""The router step: each row down the first branch whose conditions it meets, or the default.

Conditions test a record's fields (`amount > 1000`, `country in [...]`). The same conditions
render as GJSON for a KServe InferenceGraph Switch (`gjson_condition`), where they test the
request body instead of each row.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import random
import re
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    Port,
    register_component,
)
from nstarx_jupyter.pipelines.library._fields import Scalar, merged, where
from nstarx_jupyter.pipelines.spec import ID

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["Condition", "ConditionRouter", "RouterBranch", "RouterConfig", "SplitConfig",
           "TrafficSplit", "gjson_condition"]  # fmt: skip


# -- router --------------------------------------------------------------------------------------

Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in", "exists"]
_ORDERING = ("<", "<=", ">", ">=")


class Condition(BaseModel):
    """One test of a record's field; a missing or null field fails every test but `exists`."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, description="The record field tested.")
    op: Operator = Field(default="==", description="The comparison.")
    value: Scalar | list[Scalar] | None = Field(
        default=None,
        description="What the field is compared with (a list for 'in' and 'not in'; none for "
        "'exists').",
    )

    def holds(self, row: dict[str, Any], position: int) -> bool:
        """Whether the test passes for `row` (incomparable values are the caller's mistake)."""
        if self.op == "exists":
            return self.field in row
        found = row.get(self.field)
        if found is None:
            return False
        if self.op in ("in", "not in"):
            options = self.value if isinstance(self.value, list) else [self.value]
            return (found in options) == (self.op == "in")
        try:
            return bool(_COMPARE[self.op](found, self.value))
        except TypeError:
            raise InvalidInputError(
                f"{where(position)}: field '{self.field}' = {found!r} cannot be compared "
                f"with {self.value!r}"
            ) from None


_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class RouterBranch(BaseModel):
    """A named output taking the rows for which every condition holds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ID, description="The output port (and branch) name.")
    when: list[Condition] = Field(
        default_factory=list, description="Conditions that must all hold."
    )

    def matches(self, row: dict[str, Any], position: int) -> bool:
        """Whether every condition holds for `row`."""
        return all(condition.holds(row, position) for condition in self.when)


class RouterConfig(ComponentConfig):
    """Config of `router`."""

    branches: list[RouterBranch] = Field(
        default_factory=list,
        description="Branches in order: a row takes the first branch whose conditions all hold.",
    )
    default: str = Field(
        default="default", pattern=ID, description="The output for rows no branch takes."
    )


@register_component
class ConditionRouter(Component[RouterConfig]):
    """Sends each record down the first branch whose conditions it meets."""

    kind = "router"
    name = "router"
    title = "Router"
    description = "Send each record down the first branch whose conditions it meets."

    @classmethod
    def ports(cls, config: RouterConfig | None) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        """One output per branch, then the default output."""
        if config is None:
            return (Port("in", "records"),), (Port("default", "any"),)
        names = dict.fromkeys([*(branch.name for branch in config.branches), config.default])
        return (Port("in", "records"),), tuple(Port(name, "any") for name in names)

    @classmethod
    def problems(cls, config: RouterConfig) -> list[str]:
        """No branches, duplicate names, a branch named like the default, unusable values."""
        if not config.branches:
            return ["a router needs at least one branch"]
        problems = []
        names = Counter(branch.name for branch in config.branches)
        problems += [f"{count} branches are named '{name}'" for name, count in names.items()
                     if count > 1]  # fmt: skip
        if config.default in names:
            problems.append(f"branch '{config.default}' has the name of the default output")
        for branch in config.branches:
            if not branch.when:
                problems.append(f"branch '{branch.name}' has no conditions: it takes every row")
            problems += [f"branch '{branch.name}': {p}" for c in branch.when if (p := _problem(c))]
        return problems

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """A batch per output (empty for an output no row takes)."""
        batch = merged(inputs)
        ports = [port.name for port in self.ports(self.config)[1]]
        chosen: dict[str, list[int]] = {name: [] for name in ports}
        for i, (position, row) in enumerate(zip(batch.index, batch.rows, strict=True)):
            branch = next((b for b in self.config.branches if b.matches(row, position)), None)
            chosen[branch.name if branch is not None else self.config.default].append(i)
        return {name: batch.subset(rows) for name, rows in chosen.items()}


class SplitConfig(ComponentConfig):
    """Config of `split`."""

    weights: dict[str, int] = Field(
        description='Percent of the rows per output, adding up to 100 (e.g. {"a": 90, '
        '"b": 10}); each name is an output to connect.'
    )
    key: str | None = Field(
        default=None,
        description="A field whose value picks the output (the same value always goes the "
        "same way: sticky); empty picks at random per row.",
    )
    seed: int = Field(default=0, description="Seed of the random choice (with no key).")

    @property
    def default(self) -> str:
        """The first output: the one a validator holds to be the default."""
        return next(iter(self.weights), "")


@register_component
class TrafficSplit(Component[SplitConfig]):
    """Sends each row to one output by percentages: an A/B split inside a pipeline."""

    kind = "router"
    name = "split"
    title = "Split"
    description = "Send a share of the rows to each output (A/B tests); sticky with a key field."

    @classmethod
    def ports(cls, config: SplitConfig | None) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        """One output per weight."""
        if config is None:
            return (Port("in", "records"),), ()
        return (Port("in", "records"),), tuple(Port(name, "any") for name in config.weights)

    @classmethod
    def problems(cls, config: SplitConfig) -> list[str]:
        """Fewer than two outputs, negative weights, or weights not adding up to 100."""
        problems = []
        if len(config.weights) < 2:
            problems.append("a split needs at least two outputs")
        if any(weight < 0 for weight in config.weights.values()):
            problems.append("weights cannot be negative")
        if sum(config.weights.values()) != 100:
            problems.append(f"weights add up to {sum(config.weights.values())}, not 100")
        return problems

    @functools.cached_property
    def _random(self) -> random.Random:
        return random.Random(self.config.seed)  # noqa: S311 - traffic shares, not secrets

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """A batch per output, each row where its draw (or its key's hash) falls."""
        batch = merged(inputs)
        names = list(self.config.weights)
        bounds = list(itertools.accumulate(self.config.weights.values()))
        chosen: dict[str, list[int]] = {name: [] for name in names}
        for i, row in enumerate(batch.rows):
            point = self._point(row)
            chosen[names[bisect.bisect_right(bounds, point)]].append(i)
        return {name: batch.subset(rows) for name, rows in chosen.items()}

    def _point(self, row: dict[str, Any]) -> int:
        """Where in 0..99 a row falls: by its key's hash (sticky), else at random."""
        if self.config.key is None:
            return self._random.randrange(100)
        digest = hashlib.sha256(json.dumps(row.get(self.config.key)).encode()).digest()
        return int.from_bytes(digest[:4], "big") % 100


def _problem(condition: Condition) -> str | None:
    """What is wrong with a condition's value for its operator, if anything."""
    value, op = condition.value, condition.op
    if op in ("in", "not in") and not isinstance(value, list):
        return f"'{condition.field} {op}' needs a list of values"
    if op not in ("in", "not in", "exists") and isinstance(value, list):
        return f"'{condition.field} {op}' compares with one value, not a list"
    if op in _ORDERING and (value is None or isinstance(value, bool)):
        return f"'{condition.field} {op}' needs a number or a string"
    if op in ("==", "!=") and value is None:
        return f"'{condition.field} {op} null' never holds; use 'exists'"
    return None


# -- GJSON (KServe InferenceGraph Switch conditions) ---------------------------------------------

_GJSON_SPECIAL = re.compile(r'([\\|#@*?!=<>%()\[\]{},:"~ ])')


def gjson_condition(branch: RouterBranch, records: str = "instances") -> str:
    """The branch's conditions as a KServe InferenceGraph `Switch` step condition (GJSON).

    KServe takes a Switch step when `gjson.Get(request, condition).Exists()`: here, when at
    least one record of the array at `records` meets every condition. That is this router's
    choice for one-record requests (KServe routes whole requests, not rows). Use
    `records="[@this]"` when the request body is one JSON object, `"@this"` for a list.
    Each condition filters the array (`#(...)#`, chained with `|`); the last step takes the
    first record left, which does not exist when none is. A dotted field is a nested path.
    """
    steps = [step for condition in branch.when for step in _steps(condition)]
    if not steps:
        return f"{records}.0"
    if steps[-1].startswith("#(") and steps[-1].endswith(")#"):
        steps[-1] = steps[-1][:-1]  # the first match: `#(...)#` always exists, if only as []
    else:
        steps.append("0")
    return f"{records}.{'|'.join(steps)}"


def _steps(condition: Condition) -> list[str]:
    """GJSON path steps turning an array of records into those that meet `condition`."""
    path = _gjson_path(condition.field)
    if condition.op == "exists":
        return [f"#({path})#"]
    if condition.op in ("in", "not in"):
        values = condition.value if isinstance(condition.value, list) else [condition.value]
        if condition.op == "not in":
            return [f"#({path}!={_gjson_value(v)})#" for v in values] or [f"#({path})#"]
        either = ",".join(f"#({path}=={_gjson_value(v)})#" for v in values)
        return [f"[{either}]", "@flatten"]  # GJSON queries have no "or": join the matches
    return [f"#({path}{condition.op}{_gjson_value(condition.value)})#"]


def _gjson_path(field: str) -> str:
    """A field name as a GJSON path: special characters escaped, dots kept as nesting."""
    return _GJSON_SPECIAL.sub(r"\\\1", field)


def _gjson_value(value: Any) -> str:
    """A query value: strings quoted (JSON escapes), numbers and booleans bare."""
    return json.dumps(value, ensure_ascii=False)
