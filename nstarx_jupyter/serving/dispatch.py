"""The dispatcher in front of the data plane: a routed request's version, fallback, log and shadow.

`DataPlane.predict` answers a request to a model without a traffic plan itself (the common case,
inline); one under a plan comes here. The decisions are `traffic`'s (which version, whether the
fallback answers, whether a shadow copy goes, what is logged); this applies them around the data
plane's `ModelCall`, the one version's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import TYPE_CHECKING

from nstarx_jupyter.errors import NstarxError
from nstarx_jupyter.traffic import ShadowStats, agree, decisions, fallback_reason
from nstarx_jupyter.traffic.fallback import CALLER_MISTAKES

if TYPE_CHECKING:
    from nstarx_jupyter.serving.model_call import Ask, Caller, ModelCall, Served
    from nstarx_jupyter.traffic import TrafficPlan, TrafficTable
    from nstarx_jupyter.traffic.request_log import Tensors

__all__ = ["Dispatcher"]


class Dispatcher:
    """Sends requests to the version their model's traffic plan picks (see the module)."""

    def __init__(self, table: TrafficTable, call: ModelCall) -> None:
        self.table = table
        self.call = call
        self._background: set[asyncio.Task[None]] = set()

    async def dispatch(
        self, ask: Ask, version: str | None, caller: Caller | None, request_id: str | None
    ) -> Served:
        """Answer `ask`: by `version` if given or the model is not routed, else by its plan.

        A routed request gets the caller's `X-Request-Id` (else `request_id`, else a new one) as
        the id feedback refers to; `caller` holds what rules and sticky splits read.
        """
        router = self.table.routers.get(ask.name) if version is None else None
        if router is None:
            return await self.call(ask, version)
        plan = router.plan
        headers = caller.headers if caller is not None else {}
        chosen = router.choose(headers, caller.client if caller is not None else None).version
        request_id = headers.get("x-request-id") or request_id or uuid.uuid4().hex
        started = time.perf_counter()
        try:
            if plan.fallback is None or plan.fallback == chosen:
                served = await self.call(ask, chosen)
                served.variant = plan.label(chosen)
            else:
                served = await self._with_fallback(ask, chosen, plan)
        except NstarxError as exc:
            if exc.kind not in CALLER_MISTAKES:
                self._log(ask.name, request_id, chosen, started, None)
            raise
        served.request_id = request_id
        self._log(ask.name, request_id, served.model.settings.version, started, served.outputs)
        if plan.shadow is not None and plan.shadow != served.model.settings.version:
            compared = decisions(served.model.signature, served.outputs)
            self._copy_to_shadow(ask, plan.shadow, compared)
        return served

    def _log(
        self, name: str, request_id: str, version: str, started: float, outputs: Tensors | None
    ) -> None:
        log = self.table.logs.get(name)
        if log is not None:
            log.answered(request_id, version, time.perf_counter() - started, outputs)

    async def _with_fallback(self, ask: Ask, chosen: str, plan: TrafficPlan) -> Served:
        try:
            async with asyncio.timeout(plan.fallback_timeout_s):
                served = await self.call(ask, chosen)
            served.variant = plan.label(chosen)
            return served
        except (TimeoutError, NstarxError) as exc:
            reason = fallback_reason(exc)
            if reason is None:
                raise
        fallback = str(plan.fallback)
        served = await self.call(ask, fallback)
        served.variant, served.fallback = plan.label(fallback), reason
        return served

    def _copy_to_shadow(self, ask: Ask, version: str, primary: Tensors) -> None:
        """Send the request to the shadow in the background, unless too many copies are out.

        `primary` holds the live answer's decision outputs: the shadow's must match them to
        count as agreeing.
        """
        stats = self.table.shadows.setdefault(ask.name, ShadowStats())
        if not stats.admit():
            return
        task = asyncio.get_running_loop().create_task(self._shadow(ask, version, primary, stats))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shadow(self, ask: Ask, version: str, primary: Tensors, stats: ShadowStats) -> None:
        started = time.perf_counter()
        try:
            served = await self.call(ask, version, shadow=True)
        except Exception as exc:  # noqa: BLE001 - a shadow's failure is recorded, never raised
            message = exc.message if isinstance(exc, NstarxError) else repr(exc)
            stats.record(time.perf_counter() - started, None, message)
        else:
            stats.record(time.perf_counter() - started, agree(primary, served.outputs))
        finally:
            stats.in_flight -= 1

    async def close(self) -> None:
        """Cancel the shadow copies still running and wait for them to end."""
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
