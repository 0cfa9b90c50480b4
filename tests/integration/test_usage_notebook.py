"""One source: `Deployment.resources()`, `.cost()`, `.history()` show the control API's figures."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import pytest

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.notebook.usage import HISTORY_COLUMNS
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]
ROW = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
CALLS = 20


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """A backend on this test's $NSTARX_HOME; its server is stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def test_the_notebook_shows_the_control_apis_figures_and_history_survives_a_restart(
    backend: LocalBackend, named_iris: Path
) -> None:
    made = deploy(named_iris, "iris", backend=backend)
    for _ in range(CALLS):
        made.predict(ROW)
    # memory priced at 0: every figure compared below stays still while no request comes
    made.prices(gb_hour=0.0, cpu_hour=1.0)
    server = backend.deployment_metrics("iris", 60).resources.versions
    mine = made.resources()["versions"]
    assert [(v["cpu_s"], v["calls"]) for v in mine] == [(v.cpu_s, v.calls) for v in server]
    assert sum(v["calls"] for v in mine) >= 1  # the model ran (batches count once)

    frame = made.cost("10m")
    doc = backend.cost("iris", 600)
    assert list(frame.index) == ["primary", "total"]
    assert frame.loc["total", "requests"] == doc.total.requests == CALLS
    assert frame.loc["total", "cpu_s"] == doc.total.cpu_s > 0
    assert frame.loc["total", "total"] == doc.total.total
    assert frame.loc["total", "per_1000"] == doc.total.per_1000
    assert frame.loc["primary", "requests"] == doc.variants[0].requests
    assert frame.attrs["prices"]["cpu_hour"] == 1.0
    card = made.card()  # the card's line: the same two answers, picked, not recomputed
    assert card.usage["cpu_s"] == backend.metrics("iris", 60).resources.cpu_s
    assert card.usage["cost_per_1000"] == backend.cost("iris", 3600).total.per_1000

    backend.stop()  # SIGTERM: the server writes the minute it is in before it exits
    history = made.history("1h")  # starts the server again, which reads it back
    raw = backend.history("iris", 3600).rows
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert isinstance(history.index, pd.DatetimeIndex)
    assert history["requests"].sum() == sum(row.requests for row in raw) == CALLS
    assert list(history["cost"]) == [row.cost for row in raw]
    figure = made.trends_chart("1h")
    assert [trace.name for trace in figure.data] == ["requests", "p50", "p95", "p99", "cost"]
