"""A/B statistics checked against statsmodels and scipy on known data, and the report's verdicts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from nstarx_jupyter.errors import ConflictError, InvalidInputError, NotFoundError
from nstarx_jupyter.monitoring.abtest import (
    ab_report,
    compare_latency,
    compare_means,
    compare_proportions,
    sample_size_means,
    sample_size_proportions,
)
from nstarx_jupyter.traffic import Logged, RequestLog


@pytest.mark.parametrize(("x", "n"), [((120, 150), (1000, 1000)), ((30, 41), (400, 380)),
                                      ((5, 5), (50, 60))])  # fmt: skip
def test_two_proportions_match_statsmodels(x: tuple[int, int], n: tuple[int, int]) -> None:
    ours = compare_proportions("conversion", x, n, minimum_effect=0.05)
    _, p_ref = proportions_ztest(np.array([x[1], x[0]]), np.array([n[1], n[0]]))
    low, high = confint_proportions_2indep(x[1], n[1], x[0], n[0], method="wald")
    assert ours.p_value == pytest.approx(p_ref, rel=1e-9)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((low, high))
    assert ours.difference == pytest.approx(x[1] / n[1] - x[0] / n[0])


def test_welch_matches_scipy_and_statsmodels() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(10, 2, 900), rng.normal(10.6, 3, 800)
    ours = compare_means("reward", a, b)
    assert ours.p_value == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue)
    low, high = CompareMeans(DescrStatsW(b), DescrStatsW(a)).tconfint_diff(usevar="unequal")
    assert (ours.ci_low, ours.ci_high) == pytest.approx((low, high))
    assert ours.needed_per_arm == 393  # a fifth of the control's sd by default
    assert ours.verdict.startswith("better reward")


def test_latency_uses_mann_whitney() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(0, 0.5, 400), rng.lognormal(0.3, 0.5, 400)
    ours = compare_latency(a, b)
    assert ours.p_value == pytest.approx(stats.mannwhitneyu(b, a).pvalue)
    assert ours.verdict.startswith("worse latency")  # slower is worse
    assert ours.ci_low is not None
    assert ours.ci_low < ours.difference < ours.ci_high  # type: ignore[operator]


def test_planned_sample_sizes_match_the_textbook() -> None:
    assert sample_size_proportions(0.10, 0.02) == 3841  # 10 % -> 12 %, alpha 5 %, power 80 %
    reference = NormalIndPower().solve_power(effect_size=0.2, alpha=0.05, power=0.8)
    assert sample_size_means(1.0, 0.2) == math.ceil(reference)
    assert sample_size_proportions(0.1, 0.0) is None


def test_an_early_significant_look_says_keep_collecting() -> None:
    early = compare_proportions("conversion", (2, 12), (40, 40), minimum_effect=0.05)
    assert early.p_value is not None
    assert early.p_value < 0.01
    assert early.verdict.startswith("keep collecting: 40 of the")
    later = compare_proportions("conversion", (100, 160), (1000, 1000), minimum_effect=0.05)
    assert later.verdict.startswith("better conversion")
    same = compare_proportions("conversion", (100, 104), (2000, 2000), minimum_effect=0.05)
    assert same.verdict == "no significant difference in conversion"
    assert compare_proportions("x", (0, 0), (0, 5)).verdict == "not enough data"


@dataclass
class _Entry:
    seconds: float
    ok: bool
    outcome: float | None


def test_the_report_tests_each_variant_against_the_control() -> None:
    rng = np.random.default_rng(1)
    groups = {
        "stable": [_Entry(0.002, True, float(rng.random() < 0.10)) for _ in range(4000)],
        "canary": [_Entry(0.003, i % 50 != 0, float(rng.random() < 0.14)) for i in range(4000)],
    }
    report = ab_report(groups, "stable", minimum_effect=0.02)
    tests = {t["metric"]: t for t in report["comparisons"]["canary"]}
    assert set(tests) == {"error rate", "latency", "outcome rate"}
    assert tests["error rate"]["variant"] == pytest.approx(0.02)
    assert tests["outcome rate"]["verdict"].startswith("better outcome rate")
    assert report["variants"]["canary"]["errors"] == 80
    assert report["variants"]["stable"]["p50_ms"] == pytest.approx(2.0)
    assert report["verdict"].startswith("canary: ")
    assert ab_report({"canary": groups["canary"]}, "stable")["verdict"].startswith("no requests")


def test_feedback_finds_its_request_and_scores_labels() -> None:
    log = RequestLog(keep=3)
    for i in range(4):
        log.record(f"r{i}", Logged("1", 0.0, 0.001, True, prediction="setosa"))
    with pytest.raises(NotFoundError, match="among the last 3"):
        log.feedback("r0", value=1)  # the oldest fell out
    assert log.feedback("r1", label="setosa").outcome == 1.0
    assert log.feedback("r2", label="virginica").outcome == 0.0
    assert log.feedback("r3", value=True).outcome == 1.0
    with pytest.raises(ConflictError):
        log.feedback("r3", value=0.5)
    log.record("r4", Logged("1", 0.0, 0.001, True))
    for bad in ({"value": "high"}, {"value": float("nan")}, {}, {"value": 1, "label": "x"}):
        with pytest.raises(InvalidInputError):
            log.feedback("r4", **bad)
    with pytest.raises(InvalidInputError, match="no single prediction"):
        log.feedback("r4", label="setosa")


def test_a_full_request_log_gives_the_collector_nothing_to_walk_per_entry() -> None:
    import gc

    log = RequestLog(keep=1000)
    for i in range(1500):
        log.record(f"r{i}", Logged("1", float(i), 0.001, True, prediction=i % 3))
    assert len(log) == 1000
    assert [Logged._make(row).at for row in log.rows(1499.0)] == [1499.0]
    gc.collect()
    rows = list(log._entries.values())
    assert not any(gc.is_tracked(row) for row in rows)  # plain tuples of plain values
    assert log.feedback("r1499", label=2).outcome == 1.0  # 1499 % 3 == 2: right
    assert log.feedback("r1498", label=2).outcome == 0.0
    gc.collect()
    assert not gc.is_tracked(log._entries["r1499"])
