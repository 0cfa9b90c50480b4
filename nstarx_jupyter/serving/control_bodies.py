"""The control API's JSON bodies (`/nstarx/v1`) as pydantic models, for the OpenAPI document.

Key requests, the price table's body, drift and explanations. The data plane's bodies and the
bases are in `bodies`; the answers both the server and its clients use (keys, access rules,
audit records, metrics, variants, events, cost, prices, trends) are in `protocol.control`, a
deployment's (`DeploymentView`) in `deployment.backend`, a pipeline's and an inference graph's
in `pipelines.served`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from nstarx_jupyter.serving.bodies import ClosedBody, OpenBody

__all__ = [
    "AbReport",
    "DriftReferenceBody",
    "DriftReferenceView",
    "DriftTest",
    "DriftView",
    "DriftWindow",
    "ExplainBody",
    "ExplainView",
    "ExplainedRow",
    "FeatureImportance",
    "ImportanceView",
    "KeyCreateRequest",
    "KeyRotateRequest",
    "LogNote",
    "PricesBody",
]


class AbReport(OpenBody):
    """Each variant tested against the control (error rate, latency, outcomes)."""

    name: str
    window_s: float | None = None


class LogNote(OpenBody):
    """A note for a deployment's event log (one line of 2000 characters at most)."""

    text: str = Field(min_length=1, max_length=2000)


class KeyCreateRequest(ClosedBody):
    """A new API key: scopes (`predict:NAME`, `manage:NAME`, `metrics`, `admin`), limits."""

    name: str = ""
    scopes: list[str] | None = Field(default=None, min_length=1)
    deployments: list[str] | None = Field(default=None, min_length=1)
    """The older name of `scopes`."""
    expires: float | None = None
    """Epoch seconds."""
    expires_in_s: float | None = Field(default=None, gt=0)
    rate_limit: float | None = Field(default=None, gt=0)
    """Requests per second."""
    burst: int | None = Field(default=None, gt=0)
    deployment: str | None = None
    """The deployment whose deploy mints the key: deleting that deployment revokes it."""


class KeyRotateRequest(OpenBody):
    """How long the old key keeps working after a rotation (body optional)."""

    grace_s: float | None = Field(default=None, ge=0)


# -- resource use, cost, trends (issue 19) ---------------------------------------------------------


class PricesBody(ClosedBody):
    """`PUT /prices`: what an hour of each resource costs (answered as `control.PriceTable`)."""

    cpu_hour: float = Field(default=0.04048, ge=0)
    gb_hour: float = Field(default=0.004445, ge=0)
    gpu_hour: float = Field(default=0.526, ge=0)
    currency: str = Field(default="USD", min_length=1, max_length=500)
    source: str = Field(default="set by the user", min_length=1, max_length=500)


class DriftTest(OpenBody):
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


class DriftReferenceView(OpenBody):
    """What a deployment's drift is measured against (`source: none`: nothing yet)."""

    source: str
    """`data` (the notebook's `reference_data`), `registry`, `window` (past traffic), `none`."""
    rows: int
    features: list[str]
    predictions: str | None
    """Where the predictions' reference comes from: `reference`, `first window` or null."""
    created: float | None


class DriftView(OpenBody):
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
    histograms: dict[str, dict[str, Any]]
    """Per feature, reference and live shares on shared bins (`edges` or `categories`)."""


class DriftWindow(ClosedBody):
    """Past live traffic as the reference: from `since_s` to `until_s` seconds ago."""

    since_s: float = Field(gt=0, le=21600)
    until_s: float = Field(default=0, ge=0)


class DriftReferenceBody(OpenBody):
    """`PUT .../drift/reference`: a sample of the reference data, or a window of past traffic."""

    columns: dict[str, list[float | str | None]] | None = Field(default=None, max_length=256)
    """Each feature's values (at most 10,000 rows, all columns alike)."""
    predictions: list[float | str | None] | None = None
    source: str | None = None
    window: DriftWindow | None = None


class ExplainBody(ClosedBody):
    """`POST .../explain`: rows to explain (lists in feature order, or objects by feature)."""

    rows: list[list[float | None] | dict[str, float | None]] = Field(min_length=1, max_length=100)
    class_: str | None = Field(default=None, alias="class")
    """The class explained for every row (default: each row's predicted class)."""


class ExplainedRow(OpenBody):
    """One row's explanation: `base + sum(shap) == value`, the model's output explained."""

    output: str
    """The output explained (a class label, or `output`)."""
    base: float
    value: float
    shap: list[float]
    """One SHAP value per feature, in `features` order."""


class ExplainView(OpenBody):
    """`POST .../explain`: SHAP values per row, with the explainer that computed them."""

    name: str
    version: str
    explainer: Literal["tree", "linear", "kernel"]
    space: Literal["probability", "log-odds", "raw"]
    """What the explained output is: a class probability, its log-odds or margin, a value."""
    features: list[str]
    outputs: list[str]
    rows: list[ExplainedRow]
    seconds: float


class FeatureImportance(OpenBody):
    """One feature's mean |SHAP value| over a window's sampled live rows."""

    feature: str
    importance: float
    rank: int


class ImportanceView(OpenBody):
    """`GET .../importance`: mean |SHAP value| per feature over live traffic, largest first."""

    name: str
    window_s: float
    computed_at: float
    rows: int
    """Sampled live rows explained (at most 200; 50 for the kernel explainer)."""
    status: Literal["ok", "no traffic"]
    explainer: Literal["tree", "linear", "kernel"] | None
    space: Literal["probability", "log-odds", "raw"] | None
    features: list[FeatureImportance]
