"""Scoring steps: call a model, combine several models' scores, send rows down branches.

A `model` node adds the model's named outputs (`prediction`, `confidence`, `probabilities`) to
each record, optionally under a prefix so that several models' outputs can sit side by side in
one record; an `ensemble` combines those prefixed scores row by row; a `router` splits a batch
into one batch per branch. Rows are never changed in place: other branches may hold the dicts.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nstarx_jupyter.errors import InvalidInputError, ModelError, NstarxError
from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    Port,
    register_component,
)
from nstarx_jupyter.pipelines.library._fields import (
    Scalar,
    is_missing,
    merged,
    narrow,
    number,
    read_field,
    where,
)
from nstarx_jupyter.pipelines.spec import ID, NAME

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["MODEL_URI", "Condition", "ConditionRouter", "EnsembleConfig", "ModelConfig",
           "ModelScorer", "RouterBranch", "RouterConfig", "ScoreEnsemble", "gjson_condition",
           "is_model_uri"]  # fmt: skip

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
"""A registry version (`models:/fraud/3`) or alias (`models:/fraud@champion`)."""


# -- model ---------------------------------------------------------------------------------------


class ModelConfig(ComponentConfig):
    """Config of `model`."""

    model: str = Field(
        description="The model to call: models:/NAME/VERSION, models:/NAME@ALIAS, "
        "deployment:NAME, or a model file or folder as file:///PATH."
    )
    output_prefix: str = Field(
        default="",
        description="Added before each output's name (fraud_ gives fraud_prediction), so the "
        "outputs of several models can sit in one record.",
    )
    features: list[str] = Field(
        default_factory=list,
        description="The record fields sent to the model; empty sends every field whose name "
        "does not start with '_'.",
    )


@register_component
class ModelScorer(Component):
    """Calls a registered model or a deployment and adds its outputs to each record."""

    kind = "model"
    name = "model"
    title = "Model"
    description = "Call a registered model or a deployment and add its outputs to each record."
    Config = ModelConfig
    config: ModelConfig

    inputs = (Port("in", "records"),)
    outputs = (Port("out", "scored"),)

    @classmethod
    def problems(cls, config: ComponentConfig) -> list[str]:
        """A model reference of an unknown form, or a feature named twice."""
        found = narrow(config, ModelConfig)
        problems = []
        if not is_model_uri(found.model):
            problems.append(
                f"'{found.model}' is not a model reference; use models:/NAME/VERSION, "
                "models:/NAME@ALIAS, deployment:NAME or file:///PATH"
            )
        twice = [name for name, count in Counter(found.features).items() if count > 1]
        problems += [f"feature '{name}' is listed twice" for name in twice]
        return problems

    @classmethod
    def model_uris(cls, config: ComponentConfig) -> list[str]:
        """The one model this node calls."""
        return [narrow(config, ModelConfig).model]

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """Each record with the model's outputs added (under `output_prefix`)."""
        batch = merged(inputs)
        if not batch:
            return {"out": batch}
        resolver = self.context.models
        if resolver is None:
            raise NstarxError(
                f"cannot call '{self.config.model}': this pipeline runs without a model "
                "resolver (run it on the server, or in a notebook session)"
            )
        features = [self._features(row, position) for position, row in _positions(batch)]
        outputs = await resolver.predict(self.config.model, features)
        if len(outputs) != len(batch):
            raise ModelError(
                f"'{self.config.model}' returned {len(outputs)} outputs for {len(batch)} records"
            )
        prefix = self.config.output_prefix
        rows = [
            {**row, **{f"{prefix}{key}": value for key, value in output.items()}}
            for row, output in zip(batch.rows, outputs, strict=True)
        ]
        return {"out": batch.replace(rows)}

    def _features(self, row: dict[str, Any], position: int) -> dict[str, Any]:
        """The fields of `row` this model is sent."""
        if not self.config.features:
            return {key: value for key, value in row.items() if not key.startswith("_")}
        missing = [name for name in self.config.features if name not in row]
        if missing:
            raise InvalidInputError(f"{where(position)}: missing field '{missing[0]}'")
        return {name: row[name] for name in self.config.features}


