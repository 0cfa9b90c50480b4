"""Drift statistics: does live traffic still look like the reference data? Pure functions.

Per numeric feature (whole numbers with at most 20 distinct values, such as class labels, are
categorical): the population stability index (PSI, on ten bins cut at the reference's
deciles) and the two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`, live values against
the reference sample). Per categorical feature: the chi-squared test of the 2 x K table of
reference and live counts (`scipy.stats.chi2_contingency`) and the Jensen-Shannon distance
(base 2, in [0, 1]). Per feature with missing values on either side: the change in the missing
rate (Fisher's exact test). The model's predictions are compared the same way (role
`prediction`).

Thresholds (one place, `Thresholds`):

- A test with a p-value flags drift when p < `alpha` / m, m the number of p-value tests in the
  report (Bonferroni): with 20 features an unshifted deployment is flagged by chance in at most
  `alpha` (1 %) of the windows, not in 1 - 0.99^20 = 18 % of them. Its `threshold` field is that
  corrected level, compared with `p_value`.
- PSI flags drift above 0.2 (the usual "significant shift" level) and Jensen-Shannon above 0.1;
  their `threshold` is compared with `score`. Both are biased upwards on small samples, so they
  only flag with at least `min_rows` live rows (200); below that the p-value tests decide alone.
- A missing-rate change flags when Fisher's test is significant (as above) and the rate moved by
  more than 5 points.

A feature is drifted when any of its tests is. The overall `score` is the largest `score /
threshold` of the PSI and Jensen-Shannon rows (1.0: at the threshold), a number that can be
plotted over time; it is what the per-minute rollups keep.

SciPy is imported inside the functions: `import nstarx_jupyter` stays light.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "Column",
    "DriftResult",
    "TestResult",
    "Thresholds",
    "compare",
    "histograms",
    "psi",
]

Kind = Literal["numeric", "categorical"]
Role = Literal["input", "prediction"]
_PSI_BINS = 10
_PSI_EPS = 1e-4
"""Proportions are clipped to this before the log: an empty bin must not make PSI infinite."""
_TOP = 20
"""Categories beyond the reference's 20 most frequent are pooled into one `(other)`."""
_OTHER = "(other)"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a test flags drift (see the module's docstring)."""

    alpha: float = 0.01
    psi: float = 0.2
    js: float = 0.1
    missing_change: float = 0.05
    min_rows: int = 200


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test of one feature."""

    __test__ = False  # not a pytest class

    feature: str
    test: str
    """`psi`, `ks`, `chi2`, `js` or `missing`."""
    statistic: float
    p_value: float | None
    score: float
    """The test's effect size: PSI, the KS distance D, Cramér's V, JS distance, |rate change|."""
    threshold: float
    """Compared with `p_value` for the tests that have one, else with `score`."""
    drifted: bool
    role: Role = "input"


@dataclass(frozen=True, slots=True)
class Column:
    """One feature's values: numbers (NaN missing) or strings (None missing)."""

    kind: Kind
    values: np.ndarray[Any, Any]

    @classmethod
    def of(cls, values: Sequence[Any] | np.ndarray[Any, Any], kind: Kind | None = None) -> Column:
        """A column of `values`; `kind` from the values when not given.

        Numbers are numeric, except whole numbers with at most `_TOP` (20) distinct values
        (class labels, codes, counts): categorical, tested with chi-squared and Jensen-Shannon,
        which fit a handful of values better than KS and deciles do.
        """
        array = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
        if kind is None:
            kind = "numeric" if _numeric(array) else "categorical"
            if kind == "numeric" and _few_whole_numbers(_floats(array)):
                kind = "categorical"
        if kind == "numeric":
            return cls("numeric", _floats(array))
        return cls("categorical", _strings(array))

    @property
    def missing(self) -> int:
        """How many values are missing."""
        if self.kind == "numeric":
            return int(np.count_nonzero(~np.isfinite(self.values)))
        return sum(1 for v in self.values.tolist() if v is None)

    def present(self) -> np.ndarray[Any, Any]:
        """The values that are not missing."""
        if self.kind == "numeric":
            kept: np.ndarray[Any, Any] = self.values[np.isfinite(self.values)]
            return kept
        return np.asarray([v for v in self.values.tolist() if v is not None], dtype=object)


@dataclass(slots=True)
class DriftResult:
    """Every test of a comparison, the overall score and the features that drifted."""

    tests: list[TestResult] = field(default_factory=list)
    score: float | None = None
    live_rows: int = 0

    @property
    def drifted_features(self) -> list[str]:
        """The features with at least one drifted test, in report order."""
        return list(dict.fromkeys(t.feature for t in self.tests if t.drifted))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN never appears: every number is finite or null)."""
        return {"tests": [asdict(t) for t in self.tests], "score": self.score,
                "drifted_features": self.drifted_features}  # fmt: skip


def compare(
    reference: Mapping[str, Column],
    live: Mapping[str, Column],
    *,
    roles: Mapping[str, Role] | None = None,
    thresholds: Thresholds | None = None,
) -> DriftResult:
    """Test every feature of `reference` against the same feature in `live`.

    A feature absent from `live` (or with no live rows) is skipped; the live column is read as
    the reference's kind (a string in a numeric feature counts as missing). `roles` marks the
    prediction columns.
    """
    limits = thresholds or Thresholds()
    roles = roles or {}
    pending: list[tuple[str, str, float, float | None, float, Role]] = []
    live_rows = 0
    for name, ref in reference.items():
        found = live.get(name)
        if found is None or found.values.size == 0 or ref.values.size == 0:
            continue
        role = roles.get(name, "input")
        now = found if found.kind == ref.kind else Column.of(found.values, ref.kind)
        live_rows = max(live_rows, int(now.values.size))
        pending.extend((name, *test, role) for test in _tests(ref, now))
    tested = sum(1 for p in pending if p[3] is not None)
    corrected = limits.alpha / max(1, tested)
    out = DriftResult(live_rows=live_rows)
    sizes = {name: int(live[name].values.size) for name in live}
    ratios: list[float] = []
    for name, test, statistic, p_value, score, role in pending:
        if test == "psi" or test == "js":
            threshold = limits.psi if test == "psi" else limits.js
            drifted = score > threshold and sizes[name] >= limits.min_rows
            ratios.append(score / threshold)
        else:
            threshold = corrected
            drifted = p_value is not None and p_value < corrected
            if test == "missing":
                drifted = drifted and score > limits.missing_change
        out.tests.append(TestResult(name, test, _finite(statistic), _p(p_value), _finite(score),
                                    threshold, bool(drifted), role))  # fmt: skip
    out.score = max(ratios) if ratios else None
    return out


def _tests(ref: Column, live: Column) -> Iterable[tuple[str, float, float | None, float]]:
    """(test, statistic, p-value, score) of one feature."""
    ref_present, live_present = ref.present(), live.present()
    if ref_present.size and live_present.size:
        if ref.kind == "numeric":
            value = psi(ref_present, live_present)
            yield "psi", value, None, value
            yield _ks(ref_present, live_present)
        else:
            yield from _categorical(ref_present, live_present)
    ref_missing, live_missing = ref.missing, live.missing
    if ref_missing or live_missing:
        yield _missing(ref_missing, int(ref.values.size), live_missing, int(live.values.size))


def psi(reference: np.ndarray[Any, Any], live: np.ndarray[Any, Any]) -> float:
    """The population stability index of `live` against `reference` on the reference's deciles.

    Sum over bins of (live% - ref%) * ln(live% / ref%); 0 when the distributions match, above
    0.2 by convention a significant shift. Ties in the reference collapse bins (a feature with
    three values has at most three).
    """
    edges = _inner_edges(reference)
    ref_share = _shares(np.searchsorted(edges, reference, side="right"), edges.size + 1)
    live_share = _shares(np.searchsorted(edges, live, side="right"), edges.size + 1)
    return float(np.sum((live_share - ref_share) * np.log(live_share / ref_share)))


def _inner_edges(reference: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    quantiles = np.quantile(reference, np.linspace(0, 1, _PSI_BINS + 1)[1:-1])
    return np.unique(quantiles)


def _shares(bins: np.ndarray[Any, Any], count: int) -> np.ndarray[Any, Any]:
    counts = np.bincount(bins, minlength=count).astype(np.float64)
    shares: np.ndarray[Any, Any] = np.clip(counts / max(1.0, counts.sum()), _PSI_EPS, None)
    return shares


def _ks(ref: np.ndarray[Any, Any], live: np.ndarray[Any, Any]) -> tuple[str, float, float, float]:
    from scipy.stats import ks_2samp

    found = ks_2samp(ref, live)
    return "ks", float(found.statistic), float(found.pvalue), float(found.statistic)


def _categorical(
    ref: np.ndarray[Any, Any], live: np.ndarray[Any, Any]
) -> Iterable[tuple[str, float, float | None, float]]:
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency

    ref_counts, live_counts = Counter(ref.tolist()), Counter(live.tolist())
    kept = [value for value, _ in ref_counts.most_common(_TOP)]
    table = np.asarray([_counts(ref_counts, kept), _counts(live_counts, kept)], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:  # one category on both sides: nothing can have moved
        yield "chi2", 0.0, 1.0, 0.0
    else:
        found = chi2_contingency(table, correction=False)
        cramers_v = math.sqrt(float(found.statistic) / table.sum() / (min(table.shape) - 1))
        yield "chi2", float(found.statistic), float(found.pvalue), cramers_v
    distance = float(jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum(), base=2))
    yield "js", distance, None, distance


def _counts(counts: Counter[Any], kept: list[Any]) -> list[int]:
    chosen = set(kept)
    other = sum(n for value, n in counts.items() if value not in chosen)
    return [counts.get(value, 0) for value in kept] + [other]


def _missing(ref_missing: int, ref_n: int, live_missing: int,
             live_n: int) -> tuple[str, float, float, float]:  # fmt: skip
    from scipy.stats import fisher_exact

    table = [[ref_missing, ref_n - ref_missing], [live_missing, live_n - live_missing]]
    change = live_missing / max(1, live_n) - ref_missing / max(1, ref_n)
    return "missing", change, float(fisher_exact(table).pvalue), abs(change)


def histograms(reference: Column, live: Column, bins: int = 20) -> dict[str, Any]:
    """Reference and live shares on shared bins, for a chart (categories: the reference's top)."""
    if reference.kind == "numeric":
        ref, now = reference.present(), Column.of(live.values, "numeric").present()
        both = np.concatenate([ref, now])
        if both.size == 0:
            return {"kind": "numeric", "edges": [], "reference": [], "live": []}
        lo, hi = float(np.quantile(both, 0.005)), float(np.quantile(both, 0.995))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        return {"kind": "numeric", "edges": edges.tolist(),
                "reference": _hist_share(ref, edges), "live": _hist_share(now, edges)}  # fmt: skip
    ref_counts = Counter(reference.present().tolist())
    live_counts = Counter(Column.of(live.values, "categorical").present().tolist())
    kept = [value for value, _ in ref_counts.most_common(_TOP)]
    ref_row, live_row = _counts(ref_counts, kept), _counts(live_counts, kept)
    return {"kind": "categorical", "categories": [*kept, _OTHER],
            "reference": _share(ref_row), "live": _share(live_row)}  # fmt: skip


def _hist_share(values: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]) -> list[float]:
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return _share(counts.tolist())


def _share(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _numeric(values: np.ndarray[Any, Any]) -> bool:
    if values.dtype.kind in "biuf":
        return True
    present = [v for v in values.tolist() if v is not None]
    return bool(present) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in present
    )


def _few_whole_numbers(values: np.ndarray[Any, Any]) -> bool:
    finite = values[np.isfinite(values)]
    return (
        bool(finite.size)
        and bool(np.all(finite == np.round(finite)))
        and (np.unique(finite).size <= _TOP)
    )


def _floats(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    out = np.empty(values.size, dtype=np.float64)
    for i, value in enumerate(values.tolist()):
        try:
            out[i] = float(value)
        except (TypeError, ValueError):  # None, text in a numeric feature: missing
            out[i] = math.nan
    return out


def _strings(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    out = np.empty(values.size, dtype=object)
    for i, value in enumerate(values.tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[i] = None
        elif isinstance(value, bytes):
            out[i] = value.decode("utf-8", "replace")
        elif isinstance(value, float) and value.is_integer():
            out[i] = str(int(value))  # 1.0 and 1 are the same category
        else:
            out[i] = str(value)
    return out


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _p(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
