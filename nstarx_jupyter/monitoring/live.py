"""Live figures under a cell: latency, variant and drift charts fed by the server, a load test."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.monitoring.figure import figure_widget

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DriftChart",
    "ImportanceChart",
    "LatencyChart",
    "LoadTest",
    "LoadTestReport",
    "VariantChart",
]


class _Polling:
    """A chart redrawn by `update()` every `interval_s` on a daemon thread until `stop()`."""

    interval_s: float

    def _start_polling(self, name: str) -> None:
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=name, daemon=True)

    def update(self) -> None:
        """Fetch the figures once and append them."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start polling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling; the figure keeps what it shows."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.update()
            except Exception as exc:  # noqa: BLE001 - a chart must not kill the kernel's thread
                self.errors.append(str(exc))
            self._stop.wait(self.interval_s)


class LatencyChart(_Polling):
    """A plotly `FigureWidget` redrawn every `interval_s` from the server's sliding window.

    Top: p50/p95/p99 latency (ms). Bottom: requests per second (left axis) and error rate (%,
    right axis). The figures are the server's own (every caller's traffic), polled on a daemon
    thread until `stop()`. The time axis shows the last `window_s` seconds, as the title says:
    older points are dropped.
    """

    def __init__(
        self,
        metrics: Callable[[float], dict[str, Any]],
        *,
        title: str,
        window_s: float = 10.0,
        interval_s: float = 1.0,
        points: int = 300,
    ) -> None:
        from plotly.subplots import make_subplots

        self._metrics = metrics
        self.window_s, self.interval_s, self.points = window_s, interval_s, points
        base = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                             specs=[[{}], [{"secondary_y": True}]])  # fmt: skip
        self.figure = figure_widget(base)
        for name in ("p50", "p95", "p99"):
            self.figure.add_scatter(x=[], y=[], name=f"{name} ms", mode="lines", row=1, col=1)
        self.figure.add_scatter(x=[], y=[], name="req/s", mode="lines", row=2, col=1)
        self.figure.add_scatter(x=[], y=[], name="errors %", mode="lines", row=2, col=1,
                                secondary_y=True, line={"dash": "dot"})  # fmt: skip
        # The plot spans the figure: no width kept for a legend on the right (it sits above the
        # plot), the margins hold the axes' titles.
        self.figure.update_layout(
            title={"text": f"{title}: last {window_s:g} s, every {interval_s:g} s",
                   "x": 0, "xref": "paper", "xanchor": "left", "y": 0.97}, height=420,
            margin={"l": 60, "r": 60, "t": 80, "b": 40},
            legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02,
                    "yanchor": "bottom"},
        )  # fmt: skip
        self.figure.update_xaxes(domain=[0.0, 1.0])
        self.figure.update_xaxes(title_text="time", row=2, col=1)
        self.figure.update_yaxes(title_text="latency ms", row=1, col=1, rangemode="tozero")
        self.figure.update_yaxes(title_text="requests/s", row=2, col=1, secondary_y=False,
                                 rangemode="tozero")  # fmt: skip
        self.figure.update_yaxes(title_text="errors %", row=2, col=1, secondary_y=True,
                                 rangemode="tozero", ticksuffix="%", showgrid=False)  # fmt: skip
        self._start_polling("nstarx-chart")

    def update(self, now: datetime | None = None) -> None:
        """Fetch the window once, append it to every trace, drop what left the window."""
        figures = self._metrics(self.window_s)
        now = now or datetime.now()
        start = now - timedelta(seconds=self.window_s)
        values = [figures.get("p50_ms"), figures.get("p95_ms"), figures.get("p99_ms"),
                  figures.get("rps"), 100 * float(figures.get("error_rate") or 0)]  # fmt: skip
        with self.figure.batch_update():
            for trace, value in zip(self.figure.data, values, strict=True):
                kept = [(x, y) for x, y in zip(trace.x, trace.y, strict=True) if x >= start]
                kept = [*kept, (now, value)][-self.points :]
                trace.x, trace.y = tuple(x for x, _ in kept), tuple(y for _, y in kept)
            self.figure.update_xaxes(range=[start, now])


