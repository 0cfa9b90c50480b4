"""Input processors: the steps that check, clean and shape feature records before a model sees them.

Each is a `Component` of kind `input`. The fittable ones (`impute`, `outliers`, `scale`,
`one_hot`) learn their parameters from reference rows with `fit` and keep them in their config,
so a fitted pipeline is still plain JSON. Rows are never changed in place: other branches of the
pipeline may hold the same dicts. Error messages count rows by their position in the request.
"""

from __future__ import annotations

import ast
import asyncio
import math
from collections import Counter
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from jsonschema import Draft202012Validator, SchemaError, ValidationError
from jsonschema.exceptions import best_match
from pydantic import ConfigDict, Field
from simpleeval import InvalidExpression, SimpleEval  # type: ignore[import-untyped]

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    register_component,
)
from nstarx_jupyter.pipelines.library._fields import Scalar, narrow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["CoerceConfig", "ExpressionConfig", "FeatureExpressions", "ImputeConfig",
           "MissingValueImputer", "NumericScaler", "OneHotConfig", "OneHotEncoder",
           "OutlierDetector", "OutliersConfig", "ScaleConfig", "SchemaValidator", "TypeCoercer",
           "ValidateConfig"]  # fmt: skip

MAX_REFERENCE_ROWS = 2000
"""The isolation forest keeps at most this many reference rows in its config."""


def _is_missing(value: object) -> bool:
    """Whether a field counts as missing: None or NaN (an absent field reads as None)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: object, where: str, column: str) -> float:
    """`value` as a float, or an `InvalidInputError` naming the row and the field."""
    if _is_missing(value):
        raise InvalidInputError(f"{where}: field '{column}' is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{where}: field '{column}' = {value!r} is not a number")
    return float(value)


def _numbers(rows: list[dict[str, Any]], column: str) -> list[float]:
    """The non-missing values of `column` in reference rows, as floats."""
    values = [
        _number(row.get(column), f"reference row {i}", column)
        for i, row in enumerate(rows)
        if not _is_missing(row.get(column))
    ]
    if not values:
        raise InvalidInputError(f"the reference rows have no values for field '{column}'")
    return values


def _rows(batch: Batch) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each row as ("row N", a copy to change), N being its position in the request."""
    for position, row in zip(batch.index, batch.rows, strict=True):
        yield f"row {position}", {**row}


def _unfitted(columns: list[str], learnt: dict[str, Any]) -> list[str]:
    """A problem for each column that has no learnt parameters yet."""
    return [
        f"column '{column}' has no learnt parameters: fit the pipeline on reference rows"
        for column in columns
        if column not in learnt
    ]


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
class SchemaValidator(Component):
    """Checks each record against a JSON Schema."""

    kind = "input"
    name = "validate"
    title = "Validate"
    description = "Check each record against a JSON Schema; reject or flag the invalid ones."
    Config = ValidateConfig
    config: ValidateConfig

    @classmethod
    def problems(cls, config: ComponentConfig) -> list[str]:
        """An invalid schema."""
        try:
            Draft202012Validator.check_schema(narrow(config, ValidateConfig).schema_)
        except SchemaError as exc:
            return [f"schema is not a valid JSON Schema: {exc.message}"]
        return []

    @cached_property
    def _validator(self) -> Draft202012Validator:
        schema = self.config.schema_
        return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def process(self, batch: Batch) -> Batch:
        """Each record checked; see `on_error`."""
        rows = []
        for where, row in _rows(batch):
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
class TypeCoercer(Component):
    """Converts named fields to numbers, booleans or strings ("3.5" → 3.5, "true" → True)."""

    kind = "input"
    name = "coerce"
    title = "Coerce types"
    description = "Convert named fields to float, int, bool or str; missing fields are left alone."
    Config = CoerceConfig
    config: CoerceConfig

    def process(self, batch: Batch) -> Batch:
        """Each named field converted; one that cannot be is an `InvalidInputError`."""
        rows = []
        for where, row in _rows(batch):
            for field, target in self.config.types.items():
                value = row.get(field)
                if _is_missing(value):
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


# -- impute --------------------------------------------------------------------------------------


class ImputeConfig(ComponentConfig):
    """Config of `impute`."""

    strategy: Literal["mean", "median", "most_frequent", "constant"] = Field(
        default="mean", description="How a missing value is replaced."
    )
    columns: list[str] = Field(
        default_factory=list,
        description="Fields to fill; empty: every field of the reference rows (every numeric "
        "one for mean and median).",
    )
    fill_value: Scalar | None = Field(
        default=None, description="The value for the constant strategy."
    )
    values: dict[str, Scalar] = Field(
        default_factory=dict, description="Learnt: the fill value of each field (set by fit)."
    )


