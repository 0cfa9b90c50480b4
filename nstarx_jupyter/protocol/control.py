"""The control API's answers (`/nstarx/v1`) as pydantic models, for the server and its clients.

The server builds its answers from these models (so `/openapi.json` shows their schemas), and
`LocalBackend` parses what it receives into them, so a malformed answer fails where it enters,
naming the field. Here: API keys, access rules, audit records, a deployment's figures
(`metrics`: the latency summary of `monitoring/latency.py` with resource use, and what a KServe
split's pods sum to; `variants`), and its cost, the price table and its per-minute trends
(`cost`, `prices`, `history`), batch jobs. The analyses (drift, explanations, the A/B report)
are in `protocol.analysis`, re-exported here: this module names every control-API answer.

Answers keep fields a newer server adds (`extra="allow"`). A field the server leaves out when it
has no value (a key's expiry, a shadow's last error) is `None` here and left out again on dump
(`exclude_if`), so the JSON on the wire is the same whichever side dumps it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from nstarx_jupyter.protocol._answer import Answer
from nstarx_jupyter.protocol._answer import absent as _absent
from nstarx_jupyter.protocol.analysis import (
    AbComparison,
    AbReport,
    AbVariantSummary,
    DriftHistogram,
    DriftReferenceView,
    DriftTest,
    DriftView,
    ExplainedRow,
    ExplainView,
    FeatureImportance,
    ImportanceView,
)

__all__ = [
    "AbComparison",
    "AbReport",
    "AbVariantSummary",
    "AccessRule",
    "AccessRules",
    "Answer",
    "AuditRow",
    "AuditRows",
    "CostFigures",
    "DeploymentCost",
    "DeploymentFigures",
    "DeploymentHistory",
    "DeploymentLogs",
    "DeploymentMetrics",
    "DeploymentVariants",
    "DriftHistogram",
    "DriftReferenceView",
    "DriftTest",
    "DriftView",
    "ExplainView",
    "ExplainedRow",
    "FeatureImportance",
    "GpuDevice",
    "ImportanceView",
    "JobFormat",
    "JobList",
    "JobState",
    "JobView",
    "KeyCreated",
    "KeyList",
    "KeyRecord",
    "KeyRotated",
    "KeyState",
    "LatencySamples",
    "LatencySummary",
    "Permission",
    "PriceTable",
    "ResourceTotals",
    "Resources",
    "ServerProcess",
    "ShadowFigures",
    "SplitMetrics",
    "SplitVariantFigures",
    "TrendRow",
    "VariantCost",
    "VariantFigures",
    "VersionResources",
]

KeyState = Literal["active", "expired", "revoked"]
Permission = Literal["read", "deploy", "call"]
"""What a registry model's access rules grant."""
Who = Annotated[str, Field(min_length=1)]


# -- keys, access rules, audit -----------------------------------------------------------------


class KeyRecord(Answer):
    """What the server keeps about a key: never the key itself."""

    id: str
    prefix: str
    """`nsx_<id>`: enough to recognise the key, useless to call with."""
    name: str
    scopes: list[str]
    created: float
    state: KeyState
    expires: float | None = Field(default=None, exclude_if=_absent)
    rate_limit: float | None = Field(default=None, exclude_if=_absent)
    """Requests per second."""
    burst: int | None = Field(default=None, exclude_if=_absent)
    revoked: float | None = Field(default=None, exclude_if=_absent)
    """When the key stops (stopped) working; later than now during a rotation's grace period."""
    rotated_to: str | None = Field(default=None, exclude_if=_absent)
    """The id of the key that replaced this one."""
    deployment: str | None = Field(default=None, exclude_if=_absent)
    """The deployment whose deploy minted the key (deleting it revokes the key)."""


class KeyList(RootModel[list[KeyRecord]]):
    """Every key's record."""


class KeyCreated(KeyRecord):
    """A new key's record and the key, shown this once."""

    key: str


class KeyRotated(KeyCreated):
    """The new key and the prefix of the one it replaces."""

    replaces: str


