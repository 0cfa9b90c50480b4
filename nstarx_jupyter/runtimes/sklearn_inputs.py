"""What a fitted scikit-learn model takes: its columns, their datatypes and a sample value each.

scikit-learn keeps no input schema, so it is read from what fitting left behind, in this order:

1. an MLflow signature passed as the `input_columns` option (`[{"name", "type"}]`, MLflow's
   column types), when its names agree with the model's;
2. the model itself: a text vectorizer first (`TfidfVectorizer`, `CountVectorizer`) takes one
   1-D string input; otherwise `feature_names_in_`, with each column's type read from the step
   that consumes it (a `ColumnTransformer`'s transformers, an encoder's `categories_`, an
   imputer's `statistics_`, a vectorizer on one column), numeric when nothing says otherwise.

A model whose columns are all numeric keeps the single 2-D FP64 input it always had; any string
column makes it take one 1-D input per column (`columns`), fed to the model as a DataFrame.
A `datetime` column (only a signature can say so: a fitted model keeps no dtypes) is a BYTES
input of ISO-8601 strings, converted to `datetime64` (UTC, without a zone) before the model.
Nothing here imports scikit-learn: steps are recognised by their fitted attributes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ["DATETIME_SAMPLE", "TEXT_INPUT", "Column", "SklearnInputs", "example_record",
           "frame_columns", "infer_inputs"]  # fmt: skip

TEXT_INPUT = "text"
"""The input name of a text pipeline fitted on bare strings (the `input_name` option renames it)."""

_MLFLOW_TYPES = {
    "string": "BYTES", "binary": "BYTES", "double": "FP64", "float": "FP32", "long": "INT64",
    "integer": "INT32", "boolean": "BOOL", "datetime": "BYTES",
}  # fmt: skip
DATETIME_SAMPLE = "2026-01-01T12:00:00Z"
_NUMERIC_SAMPLE = 0.0
_TEXT_SAMPLE = "example text"

InputKind = Literal["matrix", "columns", "text"]


@dataclass(frozen=True, slots=True)
class Column:
    """One input column: its name, V2 datatype and a value to show in an example."""

    name: str
    datatype: str
    sample: Any = None
    datetime: bool = False
    """ISO-8601 strings on the wire, `datetime64` for the model."""


@dataclass(frozen=True, slots=True)
class SklearnInputs:
    """How a model takes its input.

    `matrix`: one 2-D numeric array (columns in order, when named); `columns`: one 1-D input per
    column, of its own datatype; `text`: one 1-D string input.
    """

    kind: InputKind
    columns: tuple[Column, ...] = ()

    def names(self) -> tuple[str, ...]:
        """The column names, in the model's order."""
        return tuple(column.name for column in self.columns)


def infer_inputs(model: Any, options: Mapping[str, Any] | None = None) -> SklearnInputs:
    """Read a fitted model's inputs (see the module docstring); `options` are the runtime's."""
    options = options or {}
    names = options.get("feature_names") or _names_in(model)
    declared = _declared(options, names)
    if declared is not None:
        return declared
    first = _first_step(model)
    if names is None and _is_vectorizer(first):
        return SklearnInputs("text", (Column(str(options.get("input_name") or TEXT_INPUT),
                                             "BYTES", _text_sample(first)),))  # fmt: skip
    if names is None:
        return SklearnInputs("matrix")
    found = dict(_column_types(first, [str(name) for name in names]))
    columns = tuple(found.get(str(name), Column(str(name), "FP64", _NUMERIC_SAMPLE))
                    for name in names)  # fmt: skip
    return _shaped(columns)


