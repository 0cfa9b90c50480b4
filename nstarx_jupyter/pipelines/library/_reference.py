"""Helpers the input processors share: missing values, numbers of reference rows, copies."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nstarx_jupyter.pipelines.component import Batch

__all__ = ["MAX_REFERENCE_ROWS", "as_number", "editable_rows", "mean_std", "missing",
           "reference_numbers", "spread", "unfitted_columns"]  # fmt: skip

MAX_REFERENCE_ROWS = 2000
"""The isolation forest keeps at most this many reference rows in its config."""


def missing(value: object) -> bool:
    """Whether a field counts as missing: None or NaN (an absent field reads as None)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def as_number(value: object, where: str, column: str) -> float:
    """`value` as a float, or an `InvalidInputError` naming the row and the field."""
    if missing(value):
        raise InvalidInputError(f"{where}: field '{column}' is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{where}: field '{column}' = {value!r} is not a number")
    return float(value)


def reference_numbers(rows: list[dict[str, Any]], column: str) -> list[float]:
    """The non-missing values of `column` in reference rows, as floats."""
    values = [
        as_number(row.get(column), f"reference row {i}", column)
        for i, row in enumerate(rows)
        if not missing(row.get(column))
    ]
    if not values:
        raise InvalidInputError(f"the reference rows have no values for field '{column}'")
    return values


def editable_rows(batch: Batch) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each row as ("row N", a copy to change), N being its position in the request."""
    for position, row in zip(batch.index, batch.rows, strict=True):
        yield f"row {position}", {**row}


def unfitted_columns(columns: list[str], learnt: dict[str, Any]) -> list[str]:
    """A problem for each column that has no learnt parameters yet."""
    return [
        f"column '{column}' has no learnt parameters: fit the pipeline on reference rows"
        for column in columns
        if column not in learnt
    ]


def spread(width: float) -> float:
    """A scale to divide by: a zero spread counts as 1, as in scikit-learn's scalers."""
    return width if width > 0 else 1.0


def mean_std(values: list[float]) -> dict[str, float]:
    """The mean and the (population) standard deviation of `values`."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}
