"""The live latency chart's figure (issue 22, item 2): full width, each axis named for what it
carries, errors in %, and the time axis keeping the window its title names."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("anywidget")
pytest.importorskip("plotly")

from nstarx_jupyter.monitoring.live import LatencyChart

T0 = datetime(2026, 12, 5, 12, 0, 0)


def _chart(window_s: float = 10.0) -> tuple[LatencyChart, list[int]]:
    calls: list[int] = []

    def metrics(window: float) -> dict[str, Any]:  # Deployment.metrics's figures, made up
        assert window == window_s
        calls.append(len(calls))
        return {"p50_ms": 2.0, "p95_ms": 5.0, "p99_ms": 9.0, "rps": 40.0 + len(calls),
                "error_rate": 0.0265}  # fmt: skip

    return LatencyChart(metrics, title="iris", window_s=window_s), calls


def test_each_axis_is_named_for_what_it_carries() -> None:
    chart, _ = _chart()
    layout = chart.figure.layout
    assert layout.yaxis.title.text == "latency ms"
    assert layout.yaxis2.title.text == "requests/s"
    errors = layout.yaxis3
    assert (errors.title.text, errors.side, errors.overlaying) == ("errors %", "right", "y2")
    assert errors.ticksuffix == "%"
    names = {trace.name: trace.yaxis for trace in chart.figure.data}
    assert names["req/s"] == "y2"
    assert names["errors %"] == "y3"


def test_the_plot_uses_the_figures_width() -> None:
    layout = _chart()[0].figure.layout
    assert tuple(layout.xaxis.domain) == (0.0, 1.0)
    assert tuple(layout.xaxis2.domain) == (0.0, 1.0)
    # the legend sits above the plot, not in a column on its right
    assert (layout.legend.orientation, layout.legend.yanchor) == ("h", "bottom")
    assert layout.legend.y >= 1
    assert layout.width is None  # sized by its output (see monitoring.figure)
    assert _chart()[0].figure._config.get("responsive") is True


def test_errors_are_drawn_in_percent() -> None:
    chart, _ = _chart()
    chart.update(T0)
    assert chart.figure.data[4].y == (pytest.approx(2.65),)
    assert chart.figure.data[3].y == (41.0,)


def test_the_time_axis_keeps_the_window_the_title_names() -> None:
    chart, calls = _chart(window_s=10)
    assert "last 10 s" in chart.figure.layout.title.text
    for second in range(25):
        chart.update(T0 + timedelta(seconds=second))
    now = T0 + timedelta(seconds=24)
    start = now - timedelta(seconds=10)
    assert len(calls) == 25
    for trace in chart.figure.data:
        assert len(trace.x) == 11  # seconds 14..24; the older points are dropped
        assert min(trace.x) >= start
        assert max(trace.x) == now
    shown = [datetime.fromisoformat(str(v)) for v in chart.figure.layout.xaxis2.range]
    assert shown == [start, now]
    assert chart.figure.data[3].y[0] == 40.0 + 15  # the 15th call's rate is the oldest kept
