"""Prometheus metrics of one server, in a registry of its own."""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LatencyWindow", "ServerMetrics"]

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    """Request counts and latencies per model, version and protocol, plus batching and loading."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ["model", "version", "protocol"]
        self.requests = Counter(
            "nstarx_requests", "Inference requests.", [*labels, "status"], registry=self.registry
        )
        self.latency = Histogram(
            "nstarx_request_duration_seconds",
            "Inference request latency in the server.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "nstarx_batch_size", "Rows per predict call.", ["model", "version"],
            buckets=_BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "nstarx_queue_depth", "Requests waiting for a slot or a batch.", ["model", "version"],
            registry=self.registry,
        )  # fmt: skip
        self.load_seconds = Histogram(
            "nstarx_model_load_seconds", "Time to load a model.", ["model", "version"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=self.registry,
        )  # fmt: skip
        self.models_loaded = Gauge(
            "nstarx_models_loaded", "Models loaded and ready.", registry=self.registry
        )
        self._children: dict[tuple[str, str, str], tuple[Histogram, Counter]] = {}
        self.windows: dict[str, LatencyWindow] = {}
        """Recent requests per model name, for exact percentiles over a sliding window."""
        self.version_windows: dict[tuple[str, str], LatencyWindow] = {}
        """The same per model version (a deployment's variants and revisions), shadows included."""

    def observe_request(
        self, model: str, version: str, protocol: str, status: str, seconds: float
    ) -> None:
        """Count one inference request and record its latency."""
        key = (model, version, protocol)
        children = self._children.get(key)
        if children is None:
            children = (self.latency.labels(*key), self.requests.labels(*key, "ok"))
            self._children[key] = children
        children[0].observe(seconds)
        if status == "ok":
            children[1].inc()
        else:
            self.requests.labels(*key, status).inc()
        ok = status == "ok"
        if protocol != "shadow":  # a shadow's copies are not the deployment's traffic
            window = self.windows.get(model)
            if window is None:
                window = self.windows[model] = LatencyWindow()
            window.record(seconds, ok)
        by_version = self.version_windows.get((model, version))
        if by_version is None:
            by_version = self.version_windows[(model, version)] = LatencyWindow()
        by_version.record(seconds, ok)


class LatencyWindow:
    """The last `keep_s` seconds of one model's requests: latency and outcome of each.

    Prometheus histograms answer "how many under 5 ms"; a notebook chart wants exact p50/p95/p99
    of the last minute, so the server keeps the raw samples for a few minutes (a few MB at most).
    """

    def __init__(self, keep_s: float = 300.0, max_samples: int = 500_000) -> None:
        self.keep_s = keep_s
        self._samples: deque[tuple[float, float, bool]] = deque(maxlen=max_samples)

    def record(self, seconds: float, ok: bool) -> None:
        """Add one request that ended now."""
        now = time.monotonic()
        samples = self._samples
        samples.append((now, seconds, ok))
        while samples[0][0] < now - self.keep_s:
            samples.popleft()

    def summary(self, window_s: float) -> dict[str, float | int | None]:
        """Requests, rate, errors and latency percentiles (ms) over the last `window_s` seconds."""
        since = time.monotonic() - window_s
        recent = [(s, ok) for t, s, ok in self._samples if t >= since]
        errors = sum(1 for _, ok in recent if not ok)
        out: dict[str, float | int | None] = {
            "window_s": window_s, "requests": len(recent), "rps": len(recent) / window_s,
            "errors": errors, "error_rate": errors / len(recent) if recent else 0.0,
            "p50_ms": None, "p95_ms": None, "p99_ms": None,
        }  # fmt: skip
        if recent:
            latencies = np.fromiter((s for s, _ in recent), dtype=np.float64, count=len(recent))
            p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) * 1000
            out.update(p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99))
        return out
