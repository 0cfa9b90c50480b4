"""Traffic between the versions of a model: pure decisions, no transport and no model call.

Canary and A/B splits, sticky callers, header and geo rules (`router`), shadows (`shadow`),
fallbacks (`fallback`), and the request log feedback and the A/B report read (`request_log`);
`TrafficTable` keeps them per model. The server's dispatcher (`serving/dispatch.py`) applies these
decisions in front of its data plane.
"""

from nstarx_jupyter.traffic.fallback import fallback_reason
from nstarx_jupyter.traffic.request_log import Logged, RequestLog
from nstarx_jupyter.traffic.router import Arm, Choice, Router, TrafficPlan
from nstarx_jupyter.traffic.shadow import SHADOW_IN_FLIGHT, ShadowStats, agree, decisions
from nstarx_jupyter.traffic.table import TrafficTable

__all__ = ["SHADOW_IN_FLIGHT", "Arm", "Choice", "Logged", "RequestLog", "Router", "ShadowStats",
           "TrafficPlan", "TrafficTable", "agree", "decisions", "fallback_reason"]  # fmt: skip
