"""The sidebar's drift badge per deployment, in JupyterLab.

The server extension's answers are stubbed (the lab API's shapes, as `LabService` sends them;
`tests/integration/labapi/test_drift_sidebar.py` checks they are the control API's): what is
tested is that each card shows the badge for the drift it is given.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import SCREENSHOTS
from tests.ui.test_sidebar_usage import _deployment

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

    from tests.ui.conftest import Lab

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.xdist_group("ui"),
              pytest.mark.timeout(900)]  # fmt: skip


def _with_drift(name: str, drift: dict[str, Any] | None) -> dict[str, Any]:
    return {**_deployment(), "name": name, "drift": drift}


def test_each_card_shows_its_drift_badge(lab: Lab, page: Page) -> None:
    deployments = [
        _with_drift("fraud", {"status": "drift", "drifted": ["amount", "prediction"],
                              "score": 4.2, "rows": 300}),
        _with_drift("churn", {"status": "ok", "drifted": [], "score": 0.3, "rows": 280}),
        _with_drift("iris", {"status": "no reference", "drifted": [], "score": None, "rows": 0}),
        _with_drift("remote", None),
    ]  # fmt: skip
    answers: dict[str, Any] = {
        "server": {"running": True, "url": "http://127.0.0.1:1", "grpc": None, "pid": 1,
                   "home": str(lab.nstarx_home), "version": "0"},
        "models": [], "deployments": deployments, "keys": [],
    }  # fmt: skip

    def fulfil(route: Route) -> None:
        path = route.request.url.split("/nstarx/", 1)[1].partition("?")[0]
        if path in answers:
            route.fulfill(json=answers[path])
        else:
            route.fulfill(status=404, json={"error": f"not stubbed: {path}"})

    sidebar = lab.open_sidebar(page, fulfil)
    fraud = sidebar.get_by_role("article", name="fraud")
    badge = fraud.get_by_role("status", name="Drift: drift on 2 features")
    expect(badge).to_be_visible(timeout=30_000)
    expect(badge).to_have_attribute("title", re.compile(r"amount, prediction \(300 rows\)"))
    expect(sidebar.get_by_role("article", name="churn").get_by_role(
        "status", name="Drift: no drift")).to_be_visible()  # fmt: skip
    expect(sidebar.get_by_role("article", name="iris").get_by_role(
        "status", name="Drift: no reference")).to_be_visible()  # fmt: skip
    remote = sidebar.get_by_role("article", name="remote")
    expect(remote.get_by_role("status", name="Status: Ready")).to_be_visible()
    expect(remote.get_by_role("status", name=re.compile("^Drift"))).to_have_count(0)
    page.mouse.move(900, 500)
    fraud.screenshot(path=SCREENSHOTS / "sidebar-drift.png")