class AccessRule(BaseModel):
    """Who may `read`, `deploy` or `call` a registry model: key names, ids, or `*` (null lifts).

    Both a body (`PUT /access/{model}`, which refuses other fields) and an answer, in which a
    permission that is not restricted is left out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    read: list[Who] | None = Field(default=None, exclude_if=_absent)
    deploy: list[Who] | None = Field(default=None, exclude_if=_absent)
    call: list[Who] | None = Field(default=None, exclude_if=_absent)


class AccessRules(RootModel[dict[str, AccessRule]]):
    """Every registry model's access rule."""


class AuditRow(Answer):
    """One audit record: who called what, when and with which outcome."""

    ts: float
    """When, in epoch seconds."""
    key: str
    """The key id, `admin` for the admin token, `-` when anonymous."""
    principal: str
    action: str
    transport: str
    """`rest`, `v1`, `v2`, `grpc`, `stream` or `control`."""
    model: str
    version: str
    status: int
    latency_ms: float
    request_id: str
    client: str


class AuditRows(RootModel[list[AuditRow]]):
    """Audit records, oldest first."""


# -- a deployment's figures --------------------------------------------------------------------


class LatencySummary(Answer):
    """Requests, rate, errors and exact latency percentiles (ms) over the last `window_s` s."""

    window_s: float
    requests: int
    rps: float
    errors: int
    error_rate: float
    p50_ms: float | None
    """None (null) without requests in the window, as p95 and p99."""
    p95_ms: float | None
    p99_ms: float | None


class ServerProcess(Answer):
    """The server process: its pid, resident memory, threads and CPU seconds so far."""

    pid: int
    rss_bytes: int
    threads: int
    cpu_s: float


class VersionResources(Answer):
    """One model version's resource use: CPU in its predict calls, memory, threads, GPU."""

    version: str
    isolated: bool
    """In a worker process of its own (its pid, memory and threads), else in the server's."""
    pid: int | None
    cpu_s: float
    calls: int
    rss_bytes: int
    shared: bool
    """Its memory is an even share of the server's (models in one process cannot be told apart)."""
    threads: int
    gpu_memory_bytes: int | None
    """None without a GPU."""


class GpuDevice(Answer):
    """One GPU now: utilisation (0-1) and memory used and total."""

    index: int
    utilization: float
    memory_used_bytes: int
    memory_total_bytes: int


class ResourceTotals(Answer):
    """CPU seconds so far and resident memory now, in all: what every backend can sum."""

    cpu_s: float
    rss_bytes: int


class Resources(ResourceTotals):
    """A deployment's resource use now, per version, and the server process's."""

    versions: list[VersionResources]
    server: ServerProcess
    gpus: list[GpuDevice]
    gpu_note: str | None
    """Why there are no GPU figures (no NVML, no GPU), or None."""


class LatencySamples(Answer):
    """Each request of the window: its latency (s) and whether it succeeded, in one order."""

    latency_s: list[float]
    ok: list[bool]


class DeploymentFigures(LatencySummary):
    """A deployment's recent requests, latency and resource totals: what `Backend.metrics` gives.

    The local server's (and a KServe pod's) are `DeploymentMetrics`, a KServe split's
    `SplitMetrics`.
    """

    name: str
    resources: ResourceTotals


class DeploymentMetrics(DeploymentFigures):
    """`GET .../metrics`: a deployment's recent requests and latency, and its resource use."""

    resources: Resources
    samples: LatencySamples | None = Field(default=None, exclude_if=_absent)
    """With `?samples=true`, for a client that merges several servers' requests."""


class VariantFigures(LatencySummary):
    """One variant (a model version) of a deployment: its share of traffic and its requests."""

    variant: str
    """`primary` without a split; else the split's label (`stable`, `canary`, a variant)."""
    version: str
    percent: float


class ShadowFigures(Answer):
    """The shadow's copies: counts, agreement with the live answers, latency (ms)."""

    variant: str
    requests: int
    answered: int
    agreed: int
    agreement: float | None
    errors: int
    dropped: int
    """Copies not sent: 32 were running already."""
    in_flight: int
    p50_ms: float | None
    p99_ms: float | None
    last_error: str | None = Field(default=None, exclude_if=_absent)


