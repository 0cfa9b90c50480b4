"""Scoring steps: call a model, combine several models' scores.

A `model` node adds the model's named outputs (`prediction`, `confidence`, `probabilities`) to
each record, optionally under a prefix so that several models' outputs can sit side by side in
one record; an `ensemble` combines those prefixed scores row by row. Rows are never changed in
place: other branches may hold the dicts. Routers are in `routing`.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from nstarx_jupyter.errors import InvalidInputError, ModelError, NstarxError
from nstarx_jupyter.model_uri import ModelUri
from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    Port,
    register_component,
)
from nstarx_jupyter.pipelines.library._fields import (
    is_missing,
    merged,
    number,
    read_field,
    where,
)
from nstarx_jupyter.pipelines.library.cache import PredictionCache

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from nstarx_jupyter.pipelines.component import ModelResolver

__all__ = ["EnsembleConfig", "ModelConfig", "ModelScorer", "ScoreEnsemble", "is_model_uri"]


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
    cache_size: int = Field(
        default=0,
        ge=0,
        description="Answers kept for identical feature rows (0: no cache). Only for models "
        "whose answer depends on the features alone.",
    )
    cache_ttl_s: float | None = Field(
        default=300.0,
        gt=0,
        description="Seconds a cached answer stays valid (empty: until pushed out).",
    )


@register_component
class ModelScorer(Component[ModelConfig]):
    """Calls a registered model or a deployment and adds its outputs to each record."""

    kind = "model"
    name = "model"
    title = "Model"
    description = "Call a registered model or a deployment and add its outputs to each record."

    inputs = (Port("in", "records"),)
    outputs = (Port("out", "scored"),)

    @classmethod
    def problems(cls, config: ModelConfig) -> list[str]:
        """A model reference of an unknown form, or a feature named twice."""
        problems = []
        if not is_model_uri(config.model):
            problems.append(
                f"'{config.model}' is not a model reference; use models:/NAME/VERSION, "
                "models:/NAME@ALIAS, deployment:NAME or file:///PATH"
            )
        twice = [name for name, count in Counter(config.features).items() if count > 1]
        problems += [f"feature '{name}' is listed twice" for name in twice]
        return problems

    @classmethod
    def model_uris(cls, config: ModelConfig) -> list[str]:
        """The one model this node calls."""
        return [config.model]

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
        outputs = await self._predict(resolver, features)
        prefix = self.config.output_prefix
        rows = [
            {**row, **{f"{prefix}{key}": value for key, value in output.items()}}
            for row, output in zip(batch.rows, outputs, strict=True)
        ]
        return {"out": batch.replace(rows)}

    async def _predict(
        self, resolver: ModelResolver, features: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The model's answer for each row.

        With a cache, only the rows not answered lately go to the model, once each however
        often they repeat in the batch.
        """
        cache = self._cache
        if cache is None:
            return await self._call(resolver, features)
        keys = [cache.key(row) for row in features]
        answers = [cache.get(key) for key in keys]
        todo = {key: row for key, row, answer in zip(keys, features, answers, strict=True)
                if answer is None}  # fmt: skip
        if todo:
            for key, answer in zip(todo, await self._call(resolver, list(todo.values())),
                                   strict=True):  # fmt: skip
                cache.put(key, answer)
                todo[key] = answer
        return [answer if answer is not None else todo[key]
                for key, answer in zip(keys, answers, strict=True)]  # fmt: skip

    async def _call(
        self, resolver: ModelResolver, features: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        outputs = await resolver.predict(self.config.model, features)
        if len(outputs) != len(features):
            raise ModelError(
                f"'{self.config.model}' returned {len(outputs)} outputs for {len(features)} records"
            )
        return outputs

    @functools.cached_property
    def _cache(self) -> PredictionCache | None:
        size = self.config.cache_size
        return PredictionCache(size, self.config.cache_ttl_s) if size else None

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
    try:
        found = ModelUri.parse(uri)
    except InvalidInputError:
        return False
    absolute_file = found.is_file_url and found.path.startswith("/") and found.path != "/"
    return found.is_registry or found.is_deployment or absolute_file


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
class ScoreEnsemble(Component[EnsembleConfig]):
    """Combines the scores several models left in each record into one."""

    kind = "ensemble"
    name = "ensemble"
    title = "Ensemble"
    description = "Combine several models' scores per record: mean, weighted, vote or stacking."

    inputs = (Port("in", "scored", many=True),)
    outputs = (Port("out", "scored"),)

    @classmethod
    def problems(cls, config: EnsembleConfig) -> list[str]:
        """Too few members, a member twice, a missing weight or stacking coefficient."""
        problems = []
        if len(config.members) < 2:
            problems.append("an ensemble needs at least two members")
        twice = [name for name, count in Counter(config.members).items() if count > 1]
        problems += [f"member '{name}' is listed twice" for name in twice]
        if config.method == "weighted_mean":
            problems += [f"member '{m}' has no weight" for m in config.members
                         if m not in config.weights]  # fmt: skip
        problems += [f"weight for '{m}', which is not a member" for m in config.weights
                     if m not in config.members]  # fmt: skip
        if config.method == "stacking" and len(config.stacking_coef) != len(config.members):
            problems.append(
                f"stacking needs one coefficient per member: {len(config.members)} members, "
                f"{len(config.stacking_coef)} coefficients"
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
