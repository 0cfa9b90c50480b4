"""The sidebar row's memory and cost, and its sparklines over the last hour or day, in JupyterLab.

The server extension's answers are stubbed (the lab API's shapes, as `LabService` sends them):
what is tested is that the panel shows the figures it is given and reads the trend it asks for.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import SCREENSHOTS

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

    from tests.ui.conftest import Lab

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.xdist_group("ui"),
              pytest.mark.timeout(900)]  # fmt: skip

NOW = 1_790_000_000 - 1_790_000_000 % 60


def _deployment() -> dict[str, Any]:
    return {
        "name": "fraud", "status": "Ready", "reason": None, "revision": 1,
        "stable_revision": None, "model": "models:/fraud/3", "stable_model": None,
        "canary_percent": None, "min_replicas": 1, "max_replicas": 1, "max_batch_size": None,
        "max_latency_ms": None, "auth": True, "url": "http://127.0.0.1:1/v1/models/fraud",
        "traffic": [{"variant": "primary", "version": "1", "percent": 100.0, "metrics": None}],
        "created": 1.0, "updated": 2.0, "drift": None,
        "metrics": {"requests": 40, "rps": 4.0, "error_rate": 0.0, "p50_ms": 1.5, "p99_ms": 9.0,
                    "cpu_s": 12.5, "rss_bytes": 412_000_000, "cost_per_1000": 0.0042,
                    "cost_per_day": 1.25, "currency": "USD"},
    }  # fmt: skip


def _trend(since: str) -> dict[str, Any]:
    minutes = 60 if since == "hour" else 1440
    points = [{"t": NOW - 60 * (minutes - i), "requests": 60 + i % 30, "rps": 1 + (i % 30) / 60,
               "p50_ms": 1.0 + (i % 7) / 7, "p99_ms": 8.0 + i % 11, "cost": 0.0001}
              for i in range(0, minutes, 5)]  # fmt: skip
    return {"name": "fraud", "since_s": 60.0 * minutes, "points": points}


def test_the_row_shows_memory_and_cost_and_the_sparklines_switch_to_the_last_hour_or_day(
    lab: Lab, page: Page
) -> None:
    calls: list[str] = []
    answers: dict[str, Any] = {
        "server": {"running": True, "url": "http://127.0.0.1:1", "grpc": None, "pid": 1,
                   "home": str(lab.nstarx_home), "version": "0"},
        "models": [], "deployments": [_deployment()], "keys": [],
    }  # fmt: skip

    def fulfil(route: Route) -> None:
        path, _, query = route.request.url.split("/nstarx/", 1)[1].partition("?")
        since = parse_qs(query).get("since", [""])[0]  # Jupyter adds a cache-busting number
        calls.append(f"{path}?since={since}" if since else path)
        if path == "deployments/fraud/trend":
            route.fulfill(json=_trend(since))
        elif path in answers:
            route.fulfill(json=answers[path])
        else:
            route.fulfill(status=404, json={"error": f"not stubbed: {path}"})

    sidebar = lab.open_sidebar(page, fulfil)
    card = sidebar.get_by_role("article", name="fraud")
    expect(card.get_by_test_id("figure-mem")).to_have_text("412 MB", timeout=30_000)
    expect(card.get_by_test_id("figure-cost/1k")).to_have_text("0.0042 USD")
    expect(card.get_by_test_id("figure-cost/day")).to_have_text("1.25 USD")
    ranges = card.get_by_role("group", name="Sparklines of fraud")
    expect(ranges.get_by_role("button", name="live")).to_have_attribute("aria-pressed", "true")
    assert not [call for call in calls if "/trend" in call]  # live: the polls, no trend read

    for since in ("hour", "day"):  # each switch reads that trend at once
        with page.expect_request(re.compile(rf"/trend\?since={since}")):
            ranges.get_by_role("button", name=since).click()
        expect(card.get_by_role("img", name=f"p99 of fraud over the last {since}")).to_be_visible()
        expect(card.locator(".nstarx-sidebar__sparkline polyline").first).to_be_attached()
    assert [call for call in calls if "/trend" in call] == [
        "deployments/fraud/trend?since=hour",
        "deployments/fraud/trend?since=day",
    ]
    page.mouse.move(900, 500)
    card.screenshot(path=SCREENSHOTS / "sidebar-usage.png")
