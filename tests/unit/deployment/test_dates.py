"""Dates in `deploy()`'s example: records and object columns become `datetime64` columns, which
`frame_columns` then names as the model's datetime inputs; the card shows them as ISO strings."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

from nstarx_jupyter.deployment.dates import dated_frame, iso_record
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.runtimes.sklearn_inputs import frame_columns, infer_inputs
from tests.unit.serving.test_datetime_inputs import _frame, _model

WHEN = [
    datetime.datetime(2026, 1, 5, 9, 30),
    datetime.date(2026, 1, 5),
    pd.Timestamp("2026-01-05T09:30:00Z"),
    np.datetime64("2026-01-05T09:30"),
    datetime.datetime(2026, 1, 5, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
]


@pytest.mark.parametrize("when", WHEN, ids=lambda v: type(v).__name__)
def test_records_holding_a_date_give_a_datetime_column(when: object) -> None:
    records = [{"seen_at": when, "amount": 1.5, "merchant": "shop", "count": 2, "flag": True}]
    frame = dated_frame(records)
    assert frame_columns(frame) == [
        {"name": "seen_at", "type": "datetime"},
        {"name": "amount", "type": "double"},
        {"name": "merchant", "type": "string"},
        {"name": "count", "type": "long"},
        {"name": "flag", "type": "boolean"},
    ]
    assert frame_columns(dated_frame(records[0])) == frame_columns(frame)  # one record


def test_the_served_inputs_follow_from_records() -> None:
    model = _model(_frame())
    records = [{"seen_at": datetime.date(2026, 1, 5), "amount": 0.5}]
    inputs = infer_inputs(model, {"input_columns": frame_columns(dated_frame(records))})
    assert [(c.name, c.datatype, c.datetime) for c in inputs.columns] == [
        ("seen_at", "BYTES", True),
        ("amount", "FP64", False),
    ]
    frame = dated_frame(records)  # what the registry infers its signature from: the model runs
    assert model.predict(frame).shape == (1,)


def test_an_object_column_of_dates_is_parsed_as_naive_utc() -> None:
    frame = pd.DataFrame({"day": [datetime.date(2026, 1, 5), None], "amount": [1.0, 2.0]})
    assert frame_columns(frame) is None  # pandas keeps `date` values as objects
    dated = dated_frame(frame)
    assert str(dated["day"].dtype).startswith("datetime64")
    assert dated["day"].iloc[0] == pd.Timestamp("2026-01-05")
    assert frame["day"].dtype == object  # the caller's frame is left as it was
    aware = dated_frame([{"t": datetime.datetime(2026, 1, 5, 11, tzinfo=datetime.timezone(
        datetime.timedelta(hours=2))), "u": datetime.date(2026, 1, 5)}])  # fmt: skip
    assert aware["u"].iloc[0] == pd.Timestamp("2026-01-05")


def test_examples_without_dates_are_left_as_they_are() -> None:
    records = [{"merchant": "shop", "amount": 1.0}]
    assert dated_frame(records) is records
    array = np.zeros((2, 3))
    assert dated_frame(array) is array
    assert dated_frame(None) is None
    frame = pd.DataFrame({"amount": [1.0]})
    assert dated_frame(frame) is frame


def test_dates_pandas_cannot_read_together_are_refused_naming_the_field() -> None:
    mixed = [{"t": datetime.date(2026, 1, 5)}, {"t": "not a date"}]
    assert dated_frame(mixed)["t"].dtype == object  # not all dates: a string column
    apart = [{"t": np.datetime64("2026-01-01", "ns")}, {"t": np.datetime64("-200000", "Y")}]
    with pytest.raises(InvalidInputError, match="'t'"):
        dated_frame(apart)


def test_the_cards_record_shows_dates_as_iso_strings() -> None:
    record = {"a": datetime.date(2026, 1, 5), "b": pd.Timestamp("2026-01-05 10:00"),
              "c": np.datetime64("2026-01-05T09:30"), "d": 1}  # fmt: skip
    assert iso_record(record) == {"a": "2026-01-05", "b": "2026-01-05T10:00:00",
                                  "c": "2026-01-05T09:30", "d": 1}  # fmt: skip
