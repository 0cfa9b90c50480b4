"""Post-processors and output formatters: the steps between the models and the response.

Post-processors (kind `postprocess`) add fields to scored records: a decision from a
threshold, a label from a table, confidence measures, fields looked up by key, and (from
`explain`, re-exported here) a linear or tree model's feature contributions. Output
formatters (kind `output`) end the pipeline: they take the records (merged in request order)
and return the response body itself, not a `Batch`. Rows are never changed in place: other
branches may hold the same dicts.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, JsonValue

from nstarx_jupyter.errors import InvalidInputError
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
    lookup_keys,
    merged,
    number,
    read_field,
    row_copies,
    where,
)
from nstarx_jupyter.pipelines.library.explain import (
    ExplainConfig,
    LinearExplainer,
    TreeExplainConfig,
    TreeExplainer,
    linear_explainer_config,
    tree_explainer_config,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["ConfidenceConfig", "ConfidenceScores", "EnrichConfig", "ExplainConfig",
           "FieldsConfig", "FieldsOutput", "LabelMap", "LabelMapConfig", "LinearExplainer",
           "LookupEnricher", "RecordsConfig", "RecordsOutput", "Threshold", "ThresholdConfig",
           "TreeExplainConfig", "TreeExplainer", "V2Config", "V2Output", "linear_explainer_config",
           "tree_explainer_config", "v2_tensor"]  # fmt: skip

SCORED = ((Port("in", "scored"),), (Port("out", "scored"),))
"""A post-processor's ports: scored records in and out."""
FORMATTER = ((Port("in", "records", many=True),), (Port("out", "response"),))
"""An output formatter's ports: the records of every branch in, the response body out."""


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """The fields of a record that leave the pipeline (names starting with '_' stay inside)."""
    return {key: value for key, value in row.items() if not key.startswith("_")}


# -- threshold -----------------------------------------------------------------------------------


class ThresholdConfig(ComponentConfig):
    """Config of `threshold`."""

    field: str = Field(
        default="confidence",
        description="The score compared: confidence, prediction, or one class's probability "
        "as probabilities.LABEL.",
    )
    threshold: float = Field(default=0.5, description="Scores at or above it take the first label.")
    output: str = Field(default="decision", description="The field that receives the label.")
    labels: list[Scalar] = Field(
        default_factory=lambda: list[Scalar]([True, False]),
        min_length=2,
        max_length=2,
        description="The label at or above the threshold, then the label below it.",
    )


@register_component
class Threshold(Component[ThresholdConfig]):
    """Turns a score into a decision: one label at or above the threshold, another below."""

    kind = "postprocess"
    name = "threshold"
    title = "Threshold"
    description = "Turn a score into a decision: one label at or above a threshold, one below."

    inputs, outputs = SCORED

    def process(self, batch: Batch) -> Batch:
        """Each record with its decision in `output`."""
        config, rows = self.config, []
        above, below = config.labels
        for at, row in row_copies(batch):
            score = number(read_field(row, config.field), at, config.field)
            row[config.output] = above if score >= config.threshold else below
            rows.append(row)
        return batch.replace(rows)


# -- label_map -----------------------------------------------------------------------------------


class LabelMapConfig(ComponentConfig):
    """Config of `label_map`."""

    field: str = Field(default="prediction", description="The field whose value is mapped.")
    mapping: dict[str, JsonValue] = Field(
        description='Value → label; keys are compared as strings (1, 1.0 and "1" find "1").'
    )
    unknown: Literal["keep", "error", "null"] = Field(
        default="keep",
        description="A value the mapping lacks: keep it, reject the request, or set null.",
    )
    output: str = Field(
        default="", description="The field that receives the label; empty replaces `field`."
    )


@register_component
class LabelMap(Component[LabelMapConfig]):
    """Replaces a field's value (a class index, a code) with a label from a table."""

    kind = "postprocess"
    name = "label_map"
    title = "Label map"
    description = "Replace a field's value (a class index, a code) with a label from a table."

    inputs, outputs = SCORED

    @classmethod
    def problems(cls, config: LabelMapConfig) -> list[str]:
        """An empty mapping."""
        return [] if config.mapping else ["the mapping is empty"]

    def process(self, batch: Batch) -> Batch:
        """Each record with its label; see `unknown` for values the mapping lacks."""
        config, rows = self.config, []
        for at, row in row_copies(batch):
            value = read_field(row, config.field)
            key = next((k for k in lookup_keys(value) if k in config.mapping), None)
            if key is not None:
                label = config.mapping[key]
            elif config.unknown == "error":
                shown = "missing" if is_missing(value) else f"{value!r}, which the map lacks"
                raise InvalidInputError(f"{at}: field '{config.field}' is {shown}")
            else:
                label = None if config.unknown == "null" or is_missing(value) else value
            row[config.output or config.field] = label
            rows.append(row)
        return batch.replace(rows)


