"""The control API's analysis answers: drift, explanations and the A/B report, on both ends.

The server builds them (`serving/drift_api.py`, `serving/explain_api.py`, `serving/control_api.py`)
and `LocalBackend` parses them, as the other answers in `protocol.control` (which re-exports
these). Fields are in the order the server always sent them, so the JSON is unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nstarx_jupyter.protocol._answer import Answer, absent

__all__ = [
    "AbComparison",
    "AbReport",
    "AbVariantSummary",
    "DriftHistogram",
    "DriftReferenceView",
    "DriftTest",
    "DriftView",
    "ExplainRows",
    "ExplainView",
    "ExplainedRow",
    "FeatureImportance",
    "ImportanceView",
]

Explainer = Literal["tree", "linear", "kernel"]
Space = Literal["probability", "log-odds", "raw"]
"""What an explained output is: a class probability, its log-odds or margin, a value."""

# -- drift -------------------------------------------------------------------------------------


class DriftTest(Answer):
    """One test of one feature.

    `threshold` is compared with `p_value` when there is one, else with `score`.
    """

    feature: str
    test: Literal["psi", "ks", "chi2", "js", "missing"]
    statistic: float
    p_value: float | None
    score: float
    threshold: float
    drifted: bool
    role: Literal["input", "prediction"]


class DriftReferenceView(Answer):
    """What a deployment's drift is measured against (`source: none`: nothing yet)."""

    source: str
    """`data` (the notebook's `reference_data`), `registry`, `window` (past traffic), `none`."""
    rows: int
    features: list[str]
    predictions: str | None
    """Where the predictions' reference comes from: `reference`, `first window` or null."""
    created: float | None


class DriftHistogram(Answer):
    """One feature's reference and live shares on shared bins, for a chart.

    Numeric features have `edges` (one more than the shares), categorical ones `categories`
    (the reference's most common, then `other`); the other is left out.
    """

    kind: Literal["numeric", "categorical"]
    edges: list[float] | None = Field(default=None, exclude_if=absent)
    categories: list[str | bool | int | float | None] | None = Field(
        default=None, exclude_if=absent
    )
    reference: list[float]
    live: list[float]


class DriftView(Answer):
    """`GET .../drift`: every feature's tests over a window of sampled live rows."""

    name: str
    window_s: float
    computed_at: float
    rows: int
    """Sampled rows in the window (what was tested)."""
    seen: int
    """Rows offered to the sample in the window."""
    status: Literal["ok", "drift", "no reference", "no traffic"]
    score: float | None
    """The largest score / threshold of the PSI and Jensen-Shannon tests (1: at threshold)."""
    drifted: list[str]
    features: list[DriftTest]
    reference: DriftReferenceView | None
    reference_source: str
    predictions_reference: str | None
    not_in_traffic: list[str]
    histograms: dict[str, DriftHistogram]
    """Per feature, reference and live shares on shared bins."""


# -- explanations ------------------------------------------------------------------------------


ExplainRows = list[list[float | None] | dict[str, float | None]]
"""`POST .../explain`'s rows (at most 100): lists in feature order, or objects by feature."""


class ExplainedRow(Answer):
    """One row's explanation: `base + sum(shap) == value`, the model's output explained."""

    output: str
    """The output explained (a class label, or `output`)."""
    base: float
    value: float
    shap: list[float]
    """One SHAP value per feature, in `features` order."""


class ExplainView(Answer):
    """`POST .../explain`: SHAP values per row, with the explainer that computed them."""

    name: str
    version: str
    explainer: Explainer
    space: Space
    features: list[str]
    outputs: list[str]
    rows: list[ExplainedRow]
    seconds: float


class FeatureImportance(Answer):
    """One feature's mean |SHAP value| over a window's sampled live rows."""

    feature: str
    importance: float
    rank: int


class ImportanceView(Answer):
    """`GET .../importance`: mean |SHAP value| per feature over live traffic, largest first."""

    name: str
    window_s: float
    computed_at: float
    rows: int
    """Sampled live rows explained (at most 200; 50 for the kernel explainer)."""
    status: Literal["ok", "no traffic"]
    explainer: Explainer | None
    space: Space | None
    features: list[FeatureImportance]


# -- the A/B report ----------------------------------------------------------------------------


class AbVariantSummary(Answer):
    """One variant's logged requests: counts, error rate, feedback and latency (ms)."""

    requests: int
    errors: int
    error_rate: float | None
    feedback: int
    """Requests with an outcome (feedback) logged."""
    outcome_mean: float | None
    p50_ms: float | None = Field(default=None, exclude_if=absent)
    """Left out, as p95 and p99, without requests."""
    p95_ms: float | None = Field(default=None, exclude_if=absent)
    p99_ms: float | None = Field(default=None, exclude_if=absent)


class AbComparison(Answer):
    """One metric, one variant against the control (`monitoring.abtest.Comparison`)."""

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


class AbReport(Answer):
    """`GET .../ab`: each variant tested against the control (error rate, latency, outcomes)."""

    name: str
    window_s: float | None
    """None: the whole request log."""
    control: str
    alpha: float
    power: float
    minimum_effect: float
    variants: dict[str, AbVariantSummary]
    comparisons: dict[str, list[AbComparison]]
    """Per variant other than the control, its tests."""
    verdict: str
