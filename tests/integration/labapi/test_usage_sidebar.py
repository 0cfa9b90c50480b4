"""The sidebar row's memory and cost are the control API's; its trend is the server's history."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.integration.labapi.conftest import Api

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("labapi")]
ROW = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
CALLS = 12


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """The backend the extension uses too ($NSTARX_HOME/server); stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def test_the_sidebar_row_shows_the_control_apis_memory_and_cost_and_the_trend_its_history(
    api: Api, backend: LocalBackend, named_iris: Path
) -> None:
    made = deploy(named_iris, "iris", backend=backend)
    for _ in range(CALLS):
        made.predict(ROW)
    backend.set_prices({"cpu_hour": 1.0, "gb_hour": 0.0})  # figures that stay still when idle
    [row] = api("GET", "deployments")
    figures = row["metrics"]
    resources = backend.metrics("iris", 60).resources
    cost = backend.cost("iris", 3600).total
    assert figures["cpu_s"] == resources.cpu_s > 0
    assert figures["rss_bytes"] > 10_000_000
    assert figures["cost_per_1000"] == cost.per_1000
    assert figures["currency"] == "USD"

    backend.stop()  # the minute so far is written at shutdown; the next server reads it
    backend.ensure_server()
    trend = api("GET", "deployments/iris/trend", params={"since": "hour"})
    history = backend.history("iris", 3600).rows
    assert [point["t"] for point in trend["points"]] == [r.t for r in history]
    assert sum(point["requests"] for point in trend["points"]) == CALLS
    assert [point["cost"] for point in trend["points"]] == [r.cost for r in history]
    refused = api("GET", "deployments/iris/trend", params={"since": "week"}, status=400)
    assert "'hour' or 'day'" in refused["error"]
