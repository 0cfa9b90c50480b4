"""A/B statistics: which variant is better, how sure we are, and how much data is still needed.

Each comparison is a variant against the control (the stable revision, or `primary`):

- error rates and binary outcomes (conversions, correct predictions): the two-proportion z-test
  (pooled, as `statsmodels.stats.proportion.proportions_ztest`), with a Wald interval for the
  difference;
- continuous outcomes (rewards): Welch's t-test (`scipy.stats.ttest_ind(equal_var=False)`),
  with a Welch-Satterthwaite interval for the difference of means;
- latency: the Mann-Whitney U test (`scipy.stats.mannwhitneyu`), which does not assume the
  long-tailed latencies are normal.

Peeking is handled by planning: each test knows the sample size its minimum effect needs (at the
given alpha and power); before a variant reaches it, the verdict is "keep collecting" however small
the p-value, because stopping at the first significant look inflates false positives.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "Comparison",
    "ab_report",
    "compare_latency",
    "compare_means",
    "compare_proportions",
    "sample_size_means",
    "sample_size_proportions",
]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One metric, one variant against the control."""

    metric: str
    test: str
    control: float | None
    """The control's rate, mean or median."""
    variant: float | None
    difference: float | None
    """Variant minus control."""
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_control: int
    n_variant: int
    needed_per_arm: int | None
    """Sample per arm the minimum effect needs at the chosen alpha and power."""
    verdict: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}  # fmt: skip


def _z(q: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(q))


