"""Prometheus metrics of one server, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServerMetrics"]

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
