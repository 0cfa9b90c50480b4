"""Latency figures of a window of requests: one computation for every number shown.

The server summarises its own samples with it (`LatencyWindow.summary`), and the KServe backend
the samples of a split's variant pods, merged: a split's p95 on a cluster is computed as the
local server computes a split's, from every request, not averaged from the variants' own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["latency_summary"]


def latency_summary(
    latencies_s: np.ndarray | Sequence[float], ok: np.ndarray | Sequence[bool], window_s: float
) -> dict[str, float | int | None]:
    """Requests, rate, errors and exact latency percentiles (ms) of the requests given."""
    latencies = np.asarray(latencies_s, dtype=np.float64)
    count = int(latencies.size)
    errors = int(count - np.count_nonzero(np.asarray(ok, dtype=np.bool_)))
    out: dict[str, float | int | None] = {
        "window_s": window_s, "requests": count, "rps": count / window_s,
        "errors": errors, "error_rate": errors / count if count else 0.0,
        "p50_ms": None, "p95_ms": None, "p99_ms": None,
    }  # fmt: skip
    if count:
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) * 1000
        out.update(p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99))
    return out