def example_record(model: Any, options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """One record of sample values a model takes (strings for string columns), or None."""
    inputs = infer_inputs(model, options)
    if not inputs.columns:
        return None
    return {column.name: column.sample for column in inputs.columns}


def _shaped(columns: tuple[Column, ...]) -> SklearnInputs:
    if all(column.datatype != "BYTES" for column in columns):
        return SklearnInputs("matrix", columns)
    return SklearnInputs("columns", columns)


def _declared(options: Mapping[str, Any], names: Sequence[Any] | None) -> SklearnInputs | None:
    """The inputs an MLflow signature declares, when they fit the model; else None."""
    raw = options.get("input_columns")
    if not isinstance(raw, list) or not raw:
        return None
    items = [(item.get("name"), _MLFLOW_TYPES.get(str(item.get("type"))))
             for item in raw if isinstance(item, dict)]  # fmt: skip
    if len(items) != len(raw) or any(datatype is None for _, datatype in items):
        return None  # a type we cannot carry (arrays, objects): read the model
    if len(items) == 1 and items[0][0] is None and items[0][1] == "BYTES" and names is None:
        name = str(options.get("input_name") or TEXT_INPUT)
        return SklearnInputs("text", (Column(name, "BYTES", _TEXT_SAMPLE),))
    if any(name is None for name, _ in items):
        return None
    if names is not None and [str(n) for n in names] != [str(name) for name, _ in items]:
        return None
    times = {str(item.get("name")) for item in raw if item.get("type") == "datetime"}
    columns = tuple(Column(str(name), str(datatype), DATETIME_SAMPLE, datetime=True)
                    if str(name) in times else Column(str(name), str(datatype),
                                                      _sample_for(str(datatype)))
                    for name, datatype in items)  # fmt: skip
    return _shaped(columns)


def frame_columns(frame: Any) -> list[dict[str, str]] | None:
    """A DataFrame's columns as MLflow column types, when one is a datetime (else None).

    What `deploy()` sends as the `input_columns` option of a fitted model: its example or
    reference data is the only place a datetime column's type survives.
    """
    dtypes = getattr(frame, "dtypes", None)
    if dtypes is None or not any(str(dtype).startswith("datetime64") for dtype in dtypes):
        return None
    kinds = {"f": "double", "i": "long", "u": "long", "b": "boolean", "M": "datetime"}
    # pandas' own dtypes (its `str`, `category`, `Int64`) have a kind, but no NumPy dtype
    return [{"name": str(name), "type": kinds.get(getattr(dtype, "kind", "O"), "string")
             if not str(dtype).startswith("datetime64") else "datetime"}
            for name, dtype in dtypes.items()]  # fmt: skip


def _sample_for(datatype: str) -> Any:
    if datatype == "BYTES":
        return "a"
    return False if datatype == "BOOL" else _NUMERIC_SAMPLE


def _names_in(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        first = _first_step(model)
        names = getattr(first, "feature_names_in_", None) if first is not model else None
    return None if names is None else [str(name) for name in names]


def _steps(model: Any) -> list[Any]:
    """A pipeline's real steps (not 'passthrough' or None), or the model alone."""
    steps = getattr(model, "steps", None)
    if not isinstance(steps, list):
        return [model]
    return [step for _, step in steps if step is not None and step != "passthrough"]


def _first_step(model: Any) -> Any:
    while True:
        steps = _steps(model)
        if not steps or steps[0] is model:
            return model
        model = steps[0]


def _is_vectorizer(step: Any) -> bool:
    """A text vectorizer (Count, Tfidf, Hashing): it takes strings, one document per row."""
    return callable(getattr(step, "build_analyzer", None))


def _text_sample(vectorizer: Any) -> str:
    vocabulary = getattr(vectorizer, "vocabulary_", None)
    if isinstance(vocabulary, dict) and vocabulary:
        words = [str(word) for word in sorted(vocabulary, key=vocabulary.__getitem__)[:3]]
        return " ".join(words)
    return _TEXT_SAMPLE


def _column_types(step: Any, names: list[str]) -> Iterator[tuple[str, Column]]:
    """Each column whose type `step` (the first step of the model) tells, with that type."""
    transformers = getattr(step, "transformers_", None)
    if isinstance(transformers, list):
        for item in transformers:
            if not isinstance(item, tuple) or len(item) < 3:
                continue
            selected = _selected(item[2], names)
            yield from _typed(item[1], selected)
        return
    yield from _typed(step, names)


def _selected(columns: Any, names: list[str]) -> list[str]:
    """The names a ColumnTransformer entry's column selection picks."""
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, int | np.integer):
        return [names[int(columns)]] if 0 <= int(columns) < len(names) else []
    if callable(columns):
        return []
    try:
        picked = np.arange(len(names))[columns] if not _all_str(columns) else None
    except (IndexError, TypeError, ValueError):
        return []
    if picked is None:
        return [str(name) for name in columns]
    return [names[int(index)] for index in np.atleast_1d(picked)]


def _all_str(columns: Any) -> bool:
    try:
        return all(isinstance(name, str) for name in columns) and len(columns) > 0
    except TypeError:
        return False


def _typed(transformer: Any, names: list[str]) -> Iterator[tuple[str, Column]]:
    """The columns `transformer` (or its pipeline's first telling step) reads as strings."""
    for step in _steps(transformer):
        if isinstance(step, str):  # 'drop' / 'passthrough' in a ColumnTransformer
            return
        if _is_vectorizer(step):
            for name in names:
                yield name, Column(name, "BYTES", _text_sample(step))
            return
        kinds = _per_column(step)
        if kinds is not None:
            for name, sample in zip(names, kinds, strict=False):
                if isinstance(sample, str):
                    yield name, Column(name, "BYTES", sample)
                else:
                    yield name, Column(name, "FP64", _number(sample))
            return


def _per_column(step: Any) -> list[Any] | None:
    """A sample value per column from an encoder's categories or an imputer's statistics."""
    categories = getattr(step, "categories_", None)
    if isinstance(categories, list) and categories:
        return [_first(np.asarray(values)) for values in categories]
    statistics = getattr(step, "statistics_", None)
    if statistics is not None:
        return [_first(np.asarray([value], dtype=object)) for value in np.asarray(statistics)]
    return None


def _first(values: np.ndarray[Any, Any]) -> Any:
    for value in values.tolist():
        if isinstance(value, bytes):
            return value.decode(errors="replace")
        if isinstance(value, str) or value is not None:
            return value
    return "a" if values.dtype.kind in "OUS" else _NUMERIC_SAMPLE


def _number(value: Any) -> Any:
    if isinstance(value, bool | int | float) and not math.isnan(value):
        return value
    return _NUMERIC_SAMPLE
