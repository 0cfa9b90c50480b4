"""The canary analysis' decision rule, judged on fixed figures (no server, no timing)."""

from __future__ import annotations

from typing import Any

import pytest

from nstarx_jupyter.notebook.analysis import AnalysisPolicy, CanaryAnalysis


def _decide(policy: AnalysisPolicy, canary: dict[str, Any], stable: dict[str, Any]) -> str:
    analysis = CanaryAnalysis.__new__(CanaryAnalysis)  # the rule needs no deployment
    analysis.policy = policy
    step = analysis._decide(20, canary, stable)
    return f"{step.decision}: {step.reason}"


@pytest.mark.parametrize(
    ("canary_p99", "verdict"),
    [(3.0, "next"), (9.9, "next"), (10.1, "rollback: p99 10.1 ms over the 10.0 ms allowed")],
)
def test_p99_may_be_the_ratio_times_stable_plus_the_slack(canary_p99: float, verdict: str) -> None:
    policy = AnalysisPolicy(max_p99_ratio=1.5, p99_slack_ms=4.0)
    got = _decide(policy, {"p99_ms": canary_p99, "error_rate": 0.0},
                  {"p99_ms": 4.0, "error_rate": 0.0})  # fmt: skip
    assert got.startswith(verdict)


def test_an_error_rate_over_the_margin_rolls_back_before_latency_is_read() -> None:
    policy = AnalysisPolicy(max_error_rate_increase=0.01)
    got = _decide(policy, {"p99_ms": 1.0, "error_rate": 0.05}, {"p99_ms": 1.0, "error_rate": 0.02})
    assert got == "rollback: error rate 5.00% vs 2.00% on stable"
    assert _decide(policy, {"error_rate": 0.025}, {"error_rate": 0.02}).startswith("next")


def test_missing_latency_on_either_side_does_not_fail_a_step() -> None:
    assert _decide(AnalysisPolicy(), {"p99_ms": 900.0}, {}).startswith("next")
