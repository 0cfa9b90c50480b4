"""The notebook's side of drift: the reference it sends, and the chart drawn from the server's
report (a real report of `serving.drift`, no server process: the integration test has one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from nstarx_jupyter.monitoring.live import DriftChart
from nstarx_jupyter.notebook.drift import reference_body
from nstarx_jupyter.protocol.control import DriftView
from nstarx_jupyter.serving.drift import DriftHub, Reference
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression


def test_the_reference_is_a_seeded_sample_with_the_models_predictions_on_it(
    iris_model: LogisticRegression, iris_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = iris_data
    big = np.tile(x, (10, 1))  # 1,500 rows: 1,000 are kept
    body = reference_body(big, model=iris_model, names=IRIS_FEATURES)
    assert body == reference_body(big, model=iris_model, names=IRIS_FEATURES)  # seeded
    assert list(body["columns"]) == IRIS_FEATURES
    assert body["rows"] == len(body["predictions"]) == 1000
    rows = np.column_stack([body["columns"][name] for name in IRIS_FEATURES])
    assert body["predictions"] == iris_model.predict(rows).tolist()  # on the sampled rows
    frame = reference_body(pd.DataFrame(x, columns=IRIS_FEATURES), predictions=np.zeros(len(x)))
    assert frame["predictions"] == [0.0] * len(x)
    assert Reference.parse(frame).predictions_source == "reference"
    unfit = reference_body(x, model=object())  # no predict: the first live window stands in
    assert "predictions" not in unfit


def test_the_drift_chart_draws_the_servers_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hub = DriftHub(tmp_path)
    hub.monitor("m").set_reference(Reference.parse(
        {"columns": {"x": rng.normal(size=500).tolist(), "kind": ["a", "b"] * 250}}))  # fmt: skip
    for _ in range(300):
        hub.tap("m", {"x": np.asarray([rng.normal(1.0)]), "kind": np.asarray([b"a"], dtype=object)},
                {})  # fmt: skip
    chart = DriftChart(lambda: hub.report("m", 900), title="m", interval_s=60)
    chart.update()
    chart.update()
    report = chart.last
    assert report is not None
    names = [trace.name for trace in chart.figure.data]
    assert names == ["reference", "live", "x (psi)", "kind (js)"]
    assert len(chart.figure.data[2].y) == 2  # one point per poll
    most = max(("x", "kind"), key=lambda f: next(
        t["score"] / t["threshold"] for t in report["features"]
        if t["feature"] == f and t["test"] in ("psi", "js")))  # fmt: skip
    assert chart.figure.data[1].y == pytest.approx(report["histograms"][most]["live"])
    assert chart.figure.layout.annotations[1].text == f"{most}: reference vs live"


def test_the_card_and_the_sidebar_pick_the_same_badge_from_the_servers_report(
    tmp_path: Path,
) -> None:
    pytest.importorskip("anywidget")
    from nstarx_jupyter.errors import UnavailableError
    from nstarx_jupyter.labapi.views import drift_badge
    from nstarx_jupyter.notebook.card import DeploymentCard
    from nstarx_jupyter.notebook.drift import drift_figures
    from tests.unit.notebook.test_card import FakeDeployment

    rng = np.random.default_rng(1)
    hub = DriftHub(tmp_path)
    hub.monitor("m").set_reference(
        Reference.parse({"columns": {"x": rng.normal(size=500).tolist()}})
    )
    for _ in range(300):
        hub.tap("m", {"x": np.asarray([rng.normal(1.0)])}, {})
    report = DriftView.model_validate(hub.report("m"))

    class Drifting(FakeDeployment):
        failing = False

        def drift_figures(self) -> dict[str, object]:
            if self.failing:
                raise UnavailableError("the local server did not answer")
            return drift_figures(report)

    source = Drifting()
    card = DeploymentCard(source)
    assert card.drift == {"status": "drift", "drifted": ["x"], "score": report.score,
                          "rows": 120}  # fmt: skip  # one minute: 120 of its 300 rows kept
    badge = drift_badge(report)
    assert badge is not None
    assert badge.model_dump() == card.drift  # one source, picked the same way
    source.failing = True
    card.refresh()
    assert card.drift == {}
    assert DeploymentCard(FakeDeployment()).drift == {}


def test_the_drift_charts_time_axis_spans_a_minute_from_its_first_point() -> None:
    report = {"features": [{"feature": "a", "test": "psi", "score": 1.0, "threshold": 0.2}],
              "histograms": {}}  # fmt: skip
    chart = DriftChart(lambda: report, title="m", interval_s=60)
    chart.update()
    start, end = chart.figure.layout.xaxis.range
    assert (end - start).total_seconds() == pytest.approx(60)  # one point: a minute, not 2 ms
    assert chart.figure.layout.xaxis.tickformat == "%H:%M:%S"
