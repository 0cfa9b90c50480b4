"""The `Backend` protocol: what the deployment service needs from where deployments run.

Two backends implement it from one `DeploymentSpec`: `LocalBackend` (the embedded server on this
machine, `deployment/local.py`) and `KServeBackend` (InferenceServices on a Kubernetes cluster,
`deployment/kserve_backend.py`). The deployment service (`deployment/service.py`) and through it
the notebook's `Deployment`, the lab extension and the CLI talk only to this protocol; what one
backend cannot do it refuses with `UnsupportedError` naming the reason, never silently.

Results are typed (pydantic), not dicts: the front ends get them as JSON through `model_dump`.
"""

from __future__ import annotations

from collections.abc import Iterator  # noqa: TC003 - pydantic and Protocol read it at run time
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, RootModel

from nstarx_jupyter.deployment.spec import DeploymentSpec

if TYPE_CHECKING:
    from nstarx_jupyter.protocol.control import DeploymentFigures

__all__ = [
    "Backend",
    "DeploymentList",
    "DeploymentView",
    "Description",
    "Endpoint",
    "Progress",
    "Stable",
    "Stage",
    "Status",
    "Target",
    "TrafficArm",
    "TrafficRule",
    "TrafficView",
]

Target = Literal["local", "kserve"]
Status = Literal["Ready", "Loading", "Idle", "Failed", "Unknown"]
"""`Idle`: scaled to zero (loads on the next request). `Unknown`: the backend cannot tell yet."""
Stage = Literal["accepted", "scheduled", "loaded", "ready", "failed"]
"""Deploy-to-ready progress, in order: the spec was accepted (stored, validated); the predictor
was scheduled (a pod or the local server took it); the model loaded; it answers (`ready`); or a
stage `failed` (with the condition's reason and message)."""


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class TrafficArm(_View):
    """One share of a deployment's traffic."""

    variant: str
    """`primary`, `canary`, `stable` (the rolled-out revision during a canary) or a variant."""
    version: str
    """Which revision or model version serves it (a KServe revision name on a cluster)."""
    percent: float


class TrafficRule(_View):
    """A local server's header rule: requests whose `header` is one of `values` go to `variant`."""

    header: str
    values: list[str]
    variant: str


class TrafficView(_View):
    """Where a deployment's requests go: the split, and the local server's routing extras."""

    split: list[TrafficArm] = Field(default_factory=list)
    sticky_header: str | None = None
    rules: list[TrafficRule] = Field(default_factory=list)
    regions: dict[str, str] = Field(default_factory=dict)
    shadow: str | None = None
    fallback: str | None = None


class Stable(_View):
    """During a canary: the revision that keeps the rest of the traffic, as it was deployed."""

    revision: int
    spec: DeploymentSpec


class Description(_View):
    """One deployment as its backend sees it now."""

    name: str
    target: Target
    namespace: str | None = None
    """The Kubernetes namespace (KServe); None on the local server."""
    revision: int
    """Increases with each change of the spec (the local revision; KServe's `generation`)."""
    status: Status
    reason: str | None = None
    """Why it is not `Ready`: a failed load's message, a failing condition's reason: message."""
    stage: Stage | None = None
    """How far the current revision got on its way to `ready` (from a cluster's status
    conditions), so a list can show the progress without a watch; None where the backend
    reports only `status` (the local server's `apply` returns once the model serves)."""
    spec: DeploymentSpec
    traffic: TrafficView | None = None
    stable: Stable | None = None
    url: str | None = None
    """The model's endpoint (`…/v1/models/NAME`), once known."""
    created: float | None = None
    updated: float | None = None


class DeploymentView(_View):
    """One deployment as the local server's control API answers it (`GET /deployments/NAME`).

    The server builds it and dumps it with `exclude_defaults` (unset fields, empty routing
    extras and the spec's defaults are left out); `LocalBackend` parses it back and makes a
    `Description` of it. `spec` shows sink headers (secrets) as `***`.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str
    revision: int
    status: Status
    spec: DeploymentSpec
    created: float
    updated: float
    sinks: dict[str, dict[str, int]]
    """Each sink's counters (sent, failed, dropped, ...), by sink name."""
    reason: str | None = None
    traffic: TrafficView | None = None
    stable: Stable | None = None


class DeploymentList(RootModel[list[DeploymentView]]):
    """The deployments the caller may manage."""


class Progress(_View):
    """One step of a deployment on its way to `Ready`, as `Backend.watch` yields them."""

    stage: Stage
    message: str
    reason: str | None = None
    at: float
    """Seconds since the epoch."""


class Endpoint(_View):
    """How to call a deployment's model: its URL and the credentials the owner calls with."""

    url: str
    """The model's base URL (`…/v1/models/NAME`), as `InferenceClient` takes it."""
    token: str | None = None
    verify: bool | str = True
    """TLS verification: a CA bundle's path, True (the system's), or False (never in products)."""


@runtime_checkable
class Backend(Protocol):
    """Where deployments run.

    Every call is synchronous and raises `NstarxError` subclasses: `NotFoundError` (no such
    deployment), `ConflictError` (changed meanwhile, or a field another manager owns),
    `InvalidInputError` (the backend refused the spec: the message names the field),
    `UnsupportedError` (this backend cannot express it: the message says why) and
    `UnavailableError` (cannot reach it, or `watch` timed out: the message names the stage it
    waited for).
    """

    target: Target

    def apply(self, spec: DeploymentSpec, *, if_revision: int | None = None) -> Description:
        """Create or replace a deployment; with `if_revision`, only while that one is current.

        Returns as soon as the backend accepted it (use `watch` to follow it to `Ready`).
        """
        ...

    def describe(self, name: str) -> Description:
        """One deployment now."""
        ...

    def deployments(self) -> list[Description]:
        """Every deployment this backend holds (in its namespace, on a cluster)."""
        ...

    def delete(self, name: str) -> None:
        """Stop serving and forget a deployment."""
        ...

    def traffic(self, name: str) -> TrafficView | None:
        """Where the deployment's requests go now (None before it serves)."""
        ...

    def events(self, name: str) -> list[str]:
        """What happened to it, oldest first: deploys, revisions, failures with their reasons."""
        ...

    def note(self, name: str, text: str) -> None:
        """Add a line to its events (what an automated rollout decided, say)."""
        ...

    def watch(self, name: str, *, timeout_s: float = 300.0) -> Iterator[Progress]:
        """Follow the current revision until it is ready or failed, yielding each new stage.

        Ends after a `ready` or `failed` stage; raises `UnavailableError` naming the stage it
        was waiting for when `timeout_s` passes first. Uses the backend's watch, not polling,
        where it has one.
        """
        ...

    def endpoint(self, name: str) -> Endpoint:
        """Where its model answers and with which credentials."""
        ...

    def metrics(self, name: str, window_s: float = 60) -> DeploymentFigures:
        """Requests, rate, errors and p50/p95/p99 (ms) over the last `window_s`, server-side.

        The local server's (and a KServe pod's) are `DeploymentMetrics`, a KServe split's
        `SplitMetrics`: both are `DeploymentFigures`.
        """
        ...

    def close(self) -> None:
        """Release connections (the deployments keep running)."""
        ...
