"""The control API's resource, cost and trend routes, and the task that writes the rollups.

`GET /deployments/{name}/cost?window_s=` prices what each version used over the window
(`monitoring.cost`, the one computation every front end shows); `GET
/deployments/{name}/history?since_s=` reads the per-minute rollups (`serving.trends`); `GET/PUT
/prices` read and set the price table (`$NSTARX_HOME/prices.json`, admin only). The resource
figures of `GET /deployments/{name}/metrics` come from `resources` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.monitoring.cost import Prices, Usage, cost_of, load_prices, save_prices
from nstarx_jupyter.protocol.control import (
    CostFigures,
    DeploymentCost,
    DeploymentHistory,
    PriceTable,
    TrendRow,
    VariantCost,
)
from nstarx_jupyter.serving.background import LoopTask
from nstarx_jupyter.serving.control_http import (
    PREFIX,
    control_endpoint,
    json_body,
    model_response,
    query_number,
)
from nstarx_jupyter.serving.metrics import LatencyWindow
from nstarx_jupyter.serving.trends import BUCKET_S, KEEP_S, Rollup, TrendStore
from nstarx_jupyter.serving.usage import UsageMonitor, WindowUsage

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from starlette.requests import Request
    from starlette.responses import Response

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane

__all__ = ["MAX_COST_WINDOW_S", "UsageApi"]

log = logging.getLogger(__name__)

MAX_COST_WINDOW_S = 3600.0
"""The longest cost window priced per variant, from the resource snapshots kept in memory;
longer ones (up to 30 days) are priced from the per-minute rollups, for the whole deployment."""


class UsageApi:
    """Resource figures, costs and trends of the deployments of one server."""

    def __init__(
        self,
        dataplane: DataPlane,
        state_dir: Path,
        known: Callable[[str], object],
        names: Callable[[], list[str]],
        *,
        monitor: UsageMonitor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dataplane = dataplane
        self.monitor = monitor or UsageMonitor(dataplane.repository, clock=clock)
        """The resource figures (its collector serves them in `/metrics`, registered by the
        app factory)."""
        self.trends = TrendStore(state_dir / "trends.sqlite3", clock=clock)
        self.clock = clock
        self._known = known
        """Raises `NotFoundError` for a name that is not a deployment."""
        self._names = names
        self.prices: Prices | None = None
        """Read from `$NSTARX_HOME/prices.json` on first use; `PUT /prices` replaces it."""
        self.drift_score: Callable[[str], float | None] | None = None
        """Set by drift detection: a deployment's drift score now, written into each minute's
        rollup (the `drift` column stays NULL without it)."""
        self._writer = ThreadPoolExecutor(1, "nstarx-trends")
        self._background = LoopTask(self._roll_every_minute)
        self._first_minute = -1.0
        """The minute this server started in: an earlier server may have written part of it."""

    def start(self) -> None:
        """Sample resources every few seconds and write a rollup a minute."""
        now = self.clock()
        self._first_minute = now - now % BUCKET_S
        self.monitor.start()
        self._background.start()

    async def close(self) -> None:
        """Write the current (partial) minute, then stop: a restart finds it."""
        if await self._background.stop():
            now = self.clock()
            with contextlib.suppress(Exception):  # shutting down: the log says what failed
                await self._write(self.rollups(now - now % BUCKET_S, now))
        await self.monitor.close()
        self._writer.submit(self.trends.close)
        self._writer.shutdown(wait=True)

    # -- figures -------------------------------------------------------------------------------

    def price_table(self) -> Prices:
        """The prices in force."""
        if self.prices is None:
            self.prices = load_prices()
        return self.prices

    def resources(self, name: str) -> dict[str, Any]:
        """A deployment's resource figures now (see `UsageMonitor.resources`)."""
        return self.monitor.resources(name)

    def cost(self, name: str, window_s: float) -> DeploymentCost:
        """What the deployment cost over the last `window_s` seconds, in all and per variant.

        Rates (per 1,000 predictions, per day) are over the seconds the resource snapshots
        cover (`covered_s`, less than the window right after the server started). The total's
        predictions leave out shadow copies; each variant's count its own answers. Past an
        hour, the rollups are priced instead (`source: rollups`): the whole deployment, the
        minutes written so far, at today's prices.
        """
        self._known(name)
        if not 0 < window_s <= KEEP_S:
            raise InvalidInputError(f"window_s: between 0 and {KEEP_S} seconds (30 days)")
        prices = self.price_table()
        if window_s > MAX_COST_WINDOW_S:
            return self._rolled_up_cost(name, window_s, prices)
        usages = [u for u in self.monitor.window(name, window_s) if u.requests or u.cpu_s]
        plan = self.dataplane.traffic(name)
        covered_s = max((u.covered_s for u in usages), default=0.0)
        variants = [VariantCost(variant=plan.label(u.version) if plan is not None else "primary",
                                version=u.version, shadow=u.shadow, errors=u.errors,
                                **cost_of(_as_usage(u, u.requests), prices).to_json())
                    for u in usages]  # fmt: skip
        served = sum(u.requests - u.shadow for u in usages)
        total = Usage(covered_s, served, sum(u.cpu_s for u in usages),
                      sum(u.memory_gb_s for u in usages), sum(u.gpu_s for u in usages))  # fmt: skip
        return DeploymentCost(name=name, window_s=window_s, covered_s=covered_s,
                              prices=PriceTable(**prices.to_json()),
                              total=CostFigures(**cost_of(total, prices).to_json()),
                              variants=variants, source="live")  # fmt: skip

    def _rolled_up_cost(self, name: str, window_s: float, prices: Prices) -> DeploymentCost:
        """The cost of the rollups of the last `window_s` seconds (memory: each minute's mean)."""
        now = self.clock()
        rows = self.trends.read(name, now - window_s)
        covered_s = min(window_s, now - rows[0].minute) if rows else 0.0
        total = Usage(covered_s, sum(row.requests for row in rows),
                      sum(row.cpu_s for row in rows),
                      sum(row.rss_bytes for row in rows) * BUCKET_S / 1e9)  # fmt: skip
        return DeploymentCost(name=name, window_s=window_s, covered_s=covered_s,
                              prices=PriceTable(**prices.to_json()),
                              total=CostFigures(**cost_of(total, prices).to_json()),
                              variants=[], source="rollups")  # fmt: skip

    def rollups(self, minute: float, now: float) -> list[Rollup]:
        """Each deployment's rollup of the minute from `minute` to `now`."""
        window_s = max(1e-3, now - minute)
        prices = self.price_table()
        rows = []
        for name in self._names():
            latency = self.dataplane.metrics.windows.get(name) or LatencyWindow()
            summary = latency.summary(window_s)
            usages = self.monitor.window(name, window_s)
            cpu_s = sum(u.cpu_s for u in usages)
            memory_gb_s = sum(u.memory_gb_s for u in usages)
            covered_s = max((u.covered_s for u in usages), default=0.0)
            cost = cost_of(Usage(window_s, int(summary["requests"] or 0), cpu_s, memory_gb_s),
                           prices)  # fmt: skip
            rss = int(memory_gb_s * 1e9 / covered_s) if covered_s > 0 else 0
            rows.append(Rollup(
                name, int(minute), int(summary["requests"] or 0), int(summary["errors"] or 0),
                _ms(summary["p50_ms"]), _ms(summary["p95_ms"]), _ms(summary["p99_ms"]),
                cpu_s, rss, cost.total, self._drift(name),
            ))  # fmt: skip
        return rows

    def _drift(self, name: str) -> float | None:
        if self.drift_score is None:
            return None
        try:
            return _ms(self.drift_score(name))  # a finite number, or None
        except Exception:  # another component's code: its failure leaves the column empty
            log.exception("the drift score of %s failed", name)
            return None

    def history(self, name: str, since_s: float) -> DeploymentHistory:
        """The deployment's rollups of the last `since_s` seconds (at most 30 days)."""
        self._known(name)
        if not 0 < since_s <= KEEP_S:
            raise InvalidInputError(f"since_s: between 0 and {KEEP_S} seconds (30 days)")
        rows = self.trends.read(name, self.clock() - since_s)
        return DeploymentHistory(name=name, since_s=since_s, bucket_s=BUCKET_S,
                                 rows=[TrendRow(**row.to_json()) for row in rows])  # fmt: skip

    # -- the writer ----------------------------------------------------------------------------

    async def _write(self, rows: list[Rollup]) -> None:
        loop = asyncio.get_running_loop()
        merge = bool(rows) and rows[0].minute == int(self._first_minute)
        await loop.run_in_executor(self._writer, functools.partial(self.trends.write, rows,
                                                                   merge=merge))  # fmt: skip

    async def _roll_every_minute(self) -> None:
        """Just after each minute ends, roll it up (computed on the loop, written by a thread)."""
        while True:
            now = self.clock()
            await asyncio.sleep(BUCKET_S - now % BUCKET_S + 0.01)
            now = self.clock()
            minute = now - now % BUCKET_S - BUCKET_S
            try:
                await self._write(self.rollups(minute, now))
            except Exception:  # a task boundary: one failed minute must not end the trends
                log.exception("writing the rollups failed")

    # -- HTTP ----------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """`/deployments/{name}/cost`, `/deployments/{name}/history` and `/prices`."""

        def route(path: str, handler: Any, action: str, audit_as: str,
                  methods: list[str]) -> Route:  # fmt: skip
            endpoint = control_endpoint(self.dataplane, handler, action, audit_as)
            return Route(f"{PREFIX}{path}", endpoint, methods=methods)

        return [
            route("/deployments/{name}/cost", self._cost, "manage", "cost", ["GET"]),
            route("/deployments/{name}/history", self._history, "manage", "history", ["GET"]),
            route("/prices", self._prices, "admin", "prices", ["GET", "PUT"]),
        ]

    async def _cost(self, request: Request, principal: Principal) -> Response:
        window_s = query_number(request.query_params, "window_s", "3600")
        name = request.path_params["name"]
        if window_s <= MAX_COST_WINDOW_S:
            return model_response(self.cost(name, window_s))
        loop = asyncio.get_running_loop()  # up to 43,200 rollups read: off the event loop
        return model_response(await loop.run_in_executor(None, self.cost, name, window_s))

    async def _history(self, request: Request, principal: Principal) -> Response:
        since_s = query_number(request.query_params, "since_s", "86400")
        name = request.path_params["name"]
        loop = asyncio.get_running_loop()  # a read of up to 43,200 rows: off the event loop
        self._known(name)
        return model_response(await loop.run_in_executor(None, self.history, name, since_s))

    async def _prices(self, request: Request, principal: Principal) -> Response:
        if request.method == "PUT":
            prices = Prices.parse(await json_body(request))
            save_prices(prices)
            self.prices = prices
        return model_response(PriceTable(**self.price_table().to_json()))


def _as_usage(found: WindowUsage, requests: int) -> Usage:
    return Usage(found.covered_s, requests, found.cpu_s, found.memory_gb_s, found.gpu_s)


def _ms(value: float | int | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