def sample_size_proportions(
    baseline: float, minimum_effect: float, *, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Per-arm sample to detect an absolute change `minimum_effect` from `baseline` (two-sided)."""
    p1 = min(max(baseline, 1e-9), 1 - 1e-9)
    p2 = min(max(baseline + minimum_effect, 1e-9), 1 - 1e-9)
    if minimum_effect == 0:
        return None
    pooled = (p1 + p2) / 2
    top = (_z(1 - alpha / 2) * math.sqrt(2 * pooled * (1 - pooled))
           + _z(power) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))  # fmt: skip
    return math.ceil(top**2 / (p2 - p1) ** 2)


def sample_size_means(
    sd: float, minimum_effect: float, *, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Per-arm sample to detect a change `minimum_effect` in a mean with spread `sd`."""
    if minimum_effect == 0 or not math.isfinite(sd):
        return None
    return math.ceil(2 * ((_z(1 - alpha / 2) + _z(power)) * sd / minimum_effect) ** 2)


def _verdict(p: float | None, n: int, needed: int | None, difference: float | None,
             alpha: float, higher_is_better: bool, metric: str) -> str:  # fmt: skip
    if p is None or difference is None:
        return "not enough data"
    if needed is not None and n < needed:
        return f"keep collecting: {n} of the {needed} planned per arm"
    if p >= alpha:
        return f"no significant difference in {metric}"
    better = (difference > 0) == higher_is_better
    return f"{'better' if better else 'worse'} {metric} (p={p:.3g})"


def compare_proportions(
    metric: str, successes: tuple[int, int], totals: tuple[int, int], *, alpha: float = 0.05,
    power: float = 0.8, minimum_effect: float = 0.05, higher_is_better: bool = True,
) -> Comparison:  # fmt: skip
    """Two-proportion z-test of the variant's rate against the control's (index 0)."""
    (x0, x1), (n0, n1) = successes, totals
    if n0 == 0 or n1 == 0:
        return Comparison(metric, "two-proportion z", None, None, None, None, None, None, n0, n1,
                          None, "not enough data")  # fmt: skip
    p0, p1 = x0 / n0, x1 / n1
    pooled = (x0 + x1) / (n0 + n1)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    from scipy import stats

    if se_pooled == 0:
        p_value = 1.0 if p0 == p1 else 0.0
    else:
        p_value = float(2 * stats.norm.sf(abs((p1 - p0) / se_pooled)))
    se = math.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
    z = _z(1 - alpha / 2)
    needed = sample_size_proportions(p0, minimum_effect, alpha=alpha, power=power)
    verdict = _verdict(p_value, min(n0, n1), needed, p1 - p0, alpha, higher_is_better, metric)
    return Comparison(metric, "two-proportion z", p0, p1, p1 - p0, p1 - p0 - z * se,
                      p1 - p0 + z * se, p_value, n0, n1, needed, verdict)  # fmt: skip


def compare_means(
    metric: str, control: np.ndarray[Any, Any], variant: np.ndarray[Any, Any], *,
    alpha: float = 0.05, power: float = 0.8, minimum_effect: float | None = None,
    higher_is_better: bool = True,
) -> Comparison:  # fmt: skip
    """Welch's t-test of the variant's mean against the control's.

    `minimum_effect` defaults to a fifth of the control's standard deviation (a small effect).
    """
    a, b = np.asarray(control, dtype=float), np.asarray(variant, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return Comparison(metric, "Welch t", None, None, None, None, None, None, len(a), len(b),
                          None, "not enough data")  # fmt: skip
    from scipy import stats

    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(b.mean() - a.mean())
    if va + vb == 0:
        p_value, low, high = (1.0 if diff == 0 else 0.0), diff, diff
    else:
        p_value = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        half = float(stats.t.ppf(1 - alpha / 2, df)) * math.sqrt(va + vb)
        low, high = diff - half, diff + half
    sd = float(a.std(ddof=1))
    effect = minimum_effect if minimum_effect is not None else sd / 5
    needed = sample_size_means(sd, effect, alpha=alpha, power=power) if effect else None
    verdict = _verdict(p_value, min(len(a), len(b)), needed, diff, alpha, higher_is_better,
                       metric)  # fmt: skip
    return Comparison(metric, "Welch t", float(a.mean()), float(b.mean()), diff, low, high,
                      p_value, len(a), len(b), needed, verdict)  # fmt: skip


def compare_latency(
    control: np.ndarray[Any, Any], variant: np.ndarray[Any, Any], *, alpha: float = 0.05,
    minimum_n: int = 100,
) -> Comparison:  # fmt: skip
    """Mann-Whitney U on latencies (ms); the medians and their difference are reported."""
    a, b = np.asarray(control, dtype=float), np.asarray(variant, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return Comparison("latency", "Mann-Whitney U", None, None, None, None, None, None,
                          len(a), len(b), minimum_n, "not enough data")  # fmt: skip
    from scipy import stats

    p_value = float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
    ma, mb = float(np.median(a)), float(np.median(b))
    low, high = _median_difference_interval(a, b, alpha)
    verdict = _verdict(p_value, min(len(a), len(b)), minimum_n, mb - ma, alpha, False,
                       "latency")  # fmt: skip
    return Comparison("latency", "Mann-Whitney U", ma, mb, mb - ma, low, high, p_value, len(a),
                      len(b), minimum_n, verdict)  # fmt: skip


def _median_difference_interval(
    a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], alpha: float, resamples: int = 400
) -> tuple[float, float]:
    """A bootstrap interval for median(b) - median(a) (seeded: the report is reproducible)."""
    rng = np.random.default_rng(0)
    a = a if len(a) <= 5000 else rng.choice(a, 5000, replace=False)
    b = b if len(b) <= 5000 else rng.choice(b, 5000, replace=False)
    ia = rng.integers(0, len(a), (resamples, len(a)))
    ib = rng.integers(0, len(b), (resamples, len(b)))
    diffs = np.median(b[ib], axis=1) - np.median(a[ia], axis=1)
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def ab_report(
    groups: dict[str, list[Any]], control: str, *, alpha: float = 0.05, power: float = 0.8,
    minimum_effect: float = 0.05,
) -> dict[str, Any]:  # fmt: skip
    """The A/B report of logged requests grouped by variant name.

    Items have `seconds`, `ok` and `outcome`. The report holds per-variant figures, then each
    variant's tests against `control`, and a plain verdict.
    """
    summaries = {name: _summary(entries) for name, entries in groups.items()}
    out: dict[str, Any] = {"control": control, "alpha": alpha, "power": power,
                           "minimum_effect": minimum_effect, "variants": summaries,
                           "comparisons": {}}  # fmt: skip
    base = groups.get(control)
    if base is None:
        out["verdict"] = f"no requests for the control '{control}' yet"
        return out
    verdicts = []
    for name, entries in groups.items():
        if name == control:
            continue
        tests = _compare(base, entries, alpha, power, minimum_effect)
        out["comparisons"][name] = [test.to_json() for test in tests]
        verdicts.append(f"{name}: " + "; ".join(test.verdict for test in tests))
    out["verdict"] = " | ".join(verdicts) or "only the control has requests"
    return out


def _summary(entries: list[Any]) -> dict[str, Any]:
    latencies = np.fromiter((e.seconds * 1000 for e in entries), dtype=float)
    errors = sum(1 for e in entries if not e.ok)
    outcomes = [e.outcome for e in entries if e.outcome is not None]
    summary: dict[str, Any] = {
        "requests": len(entries),
        "errors": errors,
        "error_rate": errors / len(entries) if entries else None,
        "feedback": len(outcomes),
        "outcome_mean": float(np.mean(outcomes)) if outcomes else None,
    }
    if len(latencies):
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
        summary.update(p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99))
    return summary


def _compare(
    base: list[Any], other: list[Any], alpha: float, power: float, minimum_effect: float
) -> list[Comparison]:
    tests = [
        compare_proportions(
            "error rate", (sum(not e.ok for e in base), sum(not e.ok for e in other)),
            (len(base), len(other)), alpha=alpha, power=power,
            minimum_effect=max(minimum_effect / 5, 0.001), higher_is_better=False,
        ),
        compare_latency(np.fromiter((e.seconds * 1000 for e in base if e.ok), dtype=float),
                        np.fromiter((e.seconds * 1000 for e in other if e.ok), dtype=float),
                        alpha=alpha),
    ]  # fmt: skip
    a = np.array([e.outcome for e in base if e.outcome is not None], dtype=float)
    b = np.array([e.outcome for e in other if e.outcome is not None], dtype=float)
    if len(a) or len(b):
        binary = bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
        if binary:
            tests.append(compare_proportions(
                "outcome rate", (int(a.sum()), int(b.sum())), (len(a), len(b)), alpha=alpha,
                power=power, minimum_effect=minimum_effect,
            ))  # fmt: skip
        else:
            # a reward's scale is the model's own: plan for a small effect (a fifth of its sd)
            tests.append(compare_means("outcome", a, b, alpha=alpha, power=power))
    return tests