# -- confidence ----------------------------------------------------------------------------------


class ConfidenceConfig(ComponentConfig):
    """Config of `confidence`."""

    field: str = Field(
        default="probabilities",
        description="The class probabilities ({label: p}); fraud_probabilities for a prefixed "
        "model.",
    )
    output_prefix: str = Field(
        default="",
        description="Added before the names of the fields it writes: confidence, uncertainty "
        "and margin.",
    )


@register_component
class ConfidenceScores(Component[ConfidenceConfig]):
    """Adds confidence, normalised entropy and top-two margin from class probabilities."""

    kind = "postprocess"
    name = "confidence"
    title = "Confidence"
    description = "Add confidence (top probability), uncertainty (entropy) and top-two margin."

    inputs, outputs = SCORED

    def process(self, batch: Batch) -> Batch:
        """Each record with `confidence`, `uncertainty` (0 sure, 1 uniform) and `margin`."""
        config, rows = self.config, []
        for at, row in row_copies(batch):
            found = read_field(row, config.field)
            if not isinstance(found, dict) or not found:
                raise InvalidInputError(f"{at}: field '{config.field}' holds no probabilities")
            probabilities = sorted(
                (number(p, at, f"{config.field}.{label}") for label, p in found.items()),
                reverse=True,
            )
            entropy = -sum(p * math.log(p) for p in probabilities if p > 0)
            classes = len(probabilities)
            prefix = config.output_prefix
            row[f"{prefix}confidence"] = probabilities[0]
            row[f"{prefix}uncertainty"] = entropy / math.log(classes) if classes > 1 else 0.0
            second = probabilities[1] if classes > 1 else 0.0
            row[f"{prefix}margin"] = probabilities[0] - second
            rows.append(row)
        return batch.replace(rows)


# -- enrich --------------------------------------------------------------------------------------


class EnrichConfig(ComponentConfig):
    """Config of `enrich`."""

    key: str = Field(description="The record field looked up in the table.")
    table: dict[str, dict[str, JsonValue]] = Field(
        description="Key → the fields added to a record with that key (keys compared as strings)."
    )
    missing: Literal["keep", "error"] = Field(
        default="keep",
        description="A record whose key the table lacks: pass it on unchanged, or reject it.",
    )
    prefix: str = Field(default="", description="Added before the names of the added fields.")


@register_component
class LookupEnricher(Component[EnrichConfig]):
    """Adds the fields a lookup table holds for each record's key (table values win)."""

    kind = "postprocess"
    name = "enrich"
    title = "Enrich"
    description = "Add the fields a lookup table holds for each record's key."

    inputs = (Port("in", "records"),)
    outputs = (Port("out", "any"),)

    @classmethod
    def problems(cls, config: EnrichConfig) -> list[str]:
        """An empty table."""
        return [] if config.table else ["the lookup table is empty"]

    def process(self, batch: Batch) -> Batch:
        """Each record with its table row's fields added."""
        config, rows = self.config, []
        for at, row in row_copies(batch):
            value = read_field(row, config.key)
            key = next((k for k in lookup_keys(value) if k in config.table), None)
            if key is not None:
                row.update({f"{config.prefix}{k}": v for k, v in config.table[key].items()})
            elif config.missing == "error":
                shown = "missing" if is_missing(value) else f"{value!r}, which the table lacks"
                raise InvalidInputError(f"{at}: field '{config.key}' is {shown}")
            rows.append(row)
        return batch.replace(rows)


# -- output formatters ---------------------------------------------------------------------------


class FieldsConfig(ComponentConfig):
    """Config of `fields`."""

    fields: dict[str, str] = Field(
        description="Response name → record field (probabilities.LABEL reads one probability)."
    )
    missing: Literal["null", "omit", "error"] = Field(
        default="null", description="A record without the field: null, leave it out, or fail."
    )


