"""A pipeline fitted on a datetime64 column answers ISO-8601 strings on V1, V2 REST and /predict.

A fitted model keeps no dtypes, so the column's type comes from a signature (`input_columns`,
which `deploy()` fills from a DataFrame example or reference data, and MLflow from the
registered example); the runtime turns the strings into `datetime64` before the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from nstarx_jupyter.runtimes.sklearn_inputs import frame_columns, infer_inputs
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.settings import ModelSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

ISO = ["2026-01-05T09:30:00Z", "2026-01-10T22:15:00+00:00", "2026-01-07T14:00:00"]


def hour_and_weekday(frame: Any) -> Any:
    """The hour and the day of the week of a datetime64 column (a user's own step)."""
    times = frame["seen_at"]
    return np.c_[times.dt.hour, times.dt.day_of_week]


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2026-01-01")
    seconds = pd.to_timedelta(rng.integers(0, 14 * 86400, 300), unit="s")
    return pd.DataFrame({"seen_at": start + seconds, "amount": rng.normal(size=300)})


def _model(frame: pd.DataFrame) -> Any:
    late = (frame.seen_at.dt.hour >= 18).astype(int)
    return make_pipeline(
        ColumnTransformer(
            [("t", FunctionTransformer(hour_and_weekday), ["seen_at"])], remainder="passthrough"
        ),
        LogisticRegression(max_iter=1000),
    ).fit(frame, late)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    frame = _frame()
    joblib.dump(_model(frame), tmp_path / "late.joblib")
    options = {"input_columns": frame_columns(frame)}
    app = create_app(
        [ModelSettings(name="late", path=tmp_path / "late.joblib", options=options)],
        ServingConfig(auth=False),
    )
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def _expected() -> list[int]:
    rows = pd.DataFrame(
        {
            "seen_at": pd.to_datetime(ISO, utc=True, format="ISO8601").tz_convert(None),
            "amount": [0.5, -1.0, 2.0],
        }
    )
    return [int(v) for v in _model(_frame()).predict(rows)]


def test_frame_columns_name_the_datetime_column_only_when_there_is_one() -> None:
    frame = _frame()
    assert frame_columns(frame) == [
        {"name": "seen_at", "type": "datetime"},
        {"name": "amount", "type": "double"},
    ]
    assert frame_columns(frame[["amount"]]) is None
    inputs = infer_inputs(_model(frame), {"input_columns": frame_columns(frame)})
    assert inputs.kind == "columns"
    assert [(c.name, c.datatype, c.datetime) for c in inputs.columns] == [
        ("seen_at", "BYTES", True),
        ("amount", "FP64", False),
    ]


async def test_iso_strings_are_answered_on_v1_v2_and_the_product_endpoint(
    client: httpx.AsyncClient,
) -> None:
    expected = _expected()
    metadata = (await client.get("/v2/models/late")).json()
    assert metadata["inputs"] == [
        {"name": "seen_at", "datatype": "BYTES", "shape": [-1]},
        {"name": "amount", "datatype": "FP64", "shape": [-1]},
    ]
    records = [{"seen_at": t, "amount": a} for t, a in zip(ISO, [0.5, -1.0, 2.0], strict=True)]
    product = await client.post("/v1/models/late/predict", json=records)
    assert product.status_code == 200, product.text
    assert [row["prediction"] for row in product.json()] == expected
    v1 = await client.post("/v1/models/late:predict", json={"instances": records})
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == expected
    v2 = await client.post(
        "/v2/models/late/infer",
        json={
            "inputs": [
                {"name": "seen_at", "datatype": "BYTES", "shape": [3], "data": ISO},
                {"name": "amount", "datatype": "FP64", "shape": [3], "data": [0.5, -1.0, 2.0]},
            ]
        },
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == expected


async def test_a_string_that_is_no_date_is_a_400_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    bad = await client.post(
        "/v1/models/late/predict", json={"seen_at": "next tuesday", "amount": 1.0}
    )
    assert bad.status_code == 400
    assert "seen_at" in bad.json()["error"]
    assert "ISO-8601" in bad.json()["error"]
