"""The monitoring notebook, run top to bottom in a real JupyterLab in Chromium: its drift chart
draws the server's scores and the shifted feature's histograms (screenshot `drift-chart.png`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import SCREENSHOTS
from tests.ui.test_quickstart import DONE, RUNNING, _errors, _run_all_cells, _unrun

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.ui.conftest import Lab

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.xdist_group("ui"),
              pytest.mark.timeout(900)]  # fmt: skip

NOTEBOOK = "05-monitoring.ipynb"
# The drift chart's traces as drawn in the page: name and how many points (bars) each has.
TRACES = """(gd) => gd.data.map((t) => [t.name, (t.y || []).filter((v) => v !== null).length])"""
HAS_REFERENCE = f"""() => [...document.querySelectorAll(".js-plotly-plot")]
    .some((gd) => ({TRACES})(gd).some(([name, points]) => name === "reference" && points > 0))"""
TITLE = "(gd) => gd.layout.annotations.map((a) => a.text)"


def test_the_monitoring_notebook_draws_the_drift_chart(lab: Lab, page: Page) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(lab.page_url(f"lab/tree/{NOTEBOOK}"))
        kernel_idle = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$"))
        expect(kernel_idle).to_be_visible(timeout=120_000)
        _run_all_cells(page)
        page.wait_for_function(RUNNING, timeout=30_000)
        page.wait_for_function(DONE, timeout=600_000, polling=500)
        saved = _saved(page, lab)
        assert _errors(saved) == []
        assert _unrun(saved) == []

        # The drift chart is the output of the cell that calls drift_chart().
        cell = page.locator(".jp-Notebook .jp-CodeCell", has_text="dep.drift_chart(")
        chart = cell.locator(".js-plotly-plot").first
        expect(chart).to_be_visible(timeout=30_000)
        chart.scroll_into_view_if_needed()
        # Plotly draws the traces after the element shows: wait for the reference histogram.
        page.wait_for_function(HAS_REFERENCE, timeout=30_000, polling=250)
        traces = dict(chart.evaluate(TRACES))
        assert traces["reference"] > 0, traces  # the reference histogram of petal_length
        assert traces["live"] > 0, traces
        scored = {name for name, points in traces.items() if "(psi)" in name and points}
        assert {f"{f} (psi)" for f in ("sepal_length", "sepal_width", "petal_length",
                                       "petal_width")} <= scored, traces  # fmt: skip
        assert "petal_length: reference vs live" in chart.evaluate(TITLE)
        chart.screenshot(path=SCREENSHOTS / "drift-chart.png")
    finally:
        page.screenshot(path=SCREENSHOTS / "monitoring-page.png", full_page=True)


def _saved(page: Page, lab: Lab) -> dict[str, Any]:
    """Save the notebook from the lab and read it back through the contents API."""
    page.keyboard.press("Control+s")
    expect(page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")).to_have_count(0)
    response = lab.api(f"api/contents/{NOTEBOOK}?content=1")
    response.raise_for_status()
    return dict(response.json()["content"])
