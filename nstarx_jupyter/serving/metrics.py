"""Prometheus metrics of one server, in a registry of its own."""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nstarx_jupyter.monitoring.latency import latency_summary

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LatencyWindow", "ModelUsage", "ServerMetrics"]

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
        self.usage: dict[tuple[str, str], ModelUsage] = {}
        """CPU seconds spent in each model version's predict calls (kept across reloads)."""

    def usage_of(self, model: str, version: str) -> ModelUsage:
        """The CPU meter of one model version, made on first use."""
        usage = self.usage.get((model, version))
        if usage is None:
            usage = self.usage[(model, version)] = ModelUsage()
        return usage

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


class ModelUsage:
    """CPU seconds a model version's predict calls used, added to by whoever ran them.

    In threads and inline: `time.thread_time` deltas around `runtime.predict` (the predictor
    measures them anyway); isolated: the worker process's own `process_time` delta per call.
    One float add per call: the request path does nothing else for it.
    """

    __slots__ = ("_lock", "calls", "cpu_s")

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def add(self, cpu_s: float) -> None:
        """Count one predict call (a batch is one call) that used `cpu_s` of CPU."""
        with self._lock:  # predict threads add concurrently: `+=` alone can lose an update
            self.cpu_s += cpu_s
            self.calls += 1


class _Chunk:
    """`CHUNK` samples in flat arrays: numbers the garbage collector never walks one by one."""

    __slots__ = ("ok", "seconds", "size", "times")

    def __init__(self) -> None:
        self.times = array("d", bytes(8 * _CHUNK))
        self.seconds = array("d", bytes(8 * _CHUNK))
        self.ok = bytearray(_CHUNK)
        self.size = 0


_CHUNK = 4096


class LatencyWindow:
    """The last `keep_s` seconds of one model's requests: latency and outcome of each.

    Prometheus histograms answer "how many under 5 ms"; a notebook chart wants exact p50/p95/p99
    of the last minute, so the server keeps the raw samples for a few minutes (17 bytes each, a
    few MB at most). They live in chunks of flat arrays, not as a tuple per request: a deque of
    500,000 tuples made every full garbage collection walk half a million entries, a pause
    that grew to 15 ms as the window filled and stalled every request in flight (bench/).
    """

    def __init__(
        self,
        keep_s: float = 300.0,
        max_samples: int = 500_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keep_s = keep_s
        self._clock = clock
        self._max_chunks = max(2, -(-max_samples // _CHUNK))
        self._chunks: deque[_Chunk] = deque([_Chunk()])

    def record(self, seconds: float, ok: bool) -> None:
        """Add one request that ended now."""
        now = self._clock()
        chunk = self._chunks[-1]
        i = chunk.size
        if i == _CHUNK:
            chunk = self._next_chunk(now)
            i = 0
        chunk.times[i] = now
        chunk.seconds[i] = seconds
        chunk.ok[i] = ok
        chunk.size = i + 1

    def _next_chunk(self, now: float) -> _Chunk:
        chunks = self._chunks
        while chunks and (len(chunks) >= self._max_chunks
                          or chunks[0].times[chunks[0].size - 1] < now - self.keep_s):  # fmt: skip
            chunks.popleft()
        chunk = _Chunk()
        chunks.append(chunk)
        return chunk

    def _recent(self, since: float) -> tuple[np.ndarray, np.ndarray]:
        """Latencies (s) and outcomes of the samples that ended at `since` or later."""
        times, seconds, ok = [], [], []
        for chunk in self._chunks:
            n = chunk.size
            if n == 0 or chunk.times[n - 1] < since:
                continue
            times.append(np.frombuffer(chunk.times, dtype=np.float64, count=n))
            seconds.append(np.frombuffer(chunk.seconds, dtype=np.float64, count=n))
            ok.append(np.frombuffer(chunk.ok, dtype=np.bool_, count=n))
        if not times:
            return np.empty(0), np.empty(0, dtype=np.bool_)
        keep = np.concatenate(times) >= since
        return np.concatenate(seconds)[keep], np.concatenate(ok)[keep]

    def samples(self, window_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Latencies (s) and outcomes of the requests of the last `window_s` seconds."""
        now = self._clock()
        return self._recent(max(now - window_s, now - self.keep_s))

    def summary(self, window_s: float) -> dict[str, float | int | None]:
        """Requests, rate, errors and latency percentiles (ms) over the last `window_s` seconds."""
        return latency_summary(*self.samples(window_s), window_s)
