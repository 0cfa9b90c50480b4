"""Input processors that reshape records: imputation, scaling, one-hot, feature expressions.

Each is a `Component` of kind `input`. The fittable ones (`impute`, `scale`, `one_hot`) learn
their parameters from reference rows with `fit` and keep them in their config, so a fitted
pipeline is still plain JSON. Rows are never changed in place: other branches may hold the same
dicts. Error messages count rows by their position in the request.
"""

from __future__ import annotations

import ast
import math
from collections import Counter
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field
from simpleeval import InvalidExpression, SimpleEval  # type: ignore[import-untyped]

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    register_component,
)
from nstarx_jupyter.pipelines.library._fields import Scalar
from nstarx_jupyter.pipelines.library._reference import (
    as_number,
    editable_rows,
    mean_std,
    missing,
    reference_numbers,
    spread,
    unfitted_columns,
)

__all__ = ["ExpressionConfig", "FeatureExpressions", "ImputeConfig", "MissingValueImputer",
           "NumericScaler", "OneHotConfig", "OneHotEncoder", "ScaleConfig"]  # fmt: skip


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
class MissingValueImputer(Component[ImputeConfig]):
    """Fills missing fields (absent, None or NaN) with a learnt statistic or a constant."""

    kind = "input"
    name = "impute"
    title = "Impute missing values"
    description = (
        "Fill missing fields with the reference mean, median, most frequent or a constant."
    )
    fittable = True

    @classmethod
    def problems(cls, config: ImputeConfig) -> list[str]:
        """A constant strategy without a fill value."""
        if config.strategy == "constant" and config.fill_value is None:
            return ["strategy 'constant' needs fill_value"]
        return []

    @classmethod
    def unfitted(cls, config: ImputeConfig) -> list[str]:
        """A learnt strategy without its values."""
        if config.strategy == "constant":
            return []
        if not config.values:
            return [f"strategy '{config.strategy}' needs values: fit on reference rows"]
        return unfitted_columns(config.columns, config.values)

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
        return {
            "values": {
                column: float(statistic(reference_numbers(rows, column))) for column in columns
            }
        }

    def process(self, batch: Batch) -> Batch:
        """Each missing field of the chosen columns filled."""
        rows = []
        for _, row in editable_rows(batch):
            for column, fill in self._fills(row).items():
                if missing(row.get(column)):
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
    values = [row.get(column) for row in rows if not missing(row.get(column))]
    if not numeric:
        return any(isinstance(value, Scalar) for value in values)
    return bool(values) and all(
        isinstance(value, int | float) and not isinstance(value, bool) for value in values
    )


def _most_frequent(rows: list[dict[str, Any]], column: str) -> Scalar:
    """The commonest scalar value of `column` (ties: the one seen first)."""
    counts = Counter(
        value for row in rows if isinstance(value := row.get(column), Scalar) and not missing(value)
    )
    if not counts:
        raise InvalidInputError(f"the reference rows have no values for field '{column}'")
    return counts.most_common(1)[0][0]


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
class NumericScaler(Component[ScaleConfig]):
    """Standardises or min-max scales numeric fields with statistics of the reference rows."""

    kind = "input"
    name = "scale"
    title = "Scale"
    description = "Standardise or min-max scale numeric fields using the reference data."
    fittable = True

    @classmethod
    def unfitted(cls, config: ScaleConfig) -> list[str]:
        """Columns that are not fitted."""
        return unfitted_columns(config.columns, config.stats)

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The mean and std, or the min and max, of each column."""
        stats = {}
        for column in self.config.columns:
            values = reference_numbers(rows, column)
            if self.config.method == "standard":
                stats[column] = mean_std(values)
            else:
                stats[column] = {"min": float(np.min(values)), "max": float(np.max(values))}
        return {"stats": stats}

    def process(self, batch: Batch) -> Batch:
        """Each column scaled; missing values are left missing."""
        rows = []
        for where, row in editable_rows(batch):
            for column in self.config.columns:
                if not missing(value := row.get(column)):
                    row[column] = self._scale(as_number(value, where, column), column)
            rows.append(row)
        return batch.replace(rows)

    def _scale(self, x: float, column: str) -> float:
        stats = self.config.stats[column]
        if self.config.method == "standard":
            return (x - stats["mean"]) / spread(stats["std"])
        return (x - stats["min"]) / spread(stats["max"] - stats["min"])


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
class OneHotEncoder(Component[OneHotConfig]):
    """Turns each categorical field into one 0/1 field per category, named `{column}_{category}`."""

    kind = "input"
    name = "one_hot"
    title = "One-hot encode"
    description = "Turn categorical fields into 0/1 fields, one per category seen in the reference."
    fittable = True

    @classmethod
    def unfitted(cls, config: OneHotConfig) -> list[str]:
        """Columns that are not fitted."""
        return unfitted_columns(config.columns, config.categories)

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The distinct non-missing values of each column, in the order first seen."""
        categories = {}
        for column in self.config.columns:
            values = [row.get(column) for row in rows]
            seen = dict.fromkeys(v for v in values if isinstance(v, Scalar) and not missing(v))
            if not seen:
                raise InvalidInputError(f"the reference rows have no values for field '{column}'")
            categories[column] = list(seen)
        return {"categories": categories}

    def process(self, batch: Batch) -> Batch:
        """Each column encoded; a missing value gives all zeros."""
        rows = []
        for where, row in editable_rows(batch):
            for column in self.config.columns:
                row.update(self._encode(where, column, row.get(column)))
                if self.config.drop_original:
                    row.pop(column, None)
            rows.append(row)
        return batch.replace(rows)

    def _encode(self, where: str, column: str, value: object) -> dict[str, int]:
        categories = self.config.categories[column]
        if self.config.unknown == "error" and not missing(value) and value not in categories:
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
class FeatureExpressions(Component[ExpressionConfig]):
    """Adds fields computed from a record's other fields with safe arithmetic expressions."""

    kind = "input"
    name = "expression"
    title = "Feature expressions"
    description = "Add fields computed by expressions such as 'log(amount + 1)'."

    @classmethod
    def problems(cls, config: ExpressionConfig) -> list[str]:
        """Expressions that do not parse."""
        problems = []
        for feature, expression in config.features.items():
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
        for where, row in editable_rows(batch):
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
