"""The sliding window behind deployment.metrics(): exact percentiles of recent requests."""

from __future__ import annotations

import numpy as np
import pytest

from nstarx_jupyter.serving.metrics import LatencyWindow


def test_percentiles_rate_and_errors_over_the_window() -> None:
    now = [1000.0]
    window = LatencyWindow(keep_s=300, clock=lambda: now[0])
    rng = np.random.default_rng(0)
    old = rng.uniform(0.5, 1.0, 50)  # a minute ago: outside a 30 s window
    for seconds in old:
        window.record(float(seconds), ok=False)
    now[0] += 60
    recent = rng.exponential(0.01, 400)
    for i, seconds in enumerate(recent):
        now[0] += 0.05
        window.record(float(seconds), ok=i % 40 != 0)
    summary = window.summary(30)
    assert summary["requests"] == 400
    assert summary["rps"] == pytest.approx(400 / 30)
    assert summary["errors"] == 10
    assert summary["error_rate"] == pytest.approx(10 / 400)
    want = np.percentile(recent, [50, 95, 99]) * 1000
    assert [summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]] == pytest.approx(list(want))
    assert window.summary(300)["requests"] == 450


def test_old_samples_are_dropped_and_an_empty_window_has_no_percentiles() -> None:
    now = [0.0]
    window = LatencyWindow(keep_s=10, clock=lambda: now[0])
    window.record(0.1, ok=True)
    now[0] = 100.0
    window.record(0.2, ok=True)
    assert window.summary(300)["requests"] == 1  # the first fell out of keep_s
    now[0] = 200.0
    empty = window.summary(5)
    assert empty["requests"] == 0
    assert empty["p99_ms"] is None


def test_many_samples_span_chunks_cap_at_max_and_give_the_collector_nothing_to_walk() -> None:
    import gc

    rng = np.random.default_rng(0)
    latencies = rng.exponential(0.01, 20_000)
    window = LatencyWindow(keep_s=300, max_samples=10_000)
    for i, seconds in enumerate(latencies):
        window.record(float(seconds), ok=i % 100 != 0)
    summary = window.summary(300)
    # The cap drops whole chunks, oldest first: between max_samples and one chunk more remain.
    kept = int(summary["requests"])  # type: ignore[arg-type]
    assert 10_000 <= kept <= 10_000 + 4096
    want = np.percentile(latencies[-kept:], [50, 95, 99]) * 1000
    assert [summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]] == pytest.approx(list(want))
    assert summary["errors"] == sum(1 for i in range(20_000 - kept, 20_000) if i % 100 == 0)
    # A full collection visits a handful of chunk objects, not one object per request.
    referents = gc.get_referents(*gc.get_referents(window))
    assert len(referents) < 20


def test_samples_of_several_windows_merge_into_the_summary_of_one_that_saw_them_all() -> None:
    """A split's variant pods on KServe: their samples, merged, summarised as one server does."""
    from nstarx_jupyter.monitoring.latency import latency_summary

    now = [0.0]
    rng = np.random.default_rng(1)
    pods = [LatencyWindow(clock=lambda: now[0]), LatencyWindow(clock=lambda: now[0])]
    together = LatencyWindow(clock=lambda: now[0])
    for i, seconds in enumerate(rng.exponential(0.02, 300)):
        now[0] += 0.1
        ok = i % 25 != 0
        pods[i % 3 == 0].record(float(seconds), ok)
        together.record(float(seconds), ok)
    latencies, outcomes = zip(*(pod.samples(60) for pod in pods), strict=True)
    merged = latency_summary(np.concatenate(latencies), np.concatenate(outcomes), 60)
    assert merged == together.summary(60)
    assert merged["requests"] == 300
    assert sum(pod.summary(60)["requests"] for pod in pods) == 300  # type: ignore[misc]
