"""Summary statistics of training data, stored with a model version for later drift checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["QUANTILES", "SAMPLE_ROWS", "SAMPLE_SEED", "sample_indices", "sample_rows", "summarize"]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SAMPLE_ROWS = 1000
"""Rows of the reference kept as they are next to the summary: what the Kolmogorov-Smirnov
and chi-squared drift tests compare live traffic with (a summary cannot give their p-values)."""
SAMPLE_SEED = 0
"""The sample is drawn with this seed: the same data gives the same sample, run after run."""
_BINS = 10
_TOP = 20


def summarize(
    data: Any, feature_names: list[str] | None = None, *, sample: int = SAMPLE_ROWS
) -> dict[str, Any]:
    """Describe every column of `data` (a DataFrame, 2-D array or list of rows).

    Numeric columns get count, missing, mean, std, min, max, quantiles and a 10-bin histogram;
    other columns get their most frequent values. With `sample` > 0, up to that many rows
    (seeded, without replacement) are kept too, under `sample` (see `sample_rows`). The result
    is plain JSON.
    """
    columns = _columns(data, feature_names)
    features = {name: _describe(values) for name, values in columns.items()}
    rows = len(next(iter(columns.values()))) if columns else 0
    out: dict[str, Any] = {"rows": rows, "features": features, "quantiles": list(QUANTILES)}
    if sample > 0:
        out["sample"] = _sample(columns, rows, sample)
    return out


def sample_rows(
    data: Any, feature_names: list[str] | None = None, *, rows: int = SAMPLE_ROWS
) -> dict[str, Any]:
    """A seeded sample of up to `rows` rows of `data`, column by column, as plain JSON.

    `{"rows": n, "seed": 0, "columns": {name: [value, ...]}}`: numbers as floats, other values
    as strings, a missing value (None, NaN) as null.
    """
    columns = _columns(data, feature_names)
    total = len(next(iter(columns.values()))) if columns else 0
    return _sample(columns, total, rows)


def sample_indices(total: int, rows: int = SAMPLE_ROWS) -> np.ndarray[Any, Any]:
    """The positions of the rows `sample_rows` keeps out of `total` (sorted, seeded)."""
    if total <= rows:
        return np.arange(total)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(total, rows, replace=False))


def _sample(columns: dict[str, np.ndarray[Any, Any]], total: int, rows: int) -> dict[str, Any]:
    picked = sample_indices(total, rows)
    kept = {name: _plain(values[picked]) for name, values in columns.items()}
    return {"rows": int(picked.size), "seed": SAMPLE_SEED, "columns": kept}


def _plain(values: np.ndarray[Any, Any]) -> list[Any]:
    """JSON values: floats (NaN as null) for a numeric column, strings (None as null) else."""
    if values.dtype.kind in "biuf":
        return [None if math.isnan(v) else v for v in values.astype(np.float64).tolist()]
    return [None if _missing(v) else str(v) for v in values.tolist()]


def _columns(data: Any, names: list[str] | None) -> dict[str, np.ndarray[Any, Any]]:
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # pandas without importing it
        return {str(col): data[col].to_numpy() for col in data.columns}
    array = np.asarray(data)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"reference data must be 2-D (rows, features), got shape {array.shape}")
    if names is not None and len(names) != array.shape[1]:
        raise ValueError(f"{len(names)} feature names for {array.shape[1]} columns")
    labels = names or [f"feature_{i}" for i in range(array.shape[1])]
    return {label: array[:, i] for i, label in enumerate(labels)}


def _describe(values: np.ndarray[Any, Any]) -> dict[str, Any]:
    if values.dtype.kind in "biuf":
        numbers = values.astype(np.float64)
        finite = numbers[np.isfinite(numbers)]
        out: dict[str, Any] = {"kind": "numeric", "count": int(values.size),
                               "missing": int(values.size - finite.size)}  # fmt: skip
        if finite.size:
            counts, edges = np.histogram(finite, bins=_BINS)
            out.update(
                mean=float(finite.mean()),
                std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
                min=float(finite.min()),
                max=float(finite.max()),
                quantiles=[float(q) for q in np.quantile(finite, QUANTILES)],
                histogram={"edges": edges.tolist(), "counts": counts.tolist()},
            )
        return out
    present = [v for v in values.tolist() if not _missing(v)]
    unique, counts = np.unique(np.asarray([str(v) for v in present], dtype=object),
                               return_counts=True)  # fmt: skip
    order = np.argsort(-counts, kind="stable")[:_TOP]
    return {
        "kind": "categorical",
        "count": int(values.size),
        "missing": int(values.size - len(present)),
        "distinct": len(unique),
        "top": {str(unique[i]): int(counts[i]) for i in order},
    }


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