class DeploymentVariants(Answer):
    """`GET .../variants`: per variant, its share of traffic and recent requests; the shadow's."""

    name: str
    variants: list[VariantFigures]
    shadow: ShadowFigures | None = Field(default=None, exclude_if=_absent)


class _SplitLabel(Answer):
    variant: str
    service: str
    """The variant's InferenceService."""
    percent: float


class SplitVariantFigures(LatencySummary, _SplitLabel):
    """One variant of a KServe split: its label, then the figures its pod answered.

    (The bases' order puts the label first, as `VariantCost`.)
    """

    resources: Resources


class SplitMetrics(DeploymentFigures):
    """A KServe split's figures, computed from every request its variants' pods answered."""

    variants: list[SplitVariantFigures]


# -- events ------------------------------------------------------------------------------------


class DeploymentLogs(Answer):
    """`GET .../logs`: a deployment's events (deploys, revisions, failures, notes), oldest first."""

    name: str
    lines: list[str]


# -- cost, prices, trends ----------------------------------------------------------------------


class PriceTable(Answer):
    """`GET|PUT /prices`: what an hour of each resource costs (`monitoring.cost.Prices`)."""

    cpu_hour: float
    gb_hour: float
    gpu_hour: float
    currency: str
    source: str
    """Where the prices come from (`set by the user` once changed)."""


class CostFigures(Answer):
    """A window's use and what it cost (`monitoring.cost.Cost`): rates None without a basis."""

    window_s: float
    requests: int
    cpu_s: float
    memory_gb_s: float
    gpu_s: float
    cpu_cost: float
    memory_cost: float
    gpu_cost: float
    total: float
    per_1000: float | None
    """None without predictions in the window."""
    per_day: float | None
    """None for an empty window."""
    currency: str


class _VariantLabel(Answer):
    variant: str
    version: str
    shadow: int
    """Shadow copies among the version's requests."""
    errors: int


class VariantCost(CostFigures, _VariantLabel):
    """One variant's (a model version's) share of a deployment's cost: its label, then figures.

    (The bases' order puts the label's fields first on the wire, as the server always sent.)
    """


class DeploymentCost(Answer):
    """`GET .../cost`: a deployment's cost over a window, in all and per variant."""

    name: str
    window_s: float
    covered_s: float
    """The seconds the figures cover (less than the window right after the server started)."""
    prices: PriceTable
    total: CostFigures
    variants: list[VariantCost]
    """Empty for `source: rollups` (priced per deployment, not per variant)."""
    source: Literal["live", "rollups"]


class TrendRow(Answer):
    """One minute's rollup of a deployment (`serving.trends.Rollup`), `t` the minute's start."""

    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    cpu_s: float
    rss_bytes: int
    """Mean resident memory over the minute."""
    cost: float
    drift: float | None
    """The drift score drift detection wrote for the minute, else None."""
    t: int


class DeploymentHistory(Answer):
    """`GET .../history`: a deployment's per-minute rollups since `since_s` seconds ago."""

    name: str
    since_s: float
    bucket_s: int
    rows: list[TrendRow]


# -- batch jobs --------------------------------------------------------------------------------

JobFormat = Literal["csv", "parquet", "jsonl"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobView(Answer):
    """`/jobs` answers: a batch job's state, progress, errors and output (`serving.jobs.Job`)."""

    id: str
    deployment: str
    state: JobState
    input: str
    output: str
    format: JobFormat
    output_format: JobFormat
    chunk_size: int
    parallelism: int
    rows_total: int | None
    """None until the input is read."""
    errors: list[str]
    created: float
    started: float | None
    finished: float | None
    rows_done: int
    chunks_total: int | None
    chunks_done: int
    passthrough: list[str] | None
    """Columns copied to the output and not sent (None: those the model does not take)."""


class JobList(RootModel[list[JobView]]):
    """`GET /jobs`: the jobs of the deployments the caller manages, newest first."""