def is_model_uri(uri: str) -> bool:
    """Whether `uri` names a model a pipeline can call.

    That is `models:/NAME/VERSION`, `models:/NAME@ALIAS`, `deployment:NAME` or `file:///PATH`
    (a model file or folder: what KServe mounts at /mnt/models).
    """
    if uri.startswith("file:///"):
        return len(uri) > len("file:///")
    if uri.startswith("deployment:"):
        name = uri.removeprefix("deployment:")
        return len(name) <= 63 and NAME.match(name) is not None
    return MODEL_URI.match(uri) is not None


def _positions(batch: Batch) -> zip[tuple[int, dict[str, Any]]]:
    return zip(batch.index, batch.rows, strict=True)


# -- ensemble ------------------------------------------------------------------------------------

EnsembleMethod = Literal["mean", "weighted_mean", "majority_vote", "stacking"]


class EnsembleConfig(ComponentConfig):
    """Config of `ensemble`."""

    members: list[str] = Field(
        description="The output prefixes of the member models (fraud_ reads fraud_prediction); "
        "a row is scored by the members whose score it carries."
    )
    method: EnsembleMethod = Field(
        default="mean",
        description="mean, weighted_mean, majority_vote (the most common prediction, weighted "
        "when weights are given) or stacking (a logistic model over the members' scores).",
    )
    score_field: str = Field(
        default="prediction",
        description="The member output that is combined, after the prefix: prediction, "
        "confidence, or one class's probability as probabilities.LABEL.",
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="A weight per member prefix (weighted_mean, votes)."
    )
    stacking_coef: list[float] = Field(
        default_factory=list, description="Stacking: one coefficient per member, in order."
    )
    stacking_intercept: float = Field(default=0.0, description="Stacking: the intercept.")
    output: str = Field(
        default="prediction", description="The field that receives the combined score."
    )
    confidence_field: str = Field(
        default="confidence",
        description="Majority vote: the field that receives the winner's share of the votes.",
    )


