"""Resource use, cost and trends of a deployment from a notebook cell.

Every figure is the server's (`GET /nstarx/v1/deployments/NAME/metrics`, `/cost`, `/history`):
the notebook reshapes them into DataFrames and charts and computes none of them, so the card,
the sidebar and the notebook show the same numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nstarx_jupyter.security.home import parse_duration

if TYPE_CHECKING:
    import pandas as pd

    from nstarx_jupyter.deployment.local import LocalBackend
    from nstarx_jupyter.deployment.service import DeploymentService
    from nstarx_jupyter.protocol.control import DeploymentCost, DeploymentFigures

__all__ = ["COST_COLUMNS", "HISTORY_COLUMNS", "USAGE_COST_WINDOW_S", "UsageMixin", "usage_figures"]

COST_COLUMNS = ("variant", "version", "requests", "cpu_s", "memory_gb_s", "gpu_s", "total",
                "per_1000", "per_day", "currency")  # fmt: skip
"""The columns of `Deployment.cost()`, as the server names them."""
HISTORY_COLUMNS = ("requests", "errors", "p50_ms", "p95_ms", "p99_ms", "cpu_s", "rss_bytes",
                   "cost", "drift")  # fmt: skip
"""The columns of `Deployment.history()` (indexed by the minute, UTC)."""


USAGE_COST_WINDOW_S = 3600.0
"""The window of the card's and the sidebar's cost figures (per 1,000 predictions, per day)."""


def usage_figures(metrics: DeploymentFigures | None, cost: DeploymentCost | None) -> dict[str, Any]:
    """The card's and the sidebar's usage line from the control API's `metrics` and `cost`.

    Picked, not computed: CPU seconds and memory from `metrics.resources`, the cost per 1,000
    predictions and per day from `cost.total` (None where the server gave none).
    """
    resources = metrics.resources if metrics is not None else None
    total = cost.total if cost is not None else None
    return {
        "cpu_s": resources.cpu_s if resources is not None else None,
        "rss_bytes": resources.rss_bytes if resources is not None else None,
        "cost_per_1000": total.per_1000 if total is not None else None,
        "cost_per_day": total.per_day if total is not None else None,
        "currency": total.currency if total is not None else None,
    }


def _seconds(value: float | str) -> float:
    return float(value) if isinstance(value, int | float) else parse_duration(value)


class UsageMixin:
    """Resource, cost and trend methods of `Deployment` (which provides `name` and `service`).

    Resource use, cost and trends are the local server's figures: on another backend each
    method raises `UnsupportedError` saying so.
    """

    name: str
    service: DeploymentService

    def _local(self) -> LocalBackend:
        return self.service.local("resource use, cost and trends")

    def usage_figures(self) -> dict[str, Any]:
        """CPU seconds, memory, and the last hour's cost per 1,000 and per day (the card's line)."""
        metrics = self._local().metrics(self.name, 60)
        return usage_figures(metrics, self._local().cost(self.name, USAGE_COST_WINDOW_S))

    def resources(self) -> dict[str, Any]:
        """CPU seconds, memory, threads (and GPU where there is one) per version, and the server's.

        The same figures as `metrics()["resources"]` and `/metrics`' `nstarx_model_*` series.
        """
        return self._local().deployment_metrics(self.name, 60).resources.model_dump()

    def cost(self, window: float | str = "1h") -> pd.DataFrame:
        """What the deployment cost over the last `window` (seconds or `"15m"`, up to `"30d"`).

        One row per variant (during a canary or an A/B split: each revision or variant) and a
        `total` row: requests, CPU seconds, memory (GB x s), the cost, the cost per 1,000
        predictions and per day at the window's rate, from the server's price table
        (`prices.json`; see `Deployment.prices()`). Past an hour the server prices its
        per-minute rollups: the `total` row only.
        """
        import pandas as pd

        doc = self._local().cost(self.name, _seconds(window))
        rows = [*(variant.model_dump() for variant in doc.variants),
                {"variant": "total", "version": None, **doc.total.model_dump()}]  # fmt: skip
        frame = pd.DataFrame([{key: row.get(key) for key in COST_COLUMNS} for row in rows])
        frame.attrs.update(window_s=doc.window_s, covered_s=doc.covered_s,
                           prices=doc.prices.model_dump(), source=doc.source)  # fmt: skip
        return frame.set_index("variant")

    def prices(self, **prices: float | str) -> dict[str, Any]:
        """The server's price table; with arguments (`cpu_hour=0.05`, ...) set it first."""
        if prices:
            return self._local().set_prices(prices).model_dump()
        return self._local().prices().model_dump()

    def history(self, since: float | str = "7d") -> pd.DataFrame:
        """Per-minute rollups of the last `since` (seconds or `"7d"`; 30 days are kept).

        Indexed by the minute (UTC): requests, errors, p50/p95/p99 latency (ms), CPU seconds,
        mean resident memory, cost, and a drift score where drift detection wrote one. The
        rollups persist in the server's state folder across restarts.
        """
        import pandas as pd

        doc = self._local().history(self.name, _seconds(since))
        rows = [row.model_dump() for row in doc.rows]
        frame = pd.DataFrame(rows, columns=["t", *HISTORY_COLUMNS])
        frame.index = pd.to_datetime(frame.pop("t"), unit="s", utc=True)
        frame.index.name = "minute"
        return frame

    def trends_chart(self, since: float | str = "1d") -> Any:
        """A plotly figure of `history(since)`: requests, p50/p95/p99 latency and cost a minute."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        frame = self.history(since)
        titles = ("requests / min", "latency (ms)", "cost / min")
        figure = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                               subplot_titles=titles)  # fmt: skip
        figure.add_trace(go.Bar(x=frame.index, y=frame["requests"], name="requests"), 1, 1)
        for column in ("p50_ms", "p95_ms", "p99_ms"):
            figure.add_trace(go.Scatter(x=frame.index, y=frame[column], mode="lines",
                                        name=column.removesuffix("_ms")), 2, 1)  # fmt: skip
        figure.add_trace(go.Scatter(x=frame.index, y=frame["cost"], mode="lines", name="cost"),
                         3, 1)  # fmt: skip
        figure.update_layout(title=f"{self.name}: the last {since}", height=600)
        return figure
