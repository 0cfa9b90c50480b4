"""What the sidebar and the pipeline document send and receive: the one definition of the API.

pydantic models, also the source of the lab extension's TypeScript types (`python -m
nstarx_jupyter.labapi.schema` writes their JSON Schema, `labextension/gen-types.mjs` compiles
it), so the two sides cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "API_MODELS",
    "REQUEST_MODELS",
    "ClusterContext",
    "Contexts",
    "DeployRequest",
    "DeployResult",
    "DeploymentInfo",
    "DriftBadge",
    "KeyCreate",
    "KeyCreated",
    "KeyInfo",
    "Logs",
    "MetricsSample",
    "ModelSummary",
    "ModelVersionInfo",
    "PipelineCheck",
    "PipelineCheckResult",
    "PipelineDeployed",
    "PipelineLibrary",
    "PipelineLoaded",
    "PipelineRun",
    "PipelineSave",
    "PipelineSaved",
    "PipelineVersion",
    "ServerInfo",
    "Snippets",
    "TrafficArm",
    "TrafficChange",
    "Trend",
    "TrendPoint",
]


class _Model(BaseModel):
    # Answers carry every field (the TypeScript types mark none optional); requests may leave
    # out what has a default (their schema is written in validation mode: REQUEST_MODELS).
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class ServerInfo(_Model):
    """The local model server as the sidebar shows it (never its admin token)."""

    running: bool
    url: str | None = None
    grpc: str | None = None
    pid: int | None = None
    home: str
    """`$NSTARX_HOME`: where the server keeps its deployments, keys and registry."""
    version: str


class ClusterContext(_Model):
    """One kubeconfig context the sidebar's picker offers: a cluster to deploy to."""

    name: str
    cluster: str
    namespace: str
    """The context's default namespace (`default` when it names none)."""
    current: bool
    """Whether it is the kubeconfig's `current-context`."""


class Contexts(_Model):
    """The clusters the lab can reach; none, with the `reason`, when it can reach none."""

    kubeconfig: str | None = None
    """The kubeconfig the contexts come from (`$KUBECONFIG` or `~/.kube/config`)."""
    contexts: list[ClusterContext] = Field(default_factory=list)
    in_cluster_namespace: str | None = None
    """Inside a pod without a kubeconfig: its service account's namespace (the picker then offers
    the pod's own cluster, as context None); None elsewhere."""
    reason: str | None = None
    """Why there are none: no `kubernetes` client installed, no kubeconfig, an unreadable one."""


class ModelSummary(_Model):
    """One registered model in the catalog."""

    name: str
    latest_version: str | None = None
    aliases: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    created: str | None = None
    updated: str | None = None


class ModelVersionInfo(_Model):
    """One version of a registered model, with its metadata."""

    name: str
    version: str
    uri: str
    flavor: str | None = None
    aliases: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    status: str = "READY"
    created: str | None = None
    run_id: str | None = None


class DeployRequest(_Model):
    """The sidebar's deploy form: a registry version served under `name`.

    With `canary_percent` and an existing deployment `name`, the version goes out as a canary
    taking that share of traffic; otherwise it becomes the deployment's model (a new revision
    when the deployment exists).
    """

    name: str = Field(min_length=1, max_length=63)
    model: str = Field(min_length=1)
    version: str = Field(min_length=1)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=0)
    max_batch_size: int | None = Field(default=None, ge=1)
    max_latency_ms: int | None = Field(default=None, ge=1)
    canary_percent: int | None = Field(default=None, ge=0, le=100)
    storage_uri: str | None = Field(default=None, min_length=1, max_length=2048)
    """On a cluster: where the version's artifact was uploaded (`s3://`, `gs://`, `pvc://`,
    `oci://`). Without it, a version the registry keeps on this machine (which pods cannot
    read) is uploaded to the Jupyter server's model store (`$NSTARX_MODEL_STORE`)."""


class MetricsSample(_Model):
    """A deployment's figures over the last window (the sparklines add one point per poll)."""

    requests: int = 0
    rps: float = 0.0
    error_rate: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_s: float | None = None
    """CPU seconds the deployment's predict calls used so far (the control API's `resources`)."""
    rss_bytes: int | None = None
    """Resident memory of its loaded versions (an isolated one's worker, else a server share)."""
    cost_per_1000: float | None = None
    """Cost per 1,000 predictions over the last hour (the control API's `cost`)."""
    cost_per_day: float | None = None
    """Cost per day at the last hour's rate."""
    currency: str | None = None


class TrendPoint(_Model):
    """One minute of a deployment's rollups (`t`: the minute's start, epoch seconds)."""

    t: int
    requests: int
    rps: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    cost: float = 0.0


class Trend(_Model):
    """A deployment's per-minute rollups over the last hour or day (the sparklines' toggle)."""

    name: str
    since_s: float
    points: list[TrendPoint] = Field(default_factory=list)


class TrafficArm(_Model):
    """One share of a deployment's traffic: a revision or a variant, with its own figures.

    `metrics` only while the traffic is split (a canary, an A/B test), so arms can be compared.
    """

    variant: str
    version: str | None = None
    percent: float
    metrics: MetricsSample | None = None


