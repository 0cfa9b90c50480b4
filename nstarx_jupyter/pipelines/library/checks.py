"""Input processors that check records: JSON-schema validation, type coercion, outliers.

Each is a `Component` of kind `input`; `outliers` learns its bounds from reference rows with
`fit` and keeps them in its config, so a fitted pipeline is still plain JSON. Rows are never
changed in place: other branches may hold the same dicts. Error messages count rows by their
position in the request.
"""

from __future__ import annotations

import asyncio
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    register_component,
)
from nstarx_jupyter.pipelines.library._reference import (
    MAX_REFERENCE_ROWS,
    as_number,
    editable_rows,
    mean_std,
    missing,
    reference_numbers,
    spread,
    unfitted_columns,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from jsonschema import Draft202012Validator, ValidationError

    from nstarx_jupyter.pipelines.library._fields import Scalar

__all__ = ["CoerceConfig", "OutlierDetector", "OutliersConfig", "SchemaValidator", "TypeCoercer",
           "ValidateConfig"]  # fmt: skip


# -- validate ------------------------------------------------------------------------------------


class ValidateConfig(ComponentConfig):
    """Config of `validate`."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    schema_: dict[str, Any] = Field(
        alias="schema", description="A JSON Schema (draft 2020-12) that each record must match."
    )
    on_error: Literal["reject", "flag"] = Field(
        default="reject",
        description="Reject the request on the first invalid record, or flag the record.",
    )
    flag_field: str = Field(
        default="_invalid", description="The boolean field set on each record when flagging."
    )


@register_component
class SchemaValidator(Component[ValidateConfig]):
    """Checks each record against a JSON Schema."""

    kind = "input"
    name = "validate"
    title = "Validate"
    description = "Check each record against a JSON Schema; reject or flag the invalid ones."

    @classmethod
    def problems(cls, config: ValidateConfig) -> list[str]:
        """An invalid schema."""
        from jsonschema import Draft202012Validator, SchemaError  # see _validator

        try:
            Draft202012Validator.check_schema(config.schema_)
        except SchemaError as exc:
            return [f"schema is not a valid JSON Schema: {exc.message}"]
        return []

    @cached_property
    def _validator(self) -> Draft202012Validator:
        # jsonschema is imported here, not with the library: its format checkers pull in a
        # grammar that takes over a second to build, which a server with no validation step
        # (or the palette) should not pay at start-up.
        from jsonschema import Draft202012Validator

        schema = self.config.schema_
        return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def process(self, batch: Batch) -> Batch:
        """Each record checked; see `on_error`."""
        from jsonschema.exceptions import best_match

        rows = []
        for where, row in editable_rows(batch):
            error = best_match(self._validator.iter_errors(row))
            if error is not None and self.config.on_error == "reject":
                raise InvalidInputError(f"{where}: {_describe(error)}")
            if self.config.on_error == "flag":
                row[self.config.flag_field] = error is not None
            rows.append(row)
        return batch.replace(rows)


def _describe(error: ValidationError) -> str:
    """A jsonschema error with the path of the field it is about."""
    path = ".".join(str(part) for part in error.absolute_path)
    return f"field '{path}': {error.message}" if path else error.message


# -- coerce --------------------------------------------------------------------------------------

TRUE = frozenset({"true", "t", "yes", "y", "1"})
FALSE = frozenset({"false", "f", "no", "n", "0"})
"""The texts `coerce` reads as True and as False (after stripping and lower-casing)."""


class CoerceConfig(ComponentConfig):
    """Config of `coerce`."""

    types: dict[str, Literal["float", "int", "bool", "str"]] = Field(
        default_factory=dict, description="The type to convert each named field to."
    )


@register_component
class TypeCoercer(Component[CoerceConfig]):
    """Converts named fields to numbers, booleans or strings ("3.5" → 3.5, "true" → True)."""

    kind = "input"
    name = "coerce"
    title = "Coerce types"
    description = "Convert named fields to float, int, bool or str; missing fields are left alone."

    def process(self, batch: Batch) -> Batch:
        """Each named field converted; one that cannot be is an `InvalidInputError`."""
        rows = []
        for where, row in editable_rows(batch):
            for field, target in self.config.types.items():
                value = row.get(field)
                if missing(value):
                    continue
                try:
                    row[field] = CONVERTERS[target](value)
                except (TypeError, ValueError, OverflowError):
                    raise InvalidInputError(
                        f"{where}: field '{field}' = {value!r} cannot be converted to {target}"
                    ) from None
            rows.append(row)
        return batch.replace(rows)


def _to_float(value: Any) -> float:
    if isinstance(value, str):
        value = value.strip()
    return float(value)


def _to_int(value: Any) -> int:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)  # exact, where going through float would round big numbers
    number = _to_float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _to_bool(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in TRUE or (isinstance(value, int | float) and value == 1):
        return True
    if text in FALSE or (isinstance(value, int | float) and value == 0):
        return False
    raise ValueError(f"{value!r} is not a boolean")


CONVERTERS: dict[str, Callable[[Any], Scalar]] = {
    "float": _to_float,
    "int": _to_int,
    "bool": _to_bool,
    "str": str,
}
"""How `coerce` converts a value to each type (TypeError or ValueError if it cannot)."""


# -- outliers ------------------------------------------------------------------------------------

DEFAULT_THRESHOLDS = {"zscore": 3.0, "iqr": 1.5}
"""The limit on a column's score when `threshold` is not set."""


class OutliersConfig(ComponentConfig):
    """Config of `outliers`."""

    method: Literal["zscore", "iqr", "isolation_forest"] = Field(
        default="zscore", description="How a value is judged against the reference rows."
    )
    columns: list[str] = Field(min_length=1, description="The numeric fields to check.")
    threshold: float | None = Field(
        default=None,
        gt=0,
        description="zscore: standard deviations (default 3); iqr: the multiple k of the "
        "interquartile range beyond the quartiles (default 1.5); isolation_forest: the expected "
        "share of outliers, at most 0.5 (default: the forest's own rule).",
    )
    action: Literal["flag", "reject"] = Field(
        default="flag", description="Flag outlying records, or reject the request."
    )
    flag_field: str = Field(default="_outlier", description="The boolean field set when flagging.")
    score_field: str | None = Field(
        default="_outlier_score",
        description="A field for the outlier score when flagging (higher is stranger); "
        "empty for none.",
    )
    stats: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Learnt: mean and std (zscore) or q1 and q3 (iqr) of each column.",
    )
    reference: list[list[float]] = Field(
        default_factory=list,
        description=f"Learnt: up to {MAX_REFERENCE_ROWS} reference rows (isolation_forest).",
    )
    random_state: int = Field(default=0, description="The isolation forest's random seed.")


