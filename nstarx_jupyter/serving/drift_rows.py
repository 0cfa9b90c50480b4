"""The values drift compares: a deployment's reference, and the rows a request's tensors give.

`Reference` is parsed from the control API's body or the state file (400 when malformed);
`columns_of` reads a request's tensors as 1-D columns (no copy) and `row_at` one row of them as
plain values, as `serving.drift` samples them off the request path.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

    from nstarx_jupyter.runtimes.base import Tensors

__all__ = ["MAX_FEATURES", "MAX_TEXT", "PREDICTION_KEY", "Reference", "columns_of", "feature_name",
           "json_list", "plain", "row_at"]  # fmt: skip

MAX_FEATURES = 256
MAX_REFERENCE_ROWS = 10_000
MAX_TEXT = 200
"""Categorical values longer than this are cut (a category, not a document)."""


@dataclass(slots=True)
class Reference:
    """What live traffic is compared with: a sample of rows per feature, and predictions."""

    source: str
    """`data` (sent by the notebook), `registry` (a model version's statistics), `window`."""
    columns: dict[str, list[Any]]
    predictions: list[Any] | None = None
    predictions_source: str | None = None
    """`reference` (given with the data) or `first window` (frozen from live traffic)."""
    created: float = field(default_factory=time.time)

    @property
    def rows(self) -> int:
        """Rows in the reference sample."""
        return max((len(v) for v in self.columns.values()), default=0)

    @classmethod
    def parse(cls, doc: Any, source: str = "data") -> Reference:
        """A reference from the control API's body (or the state file); 400 when malformed.

        `{"columns": {name: [values]}, "predictions": [values]?}`, or a registry summary
        (`registry.stats.summarize`) whose `sample` holds the columns.
        """
        if not isinstance(doc, dict):
            raise InvalidInputError("reference: a JSON object")
        if "columns" not in doc and isinstance(doc.get("sample"), dict):
            doc = {**doc["sample"], "predictions": doc.get("predictions"),
                   "source": doc.get("source", "registry")}  # fmt: skip
        columns = doc.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise InvalidInputError("reference: 'columns' maps each feature to its values")
        if len(columns) > MAX_FEATURES:
            raise InvalidInputError(f"reference: at most {MAX_FEATURES} features")
        parsed = {str(name)[:MAX_TEXT]: _values(values, f"reference column '{name}'")
                  for name, values in columns.items()}  # fmt: skip
        lengths = {len(v) for v in parsed.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise InvalidInputError("reference: every column needs the same number of rows (> 0)")
        predictions = doc.get("predictions")
        if predictions is not None:
            predictions = _values(predictions, "reference predictions")
        given = doc.get("predictions_source")
        created = doc.get("created")
        if isinstance(created, bool) or not isinstance(created, int | float):
            created = time.time()
        return cls(str(doc.get("source") or source)[:40], parsed, predictions,
                   str(given)[:40] if given else ("reference" if predictions else None),
                   float(created))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The state file's form (and `Reference.parse`'s)."""
        return {"source": self.source, "columns": self.columns, "predictions": self.predictions,
                "predictions_source": self.predictions_source, "created": self.created}  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """Source, rows, features and when it was set (no values)."""
        return {"source": self.source, "rows": self.rows, "features": list(self.columns),
                "predictions": self.predictions_source, "created": self.created}  # fmt: skip


def _values(values: Any, what: str) -> list[Any]:
    if not isinstance(values, list):
        raise InvalidInputError(f"{what}: a list of values")
    if len(values) > MAX_REFERENCE_ROWS:
        raise InvalidInputError(f"{what}: at most {MAX_REFERENCE_ROWS} rows")
    out: list[Any] = []
    for value in values:
        if value is None or isinstance(value, bool | int | float):
            out.append(None if isinstance(value, float) and not math.isfinite(value) else value)
        elif isinstance(value, str):
            out.append(value[:MAX_TEXT])
        else:
            raise InvalidInputError(f"{what}: numbers, strings or null")
    return out


class PredictionKey:
    """The key of a row's prediction (no feature name can equal it)."""

    def __repr__(self) -> str:
        return "<prediction>"


PREDICTION_KEY = PredictionKey()


def columns_of(inputs: Tensors, outputs: Tensors) -> tuple[dict[Any, np.ndarray[Any, Any]], int]:
    """The request's columns as 1-D views, and their number of rows (0: nothing to keep).

    Keyed by position, or by an input's name; the prediction under `PREDICTION_KEY`.
    """
    columns: dict[Any, np.ndarray[Any, Any]] = {}
    wide = [a for a in inputs.values() if a.ndim == 2 and a.shape[1] > 1]
    if len(inputs) == 1 and wide:
        matrix = wide[0]
        columns = {i: matrix[:, i] for i in range(min(matrix.shape[1], MAX_FEATURES))}
    else:
        for key, array in list(inputs.items())[:MAX_FEATURES]:
            if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
                columns[key] = array.reshape(-1)
    if not columns:
        return {}, 0
    count = min(a.shape[0] for a in columns.values())
    for array in outputs.values():
        if array.shape[:1] == (count,) and (array.ndim == 1 or array.size == count):
            columns[PREDICTION_KEY] = array.reshape(-1)
            break
    return columns, count


def row_at(columns: dict[Any, np.ndarray[Any, Any]], index: int) -> dict[Any, Any]:
    """Row `index` of the columns as a dict of plain values."""
    return {key: plain(array[index : index + 1])[0] for key, array in columns.items()}


def plain(array: np.ndarray[Any, Any]) -> list[Any]:
    """The values as JSON-ready plain values (text cut at `MAX_TEXT`)."""
    if array.dtype.kind in "biuf":
        return array.tolist()  # type: ignore[no-any-return]
    return [v.decode("utf-8", "replace")[:MAX_TEXT] if isinstance(v, bytes)
            else v if v is None or isinstance(v, int | float) else str(v)[:MAX_TEXT]
            for v in array.tolist()]  # fmt: skip


def feature_name(key: Any, names: list[str] | None) -> str:
    """A column key's feature name: the reference's by position, else `feature_N` or the key."""
    if isinstance(key, int):
        return names[key] if names is not None and key < len(names) else f"feature_{key}"
    return str(key)


def json_list(values: np.ndarray[Any, Any]) -> list[Any]:
    """The values as a list JSON can hold (NaN and infinities as null)."""
    return [None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
            for v in values.tolist()]  # fmt: skip
