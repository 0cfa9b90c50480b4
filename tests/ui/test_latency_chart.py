"""The live latency chart in a real JupyterLab (issue 22, item 2): it fills its output's width.

plotly's widget is drawn before JupyterLab attaches it, so plotly.js used its 700 px default
(the left half of a wide notebook); `monitoring.figure` autosizes it once it has its width.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import SCREENSHOTS

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.ui.conftest import Lab

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.xdist_group("ui"),
              pytest.mark.timeout(600)]  # fmt: skip

NOTEBOOK = "latency-chart.ipynb"
# The server's figures as `Deployment.metrics` returns them, made up (no server needed to
# draw them): a few seconds of traffic with some errors.
CHART = """\
import itertools, math
from nstarx_jupyter.monitoring.live import LatencyChart

ticks = itertools.count()

def metrics(window_s):
    i = next(ticks)
    return {"p50_ms": 2 + math.sin(i / 3), "p95_ms": 5 + math.sin(i / 4), "p99_ms": 9 + i % 4,
            "rps": 45 + 5 * math.sin(i / 5), "error_rate": 0.01 * (i % 4)}

chart = LatencyChart(metrics, title="iris", window_s=10, interval_s=0.25).start()
chart.figure"""


def test_the_latency_chart_fills_its_output_and_labels_its_axes(lab: Lab, page: Page) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    cells: list[dict[str, object]] = [{"cell_type": "code", "execution_count": None,
              "metadata": {}, "outputs": [],
              "source": CHART}]  # fmt: skip
    notebook = {"cells": cells, "metadata": {"kernelspec": {"name": "python3",
                "display_name": "Python 3", "language": "python"}}, "nbformat": 4,
                "nbformat_minor": 5}  # fmt: skip
    (lab.root_dir / NOTEBOOK).write_text(json.dumps(notebook))
    page.goto(lab.page_url(f"lab/tree/{NOTEBOOK}"))
    kernel_idle = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$"))
    expect(kernel_idle).to_be_visible(timeout=120_000)
    page.get_by_role("menubar").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menu").get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()

    plot = page.locator(".jp-OutputArea-output .js-plotly-plot")
    expect(plot).to_be_visible(timeout=120_000)
    expect(plot.locator(".g-y3title")).to_have_text("errors %", timeout=30_000)
    page.wait_for_timeout(4_000)  # a few seconds of points
    output_area = page.locator(".jp-OutputArea-output", has=page.locator(".js-plotly-plot"))
    output = output_area.bounding_box()
    drawn = plot.locator(".main-svg").first.bounding_box()
    assert output is not None
    assert drawn is not None
    assert drawn["width"] >= 0.95 * output["width"], (drawn, output)
    assert plot.locator(".g-y2title").text_content() == "requests/s"
    assert plot.locator(".g-ytitle").text_content() == "latency ms"
    error_ticks = plot.locator(".y3tick text").all_text_contents()
    assert error_ticks, "the error axis has no ticks"
    assert all(tick.endswith("%") for tick in error_ticks), error_ticks
    output_area.screenshot(path=SCREENSHOTS / "latency-chart.png")