@register_component
class MissingValueImputer(Component):
    """Fills missing fields (absent, None or NaN) with a learnt statistic or a constant."""

    kind = "input"
    name = "impute"
    title = "Impute missing values"
    description = (
        "Fill missing fields with the reference mean, median, most frequent or a constant."
    )
    Config = ImputeConfig
    config: ImputeConfig
    fittable = True

    @classmethod
    def problems(cls, config: ComponentConfig) -> list[str]:
        """A constant strategy without a fill value."""
        config = narrow(config, ImputeConfig)
        if config.strategy == "constant" and config.fill_value is None:
            return ["strategy 'constant' needs fill_value"]
        return []

    @classmethod
    def unfitted(cls, config: ComponentConfig) -> list[str]:
        """A learnt strategy without its values."""
        config = narrow(config, ImputeConfig)
        if config.strategy == "constant":
            return []
        if not config.values:
            return [f"strategy '{config.strategy}' needs values: fit on reference rows"]
        return _unfitted(config.columns, config.values)

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The fill value of each column, from the non-missing values of the reference rows."""
        strategy = self.config.strategy
        if strategy == "constant":
            if self.config.fill_value is None:
                raise InvalidInputError("strategy 'constant' needs fill_value")
            columns = self.config.columns or _fields(rows)
            return {"values": dict.fromkeys(columns, self.config.fill_value)}
        numeric = strategy != "most_frequent"
        columns = self.config.columns or [
            column for column in _fields(rows) if _has_values(rows, column, numeric=numeric)
        ]
        if strategy == "most_frequent":
            return {"values": {column: _most_frequent(rows, column) for column in columns}}
        statistic = np.mean if strategy == "mean" else np.median
        return {"values": {column: float(statistic(_numbers(rows, column))) for column in columns}}

    def process(self, batch: Batch) -> Batch:
        """Each missing field of the chosen columns filled."""
        rows = []
        for _, row in _rows(batch):
            for column, fill in self._fills(row).items():
                if _is_missing(row.get(column)):
                    row[column] = fill
            rows.append(row)
        return batch.replace(rows)

    def _fills(self, row: dict[str, Any]) -> dict[str, Any]:
        """The value for each column of `row` that may need filling."""
        columns = self.config.columns or list(self.config.values)
        if self.config.strategy != "constant":
            return {column: self.config.values[column] for column in columns}
        # An unfitted constant strategy without columns fills whatever the row has missing.
        return dict.fromkeys(columns or row, self.config.fill_value)


def _fields(rows: list[dict[str, Any]]) -> list[str]:
    """Every field of the reference rows, in the order first seen."""
    return list(dict.fromkeys(field for row in rows for field in row))


def _has_values(rows: list[dict[str, Any]], column: str, *, numeric: bool) -> bool:
    """Whether `column` has a value in the reference rows (and only numbers, if asked)."""
    values = [row.get(column) for row in rows if not _is_missing(row.get(column))]
    if not numeric:
        return any(isinstance(value, Scalar) for value in values)
    return bool(values) and all(
        isinstance(value, int | float) and not isinstance(value, bool) for value in values
    )


def _most_frequent(rows: list[dict[str, Any]], column: str) -> Scalar:
    """The commonest scalar value of `column` (ties: the one seen first)."""
    counts = Counter(
        value
        for row in rows
        if isinstance(value := row.get(column), Scalar) and not _is_missing(value)
    )
    if not counts:
        raise InvalidInputError(f"the reference rows have no values for field '{column}'")
    return counts.most_common(1)[0][0]


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
class OutlierDetector(Component):
    """Flags or rejects records far from the reference rows (z-score, IQR or isolation forest)."""

    kind = "input"
    name = "outliers"
    title = "Detect outliers"
    description = "Flag or reject records far from the reference data (z-score, IQR, forest)."
    Config = OutliersConfig
    config: OutliersConfig
    fittable = True
    _forest: Any = None

    @classmethod
    def problems(cls, config: ComponentConfig) -> list[str]:
        """A threshold out of range, or reference rows of the wrong width."""
        config = narrow(config, OutliersConfig)
        if config.method != "isolation_forest":
            return []
        problems = []
        if config.threshold is not None and config.threshold > 0.5:
            problems.append("isolation_forest: threshold (the share of outliers) must be ≤ 0.5")
        if any(len(row) != len(config.columns) for row in config.reference):
            problems.append("reference rows must have one value per column")
        return problems

    @classmethod
    def unfitted(cls, config: ComponentConfig) -> list[str]:
        """Statistics or reference rows still to learn."""
        config = narrow(config, OutliersConfig)
        if config.method != "isolation_forest":
            return _unfitted(config.columns, config.stats)
        if not config.reference:
            return ["isolation_forest needs reference rows: fit on reference rows"]
        return []

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The statistics of each column, or the reference rows for the isolation forest."""
        columns = self.config.columns
        if self.config.method == "isolation_forest":
            return {"reference": _reference(rows, columns)}
        if self.config.method == "zscore":
            return {"stats": {c: _mean_std(_numbers(rows, c)) for c in columns}}
        return {"stats": {c: _quartiles(_numbers(rows, c)) for c in columns}}

    async def setup(self) -> None:
        """Fit the isolation forest on the reference rows (in a thread: it takes a moment)."""
        if self.config.method == "isolation_forest":
            await asyncio.to_thread(self._fitted_forest)

    def process(self, batch: Batch) -> Batch:
        """Each record flagged, or the request rejected at the first outlier."""
        if self.config.method == "isolation_forest":
            verdicts = self._forest_verdicts(batch)
        else:
            verdicts = [self._column_verdict(where, row) for where, row in _rows(batch)]
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
            if _is_missing(value := row.get(column)):
                continue
            x = _number(value, where, column)
            stats = self.config.stats[column]
            if method == "zscore":
                score = abs(x - stats["mean"]) / _spread(stats["std"])
                why = f"{score:.1f} standard deviations from the mean (limit {limit:g})"
            else:
                score = max(stats["q1"] - x, x - stats["q3"], 0) / _spread(
                    stats["q3"] - stats["q1"]
                )
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
            [_number(row.get(column), where, column) for column in columns]
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