@register_component
class FieldsOutput(Component[FieldsConfig]):
    """Responds with chosen fields of each record, renamed."""

    kind = "output"
    name = "fields"
    title = "Fields"
    description = "Respond with chosen fields of each record, under the names you give them."

    inputs, outputs = FORMATTER

    @classmethod
    def problems(cls, config: FieldsConfig) -> list[str]:
        """No fields."""
        return [] if config.fields else ["choose at least one field"]

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """A list with one object per record, in request order."""
        batch, body = merged(inputs), []
        for position, row in zip(batch.index, batch.rows, strict=True):
            item = {}
            for name, field in self.config.fields.items():
                value = read_field(row, field)
                if not is_missing(value):
                    item[name] = value
                elif self.config.missing == "error":
                    raise InvalidInputError(f"{where(position)}: field '{field}' is missing")
                elif self.config.missing == "null":
                    item[name] = None
            body.append(item)
        return {"out": body}


class RecordsConfig(ComponentConfig):
    """Config of `records`."""

    include: list[str] = Field(
        default_factory=list,
        description="The fields to return; empty returns every field not starting with '_'.",
    )
    exclude: list[str] = Field(default_factory=list, description="Fields to leave out.")


@register_component
class RecordsOutput(Component[RecordsConfig]):
    """Responds with the records themselves, all fields or a chosen few."""

    kind = "output"
    name = "records"
    title = "Records"
    description = "Respond with the records: every public field, or those you include."

    inputs, outputs = FORMATTER

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """A list with one object per record, in request order."""
        include, exclude = self.config.include, set(self.config.exclude)
        body = []
        for row in merged(inputs).rows:
            chosen = {k: row[k] for k in include if k in row} if include else _public(row)
            body.append({k: v for k, v in chosen.items() if k not in exclude})
        return {"out": body}


class V2Config(ComponentConfig):
    """Config of `v2`."""

    model_name: str = Field(default="pipeline", description="The response's model_name.")
    model_version: str = Field(default="", description="The response's model_version, if any.")
    fields: list[str] = Field(
        default_factory=list,
        description="One output tensor per field, in this order; empty: every field not "
        "starting with '_'.",
    )


@register_component
class V2Output(Component[V2Config]):
    """Responds in the Open Inference Protocol (V2): one output tensor per field."""

    kind = "output"
    name = "v2"
    title = "V2 response"
    description = "Respond in the Open Inference Protocol (V2): one output tensor per field."

    inputs, outputs = FORMATTER

    @classmethod
    def problems(cls, config: V2Config) -> list[str]:
        """A field listed twice."""
        return [f"field '{f}' is listed twice" for f, n in Counter(config.fields).items() if n > 1]

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """`{"model_name", "outputs": [{"name", "datatype", "shape", "data"}, ...]}`."""
        rows = merged(inputs).rows
        fields = self.config.fields or list(dict.fromkeys(k for r in rows for k in _public(r)))
        body: dict[str, Any] = {"model_name": self.config.model_name}
        if self.config.model_version:
            body["model_version"] = self.config.model_version
        values = {f: [None if is_missing(v := read_field(r, f)) else v for r in rows]
                  for f in fields}  # fmt: skip
        body["outputs"] = [v2_tensor(field, column) for field, column in values.items()]
        return {"out": body}


def v2_tensor(name: str, values: list[Any]) -> dict[str, Any]:
    """One V2 output tensor from a column of JSON values, its datatype inferred.

    Booleans are BOOL, integers INT64, numbers FP64, strings BYTES; equal-length lists of
    those make a [rows, n] tensor. Anything else (nulls, objects, mixed types) becomes BYTES
    holding each value's JSON text.
    """
    datatype = _datatype(values)
    if datatype is not None:
        data = [float(v) for v in values] if datatype == "FP64" else list(values)
        return {"name": name, "datatype": datatype, "shape": [len(values)], "data": data}
    sizes = {len(v) if isinstance(v, list) else -1 for v in values}
    if len(sizes) == 1 and min(sizes) > 0:
        flat = [item for value in values for item in value]
        datatype = _datatype(flat)
        if datatype is not None:
            data = [float(v) for v in flat] if datatype == "FP64" else flat
            shape = [len(values), sizes.pop()]
            return {"name": name, "datatype": datatype, "shape": shape, "data": data}
    data = [v if isinstance(v, str) else json.dumps(v, default=str) for v in values]
    return {"name": name, "datatype": "BYTES", "shape": [len(values)], "data": data}


def _datatype(values: list[Any]) -> str | None:
    """The V2 datatype every value fits, if one does."""
    if not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if any(isinstance(v, bool) for v in values):
        return None
    if all(isinstance(v, int) for v in values):
        return "INT64"
    if all(isinstance(v, int | float) for v in values):
        return "FP64"
    if all(isinstance(v, str) for v in values):
        return "BYTES"
    return None
