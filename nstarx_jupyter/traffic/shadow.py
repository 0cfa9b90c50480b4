"""Shadow traffic: what a shadow variant is sent, and whether its answers agree with the live ones.

A shadow gets a copy of each routed request in the background; its answer is never returned. The
decisions here are pure: which of the live answer's outputs to compare (`decisions`), whether one
more copy may go (`ShadowStats.admit`: a slow shadow gets copies dropped, not queued) and whether
the two answers agree (`agree`).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nstarx_jupyter.protocol.signature import ModelSignature
    from nstarx_jupyter.traffic.request_log import Tensors

__all__ = ["SHADOW_IN_FLIGHT", "ShadowStats", "agree", "decisions"]

SHADOW_IN_FLIGHT = 32
"""Copies a shadow may have unanswered; past it copies are dropped (and counted), not queued."""


def decisions(signature: ModelSignature, outputs: Tensors) -> Tensors:
    """The live answer's decision outputs (a classifier's class, not its probabilities).

    The model's default outputs (else all it declares) that the answer holds: the shadow's must
    match them to count as agreeing.
    """
    names = signature.default_outputs or signature.output_names()
    return {key: outputs[key] for key in names if key in outputs}


def agree(primary: Tensors, shadow: Tensors) -> bool:
    """Whether a shadow's answer matches the primary's on every output both produced."""
    shared = [name for name in primary if name in shadow]
    if not shared:
        return False
    for name in shared:
        a, b = primary[name], shadow[name]
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "fc" and b.dtype.kind in "fc":
            if not np.allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=True):
                return False
        elif not np.array_equal(a, b):
            return False
    return True


class ShadowStats:
    """What a shadow variant did with its copies: answers, agreement, errors, drops, latency."""

    def __init__(self, keep: int = 10_000) -> None:
        self.requests = 0
        self.agreed = 0
        self.errors = 0
        self.dropped = 0
        """Copies not sent because too many were still in flight (a slow shadow)."""
        self.in_flight = 0
        self.last_error = ""
        self._latency: deque[float] = deque(maxlen=keep)
        self.started = time.time()

    def admit(self) -> bool:
        """Whether one more copy may go (counted in flight), or is dropped (counted dropped)."""
        if self.in_flight >= SHADOW_IN_FLIGHT:
            self.dropped += 1
            return False
        self.in_flight += 1
        return True

    def record(self, seconds: float, agreed: bool | None, error: str = "") -> None:
        """One copy answered (`agreed` set) or failed (`error` set)."""
        self.requests += 1
        self._latency.append(seconds)
        if error:
            self.errors += 1
            self.last_error = error
        elif agreed:
            self.agreed += 1

    def summary(self) -> dict[str, Any]:
        """Counts, the agreement rate and latency percentiles (ms) of the recent copies."""
        answered = self.requests - self.errors
        out: dict[str, Any] = {
            "requests": self.requests, "answered": answered, "agreed": self.agreed,
            "agreement": self.agreed / answered if answered else None,
            "errors": self.errors, "dropped": self.dropped, "in_flight": self.in_flight,
            "p50_ms": None, "p99_ms": None,
        }  # fmt: skip
        if self.last_error:
            out["last_error"] = self.last_error
        if self._latency:
            p50, p99 = np.percentile(np.fromiter(self._latency, dtype=np.float64), [50, 99])
            out.update(p50_ms=float(p50) * 1000, p99_ms=float(p99) * 1000)
        return out