def _spread(width: float) -> float:
    """A scale to divide by: a zero spread counts as 1, as in scikit-learn's scalers."""
    return width if width > 0 else 1.0


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def _quartiles(values: list[float]) -> dict[str, float]:
    q1, q3 = np.percentile(values, [25, 75])
    return {"q1": float(q1), "q3": float(q3)}


def _reference(rows: list[dict[str, Any]], columns: list[str]) -> list[list[float]]:
    """The complete reference rows as lists of floats, evenly thinned to `MAX_REFERENCE_ROWS`."""
    complete = [
        [_number(row[c], f"reference row {i}", c) for c in columns]
        for i, row in enumerate(rows)
        if not any(_is_missing(row.get(c)) for c in columns)
    ]
    if not complete:
        raise InvalidInputError(f"no reference row has every field of {', '.join(columns)}")
    if len(complete) > MAX_REFERENCE_ROWS:
        keep = np.linspace(0, len(complete) - 1, MAX_REFERENCE_ROWS).round().astype(int)
        complete = [complete[i] for i in keep]
    return complete


# -- scale ---------------------------------------------------------------------------------------


class ScaleConfig(ComponentConfig):
    """Config of `scale`."""

    method: Literal["standard", "minmax"] = Field(
        default="standard",
        description="standard: (x - mean) / std; minmax: (x - min) / (max - min).",
    )
    columns: list[str] = Field(min_length=1, description="The numeric fields to scale.")
    stats: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Learnt: mean and std (standard) or min and max (minmax) of each column.",
    )


