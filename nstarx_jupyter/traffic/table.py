"""The traffic state of a server: per routed model its router, request log and shadow statistics."""

from __future__ import annotations

from nstarx_jupyter.traffic.request_log import RequestLog
from nstarx_jupyter.traffic.router import Router, TrafficPlan
from nstarx_jupyter.traffic.shadow import ShadowStats

__all__ = ["TrafficTable"]


class TrafficTable:
    """Routers, request logs and shadow statistics by model name.

    A request log outlives a change of plan (feedback and the A/B report still find the requests
    answered before it); shadow statistics last while the plan keeps a shadow.
    """

    def __init__(self) -> None:
        self.routers: dict[str, Router] = {}
        """The routed models' routers (a name here is routed)."""
        self.logs: dict[str, RequestLog] = {}
        """Recent routed requests per model, for feedback and the A/B report."""
        self.shadows: dict[str, ShadowStats] = {}
        """What each model's shadow variant did with its copies."""

    def set(self, name: str, plan: TrafficPlan | None) -> None:
        """Route `name`'s unversioned requests by `plan` (None: to its default version)."""
        if plan is None:
            self.routers.pop(name, None)
            self.shadows.pop(name, None)
            self.logs.pop(name, None)
            return
        self.routers[name] = Router(plan)
        self.logs.setdefault(name, RequestLog())
        if plan.shadow is None:
            self.shadows.pop(name, None)
        elif name not in self.shadows:
            self.shadows[name] = ShadowStats()

    def plan(self, name: str) -> TrafficPlan | None:
        """The traffic plan of `name`, if it has one."""
        router = self.routers.get(name)
        return router.plan if router is not None else None
