"""Drift through a real local server: `deploy(..., reference_data=X)`, shifted traffic, the answer.

The notebook's `Deployment.drift()` and `drift_chart()` show the control API's report (one
source); `/metrics` has its gauges; the reference survives a restart; bad calls are 4xx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
import pytest

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.errors import InvalidInputError, NotFoundError
from nstarx_jupyter.notebook.drift import DRIFT_COLUMNS
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nstarx_jupyter.monitoring.live import DriftChart

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """A backend on this test's $NSTARX_HOME; its server is stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def _traffic(x: np.ndarray, rng: np.random.Generator, rows: int, shift: float) -> pd.DataFrame:
    """Iris rows drawn again with a little noise; petal length moved by `shift` SDs."""
    drawn = x[rng.integers(0, len(x), rows)] + rng.normal(0, 0.05, (rows, x.shape[1]))
    drawn[:, 2] += shift * x[:, 2].std()
    return pd.DataFrame(drawn, columns=IRIS_FEATURES)


def test_a_shifted_feature_is_flagged_through_the_server_and_the_notebook_shows_its_answer(
    backend: LocalBackend, named_iris: Path, iris_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = iris_data
    made = deploy(named_iris, "iris", backend=backend,
                  reference_data=pd.DataFrame(x, columns=IRIS_FEATURES))  # fmt: skip
    assert made.drift_report()["status"] == "no traffic"
    described = backend.drift_reference("iris")
    assert (described.source, described.rows) == ("data", 150)
    assert described.features == IRIS_FEATURES

    rng = np.random.default_rng(0)
    for _ in range(8):  # 8 batches of 30 rows: 32 rows a request at most, 120 a minute kept
        made.predict(_traffic(x, rng, 30, shift=1.0).to_dict("records"))
    frame = made.drift("15m")
    server = backend.drift("iris", "15m")
    assert list(frame.columns) == list(DRIFT_COLUMNS)
    assert frame.attrs["drifted"] == server.drifted == ["petal_length"]
    assert frame.attrs["status"] == "drift"
    assert frame.attrs["rows"] == server.rows >= 120
    flagged = frame[frame["drifted"]]
    assert set(flagged["feature"]) == {"petal_length"}
    ks = frame[(frame["feature"] == "petal_length") & (frame["test"] == "ks")].iloc[0]
    same = next(t for t in server.features if (t.feature, t.test) == ("petal_length", "ks"))
    assert (ks["statistic"], ks["p_value"]) == (same.statistic, same.p_value)

    chart = made.drift_chart(interval_s=60)
    try:
        chart_obj = cast("DriftChart", made._charts[-1])
        for _ in range(100):  # the first poll runs on the chart's thread
            if chart_obj.last is not None:
                break
            chart_obj._stop.wait(0.05)
        assert chart_obj.last is not None, chart_obj.errors
        names = [trace.name for trace in chart.data]
        assert names[:2] == ["reference", "live"]
        assert "petal_length (psi)" in names
        assert chart.data[1].y == tuple(chart_obj.last["histograms"]["petal_length"]["live"])
    finally:
        made.close()

    state = backend.running()
    assert state is not None
    http, auth = backend._http, {"authorization": f"Bearer {state.token}"}
    hour = backend.drift("iris", "1h")  # the gauges show the last report of the default window
    scraped = http.get(f"{state.url}/metrics", headers=auth).text
    assert 'nstarx_drift_features{deployment="iris"} 1.0' in scraped
    psi = next(t.score for t in hour.features if (t.feature, t.test) == ("petal_length", "psi"))
    series = 'nstarx_drift_score{deployment="iris",feature="petal_length",test="psi"}'
    assert f"{series} {psi!r}" in scraped
    base = f"{state.url}/nstarx/v1/deployments"
    assert http.get(f"{base}/iris/drift?window=soon", headers=auth).status_code == 400
    assert http.get(f"{base}/iris/drift?window=7h", headers=auth).status_code == 400
    assert http.get(f"{base}/nope/drift", headers=auth).status_code == 404
    assert http.get(f"{base}/iris/drift").status_code == 401
    bad = http.put(f"{base}/iris/drift/reference", json={"columns": [1]}, headers=auth)
    assert bad.status_code == 400
    with pytest.raises(NotFoundError):
        backend.drift("nope")
    with pytest.raises(InvalidInputError):
        made.set_reference(window=("1m", "2m"))

    backend.stop()  # a new server reads the reference back; the live window starts empty
    assert made.drift_report()["reference_source"] == "data"
    written = made.history("1h")["drift"].dropna()  # the minute's rollup kept the score
    assert written.iloc[-1] == pytest.approx(hour.score)  # the last minute: stop() wrote it
    assert made.drift_report()["status"] == "no traffic"
    made.set_reference(None)
    assert made.drift().attrs["status"] == "no reference"