class DriftBadge(_Model):
    """A deployment's drift over the last hour, as the control API's drift route answers it."""

    status: Literal["ok", "drift", "no reference", "no traffic"]
    drifted: list[str] = Field(default_factory=list)
    """The features (and `prediction`) whose tests flag drift."""
    score: float | None = None
    """The largest score / threshold of the PSI and Jensen-Shannon tests (1: at threshold)."""
    rows: int = 0
    """Sampled live rows the tests ran on."""


class DeploymentInfo(_Model):
    """One deployment: status, revisions, traffic split and its latest figures.

    Holds the fields of the backend's `Description` (target, namespace, spec, url, ...), with
    `traffic` as the sidebar's list of arms.
    """

    name: str
    target: str = "local"
    """`local` (this machine's server) or `kserve` (a cluster)."""
    namespace: str | None = None
    """The Kubernetes namespace on a cluster; None on the local server."""
    status: str
    reason: str | None = None
    stage: str | None = None
    """How far the current revision got: accepted, scheduled, loaded, ready or failed (from a
    cluster's status conditions); None where the status says it all (the local server)."""
    revision: int
    stable_revision: int | None = None
    """The revision keeping the rest of the traffic while a canary runs."""
    model: str | None = None
    stable_model: str | None = None
    canary_percent: int | None = None
    min_replicas: int = 1
    max_replicas: int = 1
    max_batch_size: int | None = None
    """Adaptive batching as the spec asks for it (None: the server's default for the model)."""
    max_latency_ms: int | None = None
    auth: bool = True
    url: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    """The deployment's spec as the backend holds it (defaults left out)."""
    traffic: list[TrafficArm] = Field(default_factory=list)
    metrics: MetricsSample = Field(default_factory=MetricsSample)
    drift: DriftBadge | None = None
    """Drift over the last hour (local server only; None where it cannot be told)."""
    created: float | None = None
    updated: float | None = None


class DeployResult(_Model):
    """A deployment made from the form, with the key minted for it (shown once)."""

    deployment: DeploymentInfo
    key: str | None = None


class TrafficChange(_Model):
    """The slider: the canary's share of the traffic."""

    canary_percent: int = Field(ge=0, le=100)


class Snippets(_Model):
    """How to call a deployment; the key is left as `$NSTARX_API_KEY`, never filled in."""

    url: str
    curl: str
    python: str


class Logs(_Model):
    """A deployment's events, oldest first."""

    name: str
    lines: list[str]


class KeyInfo(_Model):
    """An API key as listed: never the key itself."""

    id: str
    prefix: str
    name: str = ""
    scopes: list[str] = Field(default_factory=list)
    state: str
    created: float | None = None
    expires: float | None = None


class KeyCreate(_Model):
    """A key to mint: a name and the scopes of named deployments (`predict:iris`, `manage:iris`).

    The lab mints no `admin` key and no `*` wildcard (`labapi.scopes`): the key reaches the
    page, which should hold no more than calling or managing the deployments it names.
    """

    name: str = Field(default="", max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=100)


class KeyCreated(_Model):
    """A minted key: `key` is shown this once; the server keeps only its digest."""

    info: KeyInfo
    key: str


class PipelineLibrary(_Model):
    """The editor's palette and port rules (what `FlowEditor` sends as traits)."""

    library: list[dict[str, Any]]
    kinds: list[dict[str, str]]
    port_rules: dict[str, list[str]]


class PipelineCheck(_Model):
    """A pipeline to check (a `PipelineSpec` as JSON)."""

    spec: dict[str, Any]


class PipelineCheckResult(_Model):
    """Every problem at once, and the ports of nodes whose config changes them."""

    problems: list[dict[str, Any]]
    node_ports: dict[str, Any]


class PipelineRun(_Model):
    """A test run: the pipeline and one input record."""

    spec: dict[str, Any]
    sample: dict[str, Any] = Field(default_factory=dict)


class PipelineSave(_Model):
    """Save the spec as a new version in the registry."""

    spec: dict[str, Any]
    message: str = ""


class PipelineSaved(_Model):
    """The version a save made."""

    name: str
    version: int


class PipelineVersion(_Model):
    """One saved version of a pipeline."""

    version: int
    message: str = ""
    author: str | None = None
    created: str | None = None


class PipelineLoaded(_Model):
    """A saved version's spec."""

    version: int
    spec: dict[str, Any]


class PipelineDeployed(_Model):
    """A pipeline served by the local server; the key's prefix only, and a cURL without it."""

    name: str
    url: str
    key_prefix: str | None = None
    curl: str


API_MODELS: tuple[type[BaseModel], ...] = (
    ServerInfo, ModelSummary, ModelVersionInfo, DeployRequest, DeployResult, DeploymentInfo,
    TrafficArm, MetricsSample, TrafficChange, Snippets, Logs, KeyInfo, KeyCreate, KeyCreated,
    PipelineLibrary, PipelineCheck, PipelineCheckResult, PipelineRun, PipelineSave,
    PipelineSaved, PipelineVersion, PipelineLoaded, PipelineDeployed, TrendPoint, Trend,
    ClusterContext, Contexts, DriftBadge,
)  # fmt: skip
"""Every model the front end sees; each becomes a TypeScript interface."""

REQUEST_MODELS: frozenset[type[BaseModel]] = frozenset(
    {DeployRequest, TrafficChange, KeyCreate, PipelineCheck, PipelineRun, PipelineSave}
)
"""What the front end sends: their schemas leave fields with defaults optional."""
