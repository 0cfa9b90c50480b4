"""What `deploy(input_example=...)` becomes: the card's first record and the registry's example.

One example serves two readers. The card's test form wants one record of the model's fields,
filled with values of each field's type even when no example was given. The registry infers
the model's MLflow signature by calling `predict` on the example, so records must become what
the model was fitted on: a text model's documents, or a DataFrame of the columns a model fitted
on a DataFrame names. A model fitted on a plain array names no columns, so records cannot be
lined up with its features and are refused before anything is deployed.
"""

from __future__ import annotations

from typing import Any

from nstarx_jupyter.deployment.dates import iso_record
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.runtimes.sklearn_inputs import example_record, infer_inputs

__all__ = ["first_record", "mean_record", "model_example"]


def mean_record(frame: Any, names: Any = None) -> dict[str, Any] | None:
    """Each column's mean, as a record (a DataFrame's numeric columns); None when it has none.

    With `names`, only when the frame has exactly those columns (the model's features).
    """
    columns = getattr(frame, "columns", None)
    if columns is None or not len(frame) or (names is not None and list(columns) != list(names)):
        return None
    means = frame.mean(numeric_only=True)
    if len(means) != len(columns):
        return None  # a text or category column: no mean to offer
    return {str(name): float(value) for name, value in means.items()}


def first_record(example: Any, model: Any, reference: Any = None) -> dict[str, Any] | None:
    """One record for the card's test form.

    From the example; else the reference data's means (when its columns are the model's
    features); else the model's inputs with sample values of their type (a category it knows
    for a string column, 0.0 for a number); else zeros for the features the model names.
    """
    if example is None or (isinstance(example, list) and example and isinstance(example[0], str)):
        names = getattr(model, "feature_names_in_", None)
        if example is None and reference is not None:
            means = mean_record(reference, names)
            if means is not None:
                return means
        record = _sklearn_record(model)
        if record is not None and example is not None and len(record) == 1:
            return {next(iter(record)): example[0]}  # a text model's example documents
        if record is None and example is None and names is not None:
            return dict.fromkeys((str(n) for n in names), 0.0)
        return record
    if hasattr(example, "iloc"):  # a pandas DataFrame or Series
        first = example.iloc[0] if hasattr(example, "columns") else example
        return iso_record({str(k): v.item() if hasattr(v, "item") else v for k, v in first.items()})
    if isinstance(example, list) and example and isinstance(example[0], dict):
        return iso_record(example[0])
    if isinstance(example, dict):
        return iso_record(example)
    return None


def _sklearn_record(model: Any) -> dict[str, Any] | None:
    if not callable(getattr(model, "get_params", None)):
        return None
    return example_record(model)


def model_example(model: Any, example: Any) -> Any:
    """`example` as a scikit-learn-style model takes it, for the registry's signature.

    Records (a dict, or a list of dicts) of a text model become its documents; records of a
    model fitted on a DataFrame become a DataFrame of its columns, in its order, whatever their
    types; anything else is left as it is.

    Raises:
        InvalidInputError: records for a model fitted on an array without feature names, records
            without one of the model's columns, or records of several fields for a text model.
    """
    if example is None or not callable(getattr(model, "get_params", None)):
        return example
    records = [example] if isinstance(example, dict) else example
    if not (isinstance(records, list) and records and all(isinstance(r, dict) for r in records)):
        return example
    inputs = infer_inputs(model)
    if inputs.kind == "text":
        if any(len(record) != 1 for record in records):
            raise InvalidInputError(
                f"input_example: {type(model).__name__} takes one text per row: pass records "
                'of one field ({"text": "..."}) or a list of strings'
            )
        return [next(iter(record.values())) for record in records]
    names = list(inputs.names())
    if not names:
        raise InvalidInputError(
            f"input_example: records name fields, but this {type(model).__name__} was fitted on "
            "an array without feature names, so no field maps to a feature: pass rows (a 2-D "
            "array or a list of lists, in the training columns' order), or fit the model on a "
            "DataFrame so that records work"
        )
    for i, record in enumerate(records):
        missing = [name for name in names if name not in record]
        if missing:
            raise InvalidInputError(
                f"input_example: record {i} has no field {', '.join(map(repr, missing))} (the "
                f"model's columns: {', '.join(names)})"
            )
    import pandas as pd

    return pd.DataFrame.from_records(records, columns=names)
