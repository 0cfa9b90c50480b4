"""`deploy()` of a pipeline fitted on a datetime64 column: the reference data's dtypes, or the
dates in an example's records, give the served signature, before and after the model moves to
its registry version."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from tests.unit.serving.test_datetime_inputs import ISO, _frame, _model

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]


@pytest.fixture
def backend(nstarx_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalBackend]:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def test_a_datetime_pipeline_deploys_and_answers_iso_strings(backend: LocalBackend) -> None:
    frame = _frame()
    model = _model(frame)
    made = deploy(model, "late", reference_data=frame, backend=backend)
    assert made.spec.options["input_columns"][0] == {"name": "seen_at", "type": "datetime"}
    record = {"seen_at": ISO[1], "amount": -1.0}
    expected = int(model.predict(_one(record))[0])
    assert made.predict(record)["prediction"] == expected
    assert made.registration is not None
    assert made.registration.result(timeout=180).uri == "models:/late/1"
    assert made.spec.storage_uri == "models:/late/1"
    assert made.predict(record)["prediction"] == expected  # the MLflow signature says datetime


def _one(record: dict[str, object]) -> pd.DataFrame:
    times = pd.to_datetime([record["seen_at"]], utc=True, format="ISO8601").tz_convert(None)
    return pd.DataFrame({"seen_at": times, "amount": [record["amount"]]})


def test_records_holding_datetimes_as_the_example_give_the_datetime_column(
    backend: LocalBackend,
) -> None:
    frame = _frame()
    model = _model(frame)
    records = [{"seen_at": datetime.datetime(2026, 1, 5, 9, 30), "amount": 0.5},
               {"seen_at": datetime.date(2026, 1, 10), "amount": -1.0}]  # fmt: skip
    made = deploy(model, "late-records", input_example=records, backend=backend)
    assert made.spec.options["input_columns"] == [{"name": "seen_at", "type": "datetime"},
                                                  {"name": "amount", "type": "double"}]  # fmt: skip
    assert made.example() == {"seen_at": "2026-01-05T09:30:00", "amount": 0.5}  # the card's
    record = {"seen_at": ISO[1], "amount": -1.0}
    expected = int(model.predict(_one(record))[0])
    assert made.predict(record)["prediction"] == expected
    assert made.registration is not None
    assert made.registration.result(timeout=180).uri == "models:/late-records/1"
    assert made.predict(record)["prediction"] == expected  # the MLflow signature says datetime
