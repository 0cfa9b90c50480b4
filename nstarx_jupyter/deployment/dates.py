"""Dates in `deploy()`'s `input_example`: records and object columns made `datetime64` columns.

A fitted model keeps no dtypes, so a datetime column is served as one (ISO-8601 strings on the
wire, `datetime64` for the model) only when the example or the reference data says so through
a `datetime64` column (`frame_columns`). An example given as records (a dict or a list of dicts)
holding `datetime`, `date`, `pandas.Timestamp` or `numpy.datetime64` values, or a DataFrame
with such values in an `object` column (a `date` column stays one in pandas), says so as well
once its date fields are parsed here, as naive UTC `datetime64` as the runtime parses requests.
The same frame goes to the registry, whose MLflow signature then says `datetime` too.
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

from nstarx_jupyter.errors import InvalidInputError, require

__all__ = ["dated_frame", "iso_record"]

_DATES = (datetime.date, np.datetime64)
"""`datetime.datetime` and `pandas.Timestamp` are subclasses of `date`."""


def dated_frame(example: Any) -> Any:
    """`example` as a DataFrame with `datetime64` date columns, when it holds dates; else as is.

    Raises:
        InvalidInputError: a date field whose values pandas cannot read as one timeline.
    """
    records = [example] if isinstance(example, dict) else example
    if isinstance(records, list) and records and all(isinstance(r, dict) for r in records):
        if not any(isinstance(v, _DATES) for record in records for v in record.values()):
            return example
        pandas = require("pandas", "mlflow")
        frame = pandas.DataFrame.from_records(records)
    elif hasattr(example, "columns") and hasattr(example, "dtypes"):
        frame = example
    else:
        return example
    dated = [str(name) for name, dtype in frame.dtypes.items()
             if dtype.kind == "O" and _all_dates(frame[name])]  # fmt: skip
    if not dated:
        return frame
    pandas = require("pandas", "mlflow")
    frame = frame.copy()
    for name in dated:
        try:
            frame[name] = pandas.to_datetime(frame[name], utc=True).dt.tz_convert(None)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"input_example: '{name}' holds dates pandas cannot read "
                                    f"together ({exc})") from None  # fmt: skip
    return frame


def _all_dates(column: Any) -> bool:
    values = column.dropna()
    return bool(len(values)) and all(isinstance(v, _DATES) for v in values)


def iso_record(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with its date values as ISO-8601 strings (what a client sends; JSON can hold)."""
    return {name: _iso(value) if isinstance(value, _DATES) else value
            for name, value in record.items()}  # fmt: skip


def _iso(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value))
    return str(value.isoformat())