@register_component
class NumericScaler(Component):
    """Standardises or min-max scales numeric fields with statistics of the reference rows."""

    kind = "input"
    name = "scale"
    title = "Scale"
    description = "Standardise or min-max scale numeric fields using the reference data."
    Config = ScaleConfig
    config: ScaleConfig
    fittable = True

    @classmethod
    def unfitted(cls, config: ComponentConfig) -> list[str]:
        """Columns that are not fitted."""
        config = narrow(config, ScaleConfig)
        return _unfitted(config.columns, config.stats)

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The mean and std, or the min and max, of each column."""
        stats = {}
        for column in self.config.columns:
            values = _numbers(rows, column)
            if self.config.method == "standard":
                stats[column] = _mean_std(values)
            else:
                stats[column] = {"min": float(np.min(values)), "max": float(np.max(values))}
        return {"stats": stats}

    def process(self, batch: Batch) -> Batch:
        """Each column scaled; missing values are left missing."""
        rows = []
        for where, row in _rows(batch):
            for column in self.config.columns:
                if not _is_missing(value := row.get(column)):
                    row[column] = self._scale(_number(value, where, column), column)
            rows.append(row)
        return batch.replace(rows)

    def _scale(self, x: float, column: str) -> float:
        stats = self.config.stats[column]
        if self.config.method == "standard":
            return (x - stats["mean"]) / _spread(stats["std"])
        return (x - stats["min"]) / _spread(stats["max"] - stats["min"])


# -- one_hot -------------------------------------------------------------------------------------


class OneHotConfig(ComponentConfig):
    """Config of `one_hot`."""

    columns: list[str] = Field(min_length=1, description="The categorical fields to encode.")
    categories: dict[str, list[Scalar]] = Field(
        default_factory=dict,
        description="Learnt: the categories of each column, in the order first seen.",
    )
    unknown: Literal["ignore", "error"] = Field(
        default="ignore",
        description="A category not seen in the reference rows: all zeros, or reject the request.",
    )
    drop_original: bool = Field(default=True, description="Remove the encoded field itself.")


@register_component
class OneHotEncoder(Component):
    """Turns each categorical field into one 0/1 field per category, named `{column}_{category}`."""

    kind = "input"
    name = "one_hot"
    title = "One-hot encode"
    description = "Turn categorical fields into 0/1 fields, one per category seen in the reference."
    Config = OneHotConfig
    config: OneHotConfig
    fittable = True

    @classmethod
    def unfitted(cls, config: ComponentConfig) -> list[str]:
        """Columns that are not fitted."""
        config = narrow(config, OneHotConfig)
        return _unfitted(config.columns, config.categories)

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The distinct non-missing values of each column, in the order first seen."""
        categories = {}
        for column in self.config.columns:
            values = [row.get(column) for row in rows]
            seen = dict.fromkeys(v for v in values if isinstance(v, Scalar) and not _is_missing(v))
            if not seen:
                raise InvalidInputError(f"the reference rows have no values for field '{column}'")
            categories[column] = list(seen)
        return {"categories": categories}

    def process(self, batch: Batch) -> Batch:
        """Each column encoded; a missing value gives all zeros."""
        rows = []
        for where, row in _rows(batch):
            for column in self.config.columns:
                row.update(self._encode(where, column, row.get(column)))
                if self.config.drop_original:
                    row.pop(column, None)
            rows.append(row)
        return batch.replace(rows)

    def _encode(self, where: str, column: str, value: object) -> dict[str, int]:
        categories = self.config.categories[column]
        if self.config.unknown == "error" and not _is_missing(value) and value not in categories:
            known = ", ".join(repr(category) for category in categories)
            raise InvalidInputError(
                f"{where}: field '{column}' = {value!r} is not a known category ({known})"
            )
        return {f"{column}_{category}": int(value == category) for category in categories}


# -- expression ----------------------------------------------------------------------------------

FUNCTIONS = {
    "log": math.log,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
}
"""What an expression may call."""


class ExpressionConfig(ComponentConfig):
    """Config of `expression`."""

    features: dict[str, str] = Field(
        default_factory=dict,
        description="New field → expression over the record's fields, e.g. "
        "'log(amount + 1)' or 'income / max(debt, 1)'. Later features may use earlier ones. "
        f"Functions: {', '.join(FUNCTIONS)}.",
    )


@register_component
class FeatureExpressions(Component):
    """Adds fields computed from a record's other fields with safe arithmetic expressions."""

    kind = "input"
    name = "expression"
    title = "Feature expressions"
    description = "Add fields computed by expressions such as 'log(amount + 1)'."
    Config = ExpressionConfig
    config: ExpressionConfig

    @classmethod
    def problems(cls, config: ComponentConfig) -> list[str]:
        """Expressions that do not parse."""
        problems = []
        for feature, expression in narrow(config, ExpressionConfig).features.items():
            try:
                _parse(expression)
            except SyntaxError as exc:
                problems.append(f"feature '{feature}': cannot parse {expression!r}: {exc.msg}")
        return problems

    @cached_property
    def _parsed(self) -> dict[str, ast.expr]:
        return {feature: _parse(text) for feature, text in self.config.features.items()}

    def process(self, batch: Batch) -> Batch:
        """Each record with its new fields; an expression that fails is an `InvalidInputError`."""
        evaluator = SimpleEval(functions=FUNCTIONS)  # one per call: it keeps state while it runs
        rows = []
        for where, row in _rows(batch):
            for feature, tree in self._parsed.items():
                evaluator.names = row
                row[feature] = self._evaluate(evaluator, where, feature, tree)
            rows.append(row)
        return batch.replace(rows)

    def _evaluate(self, evaluator: SimpleEval, where: str, feature: str, tree: ast.expr) -> Any:
        expression = self.config.features[feature]
        try:
            value = evaluator.eval(expression, tree)
        except EVALUATION_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if not (isinstance(value, float) and not math.isfinite(value)):
                return value
            reason = f"the result {value} is not a finite number"
        raise InvalidInputError(f"{where}: feature '{feature}' = {expression!r} failed: {reason}")


EVALUATION_ERRORS = (
    InvalidExpression,
    ArithmeticError,
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
)
"""What an expression raises on a record it does not suit (a missing name, a zero divisor...)."""


def _parse(expression: str) -> ast.expr:
    """One expression (not a statement) as a syntax tree; `SyntaxError` if it is not one."""
    return ast.parse(expression.strip(), mode="eval").body