@register_component
class OutlierDetector(Component[OutliersConfig]):
    """Flags or rejects records far from the reference rows (z-score, IQR or isolation forest)."""

    kind = "input"
    name = "outliers"
    title = "Detect outliers"
    description = "Flag or reject records far from the reference data (z-score, IQR, forest)."
    fittable = True
    _forest: Any = None

    @classmethod
    def problems(cls, config: OutliersConfig) -> list[str]:
        """A threshold out of range, or reference rows of the wrong width."""
        if config.method != "isolation_forest":
            return []
        problems = []
        if config.threshold is not None and config.threshold > 0.5:
            problems.append("isolation_forest: threshold (the share of outliers) must be ≤ 0.5")
        if any(len(row) != len(config.columns) for row in config.reference):
            problems.append("reference rows must have one value per column")
        return problems

    @classmethod
    def unfitted(cls, config: OutliersConfig) -> list[str]:
        """Statistics or reference rows still to learn."""
        if config.method != "isolation_forest":
            return unfitted_columns(config.columns, config.stats)
        if not config.reference:
            return ["isolation_forest needs reference rows: fit on reference rows"]
        return []

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The statistics of each column, or the reference rows for the isolation forest."""
        columns = self.config.columns
        if self.config.method == "isolation_forest":
            return {"reference": _reference(rows, columns)}
        if self.config.method == "zscore":
            return {"stats": {c: mean_std(reference_numbers(rows, c)) for c in columns}}
        return {"stats": {c: _quartiles(reference_numbers(rows, c)) for c in columns}}

    async def setup(self) -> None:
        """Fit the isolation forest on the reference rows (in a thread: it takes a moment)."""
        if self.config.method == "isolation_forest":
            await asyncio.to_thread(self._fitted_forest)

    def process(self, batch: Batch) -> Batch:
        """Each record flagged, or the request rejected at the first outlier."""
        if self.config.method == "isolation_forest":
            verdicts = self._forest_verdicts(batch)
        else:
            verdicts = [self._column_verdict(where, row) for where, row in editable_rows(batch)]
        rows = []
        for row, (score, reason) in zip(batch.rows, verdicts, strict=True):
            if reason is not None and self.config.action == "reject":
                raise InvalidInputError(reason)
            if self.config.action == "flag":
                row = {**row, self.config.flag_field: reason is not None}
                if self.config.score_field:
                    row[self.config.score_field] = score
            rows.append(row)
        return batch.replace(rows)

    def _column_verdict(self, where: str, row: dict[str, Any]) -> tuple[float, str | None]:
        """The row's highest score over its columns, and why it is an outlier (None if not)."""
        method = self.config.method
        limit = self.config.threshold or DEFAULT_THRESHOLDS[method]
        highest, reason = 0.0, None
        for column in self.config.columns:
            if missing(value := row.get(column)):
                continue
            x = as_number(value, where, column)
            stats = self.config.stats[column]
            if method == "zscore":
                score = abs(x - stats["mean"]) / spread(stats["std"])
                why = f"{score:.1f} standard deviations from the mean (limit {limit:g})"
            else:
                score = max(stats["q1"] - x, x - stats["q3"], 0) / spread(stats["q3"] - stats["q1"])
                why = f"{score:.1f} interquartile ranges beyond the quartiles (limit {limit:g})"
            if score > limit and reason is None:
                reason = f"{where}: '{column}' = {value!r} is {why}"
            highest = max(highest, score)
        return highest, reason

    def _forest_verdicts(self, batch: Batch) -> list[tuple[float, str | None]]:
        """The forest's anomaly score of each row (higher is stranger) and why it is an outlier."""
        columns = self.config.columns
        positions = [f"row {i}" for i in batch.index]
        matrix = [
            [as_number(row.get(column), where, column) for column in columns]
            for where, row in zip(positions, batch.rows, strict=True)
        ]
        if not matrix:
            return []
        forest = self._fitted_forest()
        limit = float(-forest.offset_)
        scores = [float(score) for score in -forest.score_samples(np.array(matrix))]
        why = f"on {', '.join(columns)} is above the isolation forest's limit {limit:.2f}"
        return [
            (score, f"{where}: anomaly score {score:.2f} {why}" if score > limit else None)
            for where, score in zip(positions, scores, strict=True)
        ]

    def _fitted_forest(self) -> Any:
        if self._forest is None:
            from sklearn.ensemble import IsolationForest  # heavy: only when a forest is used

            forest = IsolationForest(
                contamination=self.config.threshold or "auto",
                random_state=self.config.random_state,
            )
            self._forest = forest.fit(np.array(self.config.reference, dtype=float))
        return self._forest


def _quartiles(values: list[float]) -> dict[str, float]:
    q1, q3 = np.percentile(values, [25, 75])
    return {"q1": float(q1), "q3": float(q3)}


def _reference(rows: list[dict[str, Any]], columns: list[str]) -> list[list[float]]:
    """The complete reference rows as lists of floats, evenly thinned to `MAX_REFERENCE_ROWS`."""
    complete = [
        [as_number(row[c], f"reference row {i}", c) for c in columns]
        for i, row in enumerate(rows)
        if not any(missing(row.get(c)) for c in columns)
    ]
    if not complete:
        raise InvalidInputError(f"no reference row has every field of {', '.join(columns)}")
    if len(complete) > MAX_REFERENCE_ROWS:
        keep = np.linspace(0, len(complete) - 1, MAX_REFERENCE_ROWS).round().astype(int)
        complete = [complete[i] for i in keep]
    return complete