class VariantChart(_Polling):
    """Requests per second and p99 latency per variant, redrawn every `interval_s`.

    A canary or an A/B split as it happens; a variant gets its lines when it first shows up.
    """

    def __init__(
        self,
        variants: Callable[[float], dict[str, Any]],
        *,
        title: str,
        window_s: float = 10.0,
        interval_s: float = 1.0,
        points: int = 300,
    ) -> None:
        from plotly.subplots import make_subplots

        self._variants = variants
        self.window_s, self.interval_s, self.points = window_s, interval_s, points
        base = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
        self.figure = figure_widget(base)
        self.figure.update_layout(
            title=f"{title} by variant: last {window_s:g} s, every {interval_s:g} s",
            height=420, margin={"l": 50, "r": 50, "t": 50, "b": 30},
            legend={"orientation": "h"},
        )  # fmt: skip
        self.figure.update_yaxes(title_text="req/s", row=1, col=1, rangemode="tozero")
        self.figure.update_yaxes(title_text="p99 ms", row=2, col=1, rangemode="tozero")
        self._traces: dict[str, tuple[int, int]] = {}
        self._start_polling("nstarx-variants")

    def update(self) -> None:
        """Fetch the window once and append each variant's figures to its lines."""
        rows = self._variants(self.window_s)["variants"]
        now = datetime.now()
        with self.figure.batch_update():
            for row in rows:
                label = f"{row['variant']} (v{row['version']})"
                if label not in self._traces:
                    self.figure.add_scatter(x=[], y=[], name=f"{label} req/s", mode="lines",
                                            row=1, col=1)  # fmt: skip
                    self.figure.add_scatter(x=[], y=[], name=f"{label} p99", mode="lines",
                                            row=2, col=1, line={"dash": "dot"})  # fmt: skip
                    count = len(self.figure.data)
                    self._traces[label] = (count - 2, count - 1)
                rate, p99 = self._traces[label]
                for index, value in ((rate, row.get("rps")), (p99, row.get("p99_ms"))):
                    trace = self.figure.data[index]
                    trace.x = (*trace.x, now)[-self.points :]
                    trace.y = (*trace.y, value)[-self.points :]


@dataclass
class LoadTestReport:
    """What a load test sent and what came back (client-side view)."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    error_messages: list[str] = field(default_factory=list, repr=False)

    @property
    def achieved_rps(self) -> float:
        """Requests sent per second of the test."""
        return self.sent / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float | int | None]:
        """Counts, rate and client-side p50/p99 in ms."""
        ordered = sorted(self.latencies_ms)

        def pct(q: float) -> float | None:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None

        return {"sent": self.sent, "ok": self.ok, "errors": self.errors,
                "seconds": round(self.seconds, 3), "achieved_rps": round(self.achieved_rps, 1),
                "p50_ms": pct(0.5), "p99_ms": pct(0.99)}  # fmt: skip


class LoadTest:
    """Send `data` at `rps` requests per second for `duration_s` on a background thread.

    Open loop: requests leave on schedule whether or not earlier ones have answered (up to
    `concurrency` in flight), so a slow server shows as latency, not as a lower send rate.
    """

    def __init__(
        self,
        predict: Callable[[Any], Any],
        data: Any,
        *,
        rps: float,
        duration_s: float,
        concurrency: int = 16,
    ) -> None:
        if rps <= 0 or duration_s <= 0:
            raise InvalidInputError("load_test needs rps > 0 and duration_s > 0")
        self.report = LoadTestReport()
        self._predict, self._data = predict, data
        self._rps, self._duration_s = rps, duration_s
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="nstarx-load")
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="nstarx-load-test", daemon=True)

    def start(self) -> LoadTest:
        """Start sending."""
        self._thread.start()
        return self

    def wait(self, timeout_s: float | None = None) -> LoadTestReport:
        """Block until the test ends and return its report."""
        self._thread.join(timeout_s)
        return self.report

    @property
    def running(self) -> bool:
        """Whether requests are still being sent or awaited."""
        return self._thread.is_alive()

    def _one(self) -> None:
        start = time.perf_counter()
        try:
            self._predict(self._data)
        except Exception as exc:  # noqa: BLE001 - counted and kept for the report
            with self._lock:
                self.report.errors += 1
                if len(self.report.error_messages) < 20:
                    self.report.error_messages.append(str(exc))
            return
        elapsed = (time.perf_counter() - start) * 1000
        with self._lock:
            self.report.ok += 1
            self.report.latencies_ms.append(elapsed)

    def _run(self) -> None:
        began = time.perf_counter()
        interval = 1 / self._rps
        count = int(self._rps * self._duration_s)
        for i in range(count):
            delay = began + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self._pool.submit(self._one)
            self.report.sent += 1
        self._pool.shutdown(wait=True)
        self.report.seconds = time.perf_counter() - began


class DriftChart(_Polling):
    """Each feature's drift score over time, and reference against live for one feature.

    Top: one line per feature (and the prediction), its PSI (numbers) or Jensen-Shannon
    distance (categories), the dashed line at the threshold. Bottom: the reference's and the
    live window's histogram of `feature` (by default the most drifted one). Every figure is the
    server's report (`report()`), polled on a daemon thread until `stop()`.
    """

    def __init__(
        self,
        report: Callable[[], dict[str, Any]],
        *,
        title: str,
        feature: str | None = None,
        interval_s: float = 5.0,
        points: int = 300,
    ) -> None:
        from plotly.subplots import make_subplots

        self._report = report
        self.feature, self.interval_s, self.points = feature, interval_s, points
        base = make_subplots(rows=2, cols=1, vertical_spacing=0.14,
                             subplot_titles=("drift score", "reference vs live"))  # fmt: skip
        self.figure = figure_widget(base)
        self.figure.add_bar(x=[], y=[], name="reference", row=2, col=1, opacity=0.6)
        self.figure.add_bar(x=[], y=[], name="live", row=2, col=1, opacity=0.6)
        self.figure.update_layout(
            title=f"{title}: drift, every {interval_s:g} s", height=560, barmode="overlay",
            margin={"l": 50, "r": 50, "t": 60, "b": 30}, legend={"orientation": "h"},
        )  # fmt: skip
        self.figure.update_yaxes(title_text="score", row=1, col=1, rangemode="tozero")
        self.figure.update_yaxes(title_text="share", row=2, col=1, rangemode="tozero")
        self._lines: dict[str, int] = {}
        self._since: datetime | None = None
        self.last: dict[str, Any] | None = None
        """The last report drawn."""
        self._start_polling("nstarx-drift")

    def update(self) -> None:
        """Fetch the server's report once; append the scores, redraw the histograms."""
        report = self._report()
        now = datetime.now()
        scores = {row["feature"]: row for row in report["features"]
                  if row["test"] in ("psi", "js")}  # fmt: skip
        feature = self.feature or _most_drifted(scores)
        with self.figure.batch_update():
            for name, row in scores.items():
                if name not in self._lines:
                    self._lines[name] = len(self.figure.data)
                    self.figure.add_scatter(x=[], y=[], name=f"{name} ({row['test']})",
                                            mode="lines+markers", row=1, col=1)  # fmt: skip
                trace = self.figure.data[self._lines[name]]
                trace.x = (*trace.x, now)[-self.points :]
                trace.y = (*trace.y, row["score"])[-self.points :]
            # The time axis spans a minute at least (one point would make it 2 ms wide).
            self._since = self._since or now
            first = max(self._since, now - timedelta(seconds=self.interval_s * self.points))
            first -= timedelta(seconds=2)  # the first points clear the left edge
            end = max(now, first + timedelta(seconds=60))
            self.figure.update_xaxes(range=[first, end], tickformat="%H:%M:%S", row=1, col=1)
            shown = report.get("histograms", {}).get(feature or "")
            reference, live = self.figure.data[0], self.figure.data[1]
            if shown is not None:
                x = shown.get("categories") or _centres(shown["edges"])
                reference.x, reference.y = x, shown["reference"]
                live.x, live.y = x, shown["live"]
                self.figure.layout.annotations[1].text = f"{feature}: reference vs live"
        self.last = report


