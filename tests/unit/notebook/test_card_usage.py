"""The card's usage line: the server's figures as `Deployment.usage_figures` returns them."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("anywidget")

from nstarx_jupyter.errors import UnavailableError
from nstarx_jupyter.notebook.card import DeploymentCard
from nstarx_jupyter.notebook.usage import usage_figures
from nstarx_jupyter.protocol.control import DeploymentCost, DeploymentFigures
from tests.unit.notebook.test_card import FakeDeployment

METRICS = DeploymentFigures.model_validate(
    {"window_s": 60.0, "requests": 3, "rps": 0.05, "errors": 0, "error_rate": 0.0, "p50_ms": 1.0,
     "p95_ms": 2.0, "p99_ms": 2.0, "name": "iris",
     "resources": {"cpu_s": 0.25, "rss_bytes": 180_000_000}})  # fmt: skip
PRICES = {"cpu_hour": 0.04, "gb_hour": 0.004, "gpu_hour": 0.5, "currency": "USD", "source": "x"}
TOTAL = {"window_s": 3600.0, "requests": 3, "cpu_s": 0.25, "memory_gb_s": 1.0, "gpu_s": 0.0,
         "cpu_cost": 0.0, "memory_cost": 0.0, "gpu_cost": 0.0, "total": 0.00001,
         "per_1000": 0.0031, "per_day": 0.42, "currency": "USD"}  # fmt: skip
COST = DeploymentCost.model_validate({"name": "iris", "window_s": 3600.0, "covered_s": 3600.0,
                                      "prices": PRICES, "total": TOTAL, "variants": [],
                                      "source": "live"})  # fmt: skip


class MeteredDeployment(FakeDeployment):
    """A card source with usage figures, or failing to get them."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def usage_figures(self) -> dict[str, Any]:
        if self.failing:
            raise UnavailableError("the local server did not answer")
        return usage_figures(METRICS, COST)


def test_the_card_shows_the_figures_the_server_gave() -> None:
    source = MeteredDeployment()
    card = DeploymentCard(source)
    assert card.usage == {"cpu_s": 0.25, "rss_bytes": 180_000_000, "cost_per_1000": 0.0031,
                          "cost_per_day": 0.42, "currency": "USD"}  # fmt: skip
    source.failing = True
    card.refresh()
    assert card.usage == {}  # figures are a nicety: the status still shows
    assert card.status == "Loading"


def test_a_source_without_usage_figures_shows_none() -> None:
    assert DeploymentCard(FakeDeployment()).usage == {}


def test_usage_figures_pick_and_never_compute() -> None:
    assert usage_figures(None, None) == dict.fromkeys(
        ("cpu_s", "rss_bytes", "cost_per_1000", "cost_per_day", "currency")
    )