@register_component
class ScoreEnsemble(Component):
    """Combines the scores several models left in each record into one."""

    kind = "ensemble"
    name = "ensemble"
    title = "Ensemble"
    description = "Combine several models' scores per record: mean, weighted, vote or stacking."
    Config = EnsembleConfig
    config: EnsembleConfig

    inputs = (Port("in", "scored", many=True),)
    outputs = (Port("out", "scored"),)

    @classmethod
    def problems(cls, config: ComponentConfig) -> list[str]:
        """Too few members, a member twice, a missing weight or stacking coefficient."""
        found = narrow(config, EnsembleConfig)
        problems = []
        if len(found.members) < 2:
            problems.append("an ensemble needs at least two members")
        twice = [name for name, count in Counter(found.members).items() if count > 1]
        problems += [f"member '{name}' is listed twice" for name in twice]
        if found.method == "weighted_mean":
            problems += [f"member '{m}' has no weight" for m in found.members
                         if m not in found.weights]  # fmt: skip
        problems += [f"weight for '{m}', which is not a member" for m in found.weights
                     if m not in found.members]  # fmt: skip
        if found.method == "stacking" and len(found.stacking_coef) != len(found.members):
            problems.append(
                f"stacking needs one coefficient per member: {len(found.members)} members, "
                f"{len(found.stacking_coef)} coefficients"
            )
        return problems

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """Each record with the combined score in `output`."""
        batch = merged(inputs)
        rows = [self._combine({**row}, position) for position, row in _positions(batch)]
        return {"out": batch.replace(rows)}

    def _combine(self, row: dict[str, Any], position: int) -> dict[str, Any]:
        config = self.config
        present = {
            member: value
            for member in config.members
            if not is_missing(value := read_field(row, member + config.score_field))
        }
        if not present:
            fields = ", ".join(f"'{m}{config.score_field}'" for m in config.members)
            raise InvalidInputError(f"{where(position)}: no member score ({fields}) to combine")
        if config.method == "majority_vote":
            row[config.output], row[config.confidence_field] = self._vote(present)
            return row
        scores = {
            member: number(value, where(position), member + config.score_field)
            for member, value in present.items()
        }
        row[config.output] = self._score(scores, position)
        return row

    def _score(self, scores: dict[str, float], position: int) -> float:
        config = self.config
        if config.method == "mean":
            return sum(scores.values()) / len(scores)
        if config.method == "weighted_mean":
            total = sum(config.weights[m] for m in scores)
            if total == 0:
                raise InvalidInputError(f"{where(position)}: the members' weights sum to zero")
            return sum(config.weights[m] * s for m, s in scores.items()) / total
        missing = [m for m in config.members if m not in scores]
        if missing:
            raise InvalidInputError(
                f"{where(position)}: stacking needs every member's score; "
                f"'{missing[0]}{config.score_field}' is missing"
            )
        coef = dict(zip(config.members, config.stacking_coef, strict=True))
        return _sigmoid(config.stacking_intercept + sum(coef[m] * s for m, s in scores.items()))

    def _vote(self, present: dict[str, Any]) -> tuple[Any, float]:
        """The label with the most (weighted) votes and its share; ties go to the earlier member."""
        votes: dict[str, float] = {}
        labels: dict[str, Any] = {}
        for member, label in present.items():
            key = json.dumps(label, sort_keys=True)  # 1 and True are different labels
            labels.setdefault(key, label)
            votes[key] = votes.get(key, 0.0) + self.config.weights.get(member, 1.0)
        winner = max(votes, key=lambda key: votes[key])  # max keeps the first of equals
        total = sum(votes.values())
        return labels[winner], votes[winner] / total if total else 0.0


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


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
class ConditionRouter(Component):
    """Sends each record down the first branch whose conditions it meets."""

    kind = "router"
    name = "router"
    title = "Router"
    description = "Send each record down the first branch whose conditions it meets."
    Config = RouterConfig
    config: RouterConfig

    @classmethod
    def ports(cls, config: ComponentConfig | None) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        """One output per branch, then the default output."""
        if config is None:
            return (Port("in", "records"),), (Port("default", "any"),)
        found = narrow(config, RouterConfig)
        names = dict.fromkeys([*(branch.name for branch in found.branches), found.default])
        return (Port("in", "records"),), tuple(Port(name, "any") for name in names)

    @classmethod
    def problems(cls, config: ComponentConfig) -> list[str]:
        """No branches, duplicate names, a branch named like the default, unusable values."""
        found = narrow(config, RouterConfig)
        if not found.branches:
            return ["a router needs at least one branch"]
        problems = []
        names = Counter(branch.name for branch in found.branches)
        problems += [f"{count} branches are named '{name}'" for name, count in names.items()
                     if count > 1]  # fmt: skip
        if found.default in names:
            problems.append(f"branch '{found.default}' has the name of the default output")
        for branch in found.branches:
            if not branch.when:
                problems.append(f"branch '{branch.name}' has no conditions: it takes every row")
            problems += [f"branch '{branch.name}': {p}" for c in branch.when if (p := _problem(c))]
        return problems

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """A batch per output (empty for an output no row takes)."""
        batch = merged(inputs)
        ports = [port.name for port in self.ports(self.config)[1]]
        chosen: dict[str, list[int]] = {name: [] for name in ports}
        for i, (position, row) in enumerate(_positions(batch)):
            branch = next((b for b in self.config.branches if b.matches(row, position)), None)
            chosen[branch.name if branch is not None else self.config.default].append(i)
        return {name: batch.subset(rows) for name, rows in chosen.items()}


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