class ImportanceChart(_Polling):
    """Each feature's mean |SHAP value| over live traffic, a horizontal bar per feature.

    The bars are the server's importance over the last window (`report()`, largest on top),
    redrawn every `interval_s` on a daemon thread until `stop()`: as traffic changes, so do
    they.
    """

    def __init__(
        self, report: Callable[[], dict[str, Any]], *, title: str, interval_s: float = 60.0
    ) -> None:
        self._report = report
        self.interval_s = interval_s
        self.figure = figure_widget()
        self.figure.add_bar(x=[], y=[], orientation="h", name="mean |SHAP|")
        self.figure.update_layout(
            title=f"{title}: feature importance, every {interval_s:g} s", height=380,
            margin={"l": 120, "r": 30, "t": 60, "b": 40}, xaxis_title="mean |SHAP value|",
            yaxis={"autorange": "reversed"},
        )  # fmt: skip
        self.last: dict[str, Any] | None = None
        """The last report drawn."""
        self._start_polling("nstarx-importance")

    def update(self) -> None:
        """Fetch the server's importance once and redraw the bars."""
        report = self._report()
        rows = report["features"]
        with self.figure.batch_update():
            bars = self.figure.data[0]
            bars.y = [row["feature"] for row in rows]
            bars.x = [row["importance"] for row in rows]
            self.figure.layout.xaxis.title.text = (
                f"mean |SHAP value| ({report.get('space') or 'no traffic'}, "
                f"{report['rows']} live rows, {report.get('explainer') or '-'} explainer)"
            )
        self.last = report


def _most_drifted(scores: dict[str, dict[str, Any]]) -> str | None:
    if not scores:
        return None
    return max(scores, key=lambda name: scores[name]["score"] / scores[name]["threshold"])


def _centres(edges: list[float]) -> list[float]:
    return [(a + b) / 2 for a, b in itertools.pairwise(edges)]
