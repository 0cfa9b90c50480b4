"""Reading KServe's objects: the spec an InferenceService was applied from, its status and stages.

The conditions are the ones KServe's controller writes (`pkg/apis/serving/v1beta1/
inference_service_status.go`): `PredictorConfigurationReady` and `PredictorRouteReady` (the
predictor's revision and route), `PredictorReady` (it answers its readiness check), and `Ready`
(the aggregate of `PredictorReady` and `IngressReady`). A status whose `observedGeneration` is
older than the object's `generation` speaks of an earlier revision.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.backend import (
    Description,
    Progress,
    Stable,
    Stage,
    Status,
    TrafficArm,
    TrafficView,
)
from nstarx_jupyter.deployment.kserve import NSTARX_RUNTIME
from nstarx_jupyter.deployment.spec import DeploymentSpec, from_kserve
from nstarx_jupyter.errors import ConflictError, InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["CONTINUES_ANNOTATION", "DEPLOYMENT_LABEL", "MANAGED_BY", "STABLE_ANNOTATION",
           "STAGES", "Tracker", "check_revision", "conditions_of", "conditions_text",
           "describe_service", "epoch",
           "failure_of", "generation_of", "is_current", "label", "progress", "revision_of",
           "spec_of", "stable_of", "stage_of", "status_of", "traffic_of"]  # fmt: skip

STABLE_ANNOTATION = "serving.nstarx.io/stable-spec"
"""During a canary: the spec (and revision) that keeps the rest of the traffic, as JSON."""
CONTINUES_ANNOTATION = "serving.nstarx.io/continues-revision"
"""On an InferenceService that replaced a split: the split's revision, which it continues.

The new object's `generation` starts again at 1; its revision is this plus its generation, so
a deployment's revision only grows across one model -> split -> one model."""
MANAGED_BY = ("app.kubernetes.io/managed-by", "nstarx")
DEPLOYMENT_LABEL = "nstarx.io/deployment"
"""On each variant InferenceService of a split: the deployment (InferenceGraph) it is part of."""
STAGES: tuple[Stage, ...] = ("accepted", "scheduled", "loaded", "ready")
_WAITS_FOR = {
    "scheduled": "the predictor to be scheduled "
    "(PredictorConfigurationReady or PredictorRouteReady)",
    "loaded": "the model to load (PredictorReady)",
    "ready": "the InferenceService to be ready (Ready)",
}
_FAILING = ("Ready", "PredictorReady", "PredictorConfigurationReady", "PredictorRouteReady",
            "IngressReady", "LatestDeploymentReady", "RoutesReady")  # fmt: skip


def spec_of(isvc: dict[str, Any]) -> DeploymentSpec:
    """The spec an InferenceService was applied from (what `from_kserve` reads of it).

    A stored InferenceService carries what the server and the controller added (`status`,
    managed fields, our own annotations); only the applied part is read.
    """
    meta = isvc["metadata"]
    annotations = {key: value for key, value in meta.get("annotations", {}).items()
                   if key not in (STABLE_ANNOTATION, CONTINUES_ANNOTATION)
                   and key != "kubectl.kubernetes.io/last-applied-configuration"}  # fmt: skip
    labels = {key: value for key, value in meta.get("labels", {}).items()
              if (key, value) != MANAGED_BY and key != DEPLOYMENT_LABEL}  # fmt: skip
    metadata: dict[str, Any] = {"name": meta["name"]}
    for key, value in (("namespace", meta.get("namespace")), ("labels", labels),
                       ("annotations", annotations)):  # fmt: skip
        if value:
            metadata[key] = value
    spec = from_kserve({"apiVersion": isvc["apiVersion"], "kind": "InferenceService",
                        "metadata": metadata, "spec": isvc["spec"]})  # fmt: skip
    # to_manifests names the nstarx runtime when the spec names none: read it back as none, so
    # the spec round-trips (and "nstarx" is no runtime name on the local server).
    return spec.replace(runtime=None) if spec.runtime == NSTARX_RUNTIME else spec


def describe_service(isvc: dict[str, Any]) -> Description:
    """A one-model deployment from its InferenceService: status from its conditions, spec."""
    meta = isvc["metadata"]
    status, reason = status_of(isvc)
    url = isvc.get("status", {}).get("url")
    try:
        spec = spec_of(isvc)
    except InvalidInputError as exc:  # a hand-written isvc nstarx cannot run: still listed
        spec = DeploymentSpec.build(name=meta["name"], namespace=meta.get("namespace"))
        reason = reason or f"not an nstarx deployment: {exc.message}"
    times = [epoch(entry.get("time")) for entry in meta.get("managedFields", [])]
    return Description(
        name=meta["name"],
        target="kserve",
        namespace=meta.get("namespace"),
        revision=revision_of(isvc),
        status=status,
        reason=reason,
        stage=stage_of(isvc)[0],
        spec=spec,
        traffic=traffic_of(isvc),
        stable=stable_of(isvc),
        url=f"{url}/v1/models/{meta['name']}" if url else None,
        created=epoch(meta.get("creationTimestamp")),
        updated=max((t for t in times if t is not None), default=None),
    )


def stable_of(isvc: dict[str, Any]) -> Stable | None:
    """During a canary: the spec that keeps the rest of the traffic (its annotation)."""
    text = isvc["metadata"].get("annotations", {}).get(STABLE_ANNOTATION)
    if not text:
        return None
    try:
        return Stable.model_validate_json(text)
    except ValueError:
        return None  # edited by hand into something else: no stable to offer


def conditions_of(isvc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The status conditions by type."""
    return {c["type"]: c for c in isvc.get("status", {}).get("conditions", []) if "type" in c}


def failure_of(isvc: dict[str, Any]) -> str | None:
    """'Reason: message' of the first failing condition (or the model's failure info)."""
    conditions = conditions_of(isvc)
    for kind in _FAILING:
        condition = conditions.get(kind)
        if condition and condition.get("status") == "False" and condition.get("reason"):
            message = " ".join(str(condition.get("message", "")).split())
            return f"{condition['reason']}: {message}" if message else str(condition["reason"])
    model = isvc.get("status", {}).get("modelStatus", {})
    if model.get("transitionStatus") in ("BlockedByFailedLoad", "InvalidSpec"):
        info = model.get("lastFailureInfo") or {}
        return f"{info.get('reason', model['transitionStatus'])}: {info.get('message', '')}"
    return None


def is_current(isvc: dict[str, Any]) -> bool:
    """Whether the status speaks of this generation (False right after a change)."""
    observed = isvc.get("status", {}).get("observedGeneration")
    return observed is None or int(observed) >= int(isvc["metadata"].get("generation", 1))


def status_of(isvc: dict[str, Any]) -> tuple[Status, str | None]:
    """The status and, unless Ready, why not."""
    if not isvc.get("status"):
        return "Unknown", "no status yet: is the KServe controller running?"
    if not is_current(isvc):
        return "Loading", "the controller has not reconciled this revision yet"
    failure = failure_of(isvc)
    if failure:
        return "Failed", failure
    ready = conditions_of(isvc).get("Ready", {})
    if ready.get("status") != "True":
        return "Loading", ready.get("reason") or None
    copies = isvc.get("status", {}).get("modelStatus", {}).get("copies", {})
    min_replicas = isvc["spec"]["predictor"].get("minReplicas", 1)
    if min_replicas == 0 and copies.get("totalCopies") == 0:
        return "Idle", None
    return "Ready", None


def stage_of(isvc: dict[str, Any]) -> tuple[Stage, str | None]:
    """How far the current revision got, and the failure's 'Reason: message' if it failed."""
    if not is_current(isvc):
        return "accepted", None
    failure = failure_of(isvc)
    if failure:
        return "failed", failure
    conditions = conditions_of(isvc)

    def true(kind: str) -> bool:
        return conditions.get(kind, {}).get("status") == "True"

    if true("Ready"):
        return "ready", None
    if true("PredictorReady"):
        return "loaded", None
    if true("PredictorConfigurationReady") or true("PredictorRouteReady"):
        return "scheduled", None
    return "accepted", None


_MESSAGES = {
    "scheduled": "predictor scheduled (its revision and route exist)",
    "loaded": "model loaded (the predictor reports ready)",
    "ready": "ready: the InferenceService answers at its URL",
}


class Tracker:
    """Which stages `watch` reported; turns each new state into the stages reached since.

    `waits_for` and `messages` say, per stage, what a timeout waited for and what reaching it
    means (an InferenceService's by default; a split's graph has its own).
    """

    def __init__(
        self,
        revision: int,
        waits_for: dict[str, str] | None = None,
        messages: dict[str, str] | None = None,
    ) -> None:
        self.revision = revision
        self.reached = 0  # index into STAGES: accepted
        self.done = False
        self.waits_for = waits_for or _WAITS_FOR
        self.messages = messages or _MESSAGES

    def advance(self, stage: Stage, failure: str | None) -> Iterator[Progress]:
        """The stages between the last one reported and `stage` (or the failure)."""
        if stage == "failed":
            self.done = True
            yield progress("failed", f"revision {self.revision} failed: {failure}", failure)
            return
        target = STAGES.index(stage)
        while self.reached < target:  # a jump (say straight to Ready) reports the steps between
            self.reached += 1
            yield progress(STAGES[self.reached], self.messages[STAGES[self.reached]])
        self.done = stage == "ready"

    def timeout_message(self, name: str, timeout_s: float, seen: str) -> str:
        """What a watch that timed out waited for, and what it saw last (`seen`)."""
        waiting = self.waits_for[STAGES[self.reached + 1]]
        return (f"'{name}' was not ready after {timeout_s:g} s: waited for {waiting}; "
                f"last conditions: {seen or 'none (no controller wrote a status)'}")  # fmt: skip


def conditions_text(conditions: dict[str, dict[str, Any]]) -> str:
    """`Kind=Status (Reason)` for each condition, for a timeout's message."""
    return "; ".join(
        f"{kind}={c.get('status')}" + (f" ({c['reason']})" if c.get("reason") else "")
        for kind, c in conditions.items()
    )


def progress(stage: Stage, message: str, reason: str | None = None) -> Progress:
    """One step, stamped now."""
    return Progress(stage=stage, message=message, reason=reason, at=time.time())


def traffic_of(isvc: dict[str, Any]) -> TrafficView | None:
    """KServe's traffic targets: the latest revision (a canary when it shares) and the stable."""
    targets = isvc.get("status", {}).get("components", {}).get("predictor", {}).get("traffic")
    if not targets:
        return None
    shared = len(targets) > 1
    arms = []
    for target in targets:
        latest = bool(target.get("latestRevision"))
        variant = ("canary" if latest else "stable") if shared else "primary"
        version = target.get("revisionName") or target.get("tag") or "latest"
        arms.append(TrafficArm(variant=variant, version=version,
                               percent=float(target.get("percent", 0))))  # fmt: skip
    return TrafficView(split=arms)


def epoch(stamp: str | None) -> float | None:
    """An RFC 3339 time stamp in seconds since the epoch."""
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def label(doc: Any) -> str:
    """`Kind/name` of a document, for messages."""
    if not isinstance(doc, dict):
        return "not a mapping"
    metadata = doc.get("metadata")
    name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
    return f"{doc.get('kind', '?')}/{name}"


def generation_of(item: dict[str, Any] | None) -> int:
    """KServe's `metadata.generation` (0 for none)."""
    return 0 if item is None else int(item["metadata"].get("generation", 1))


def revision_of(isvc: dict[str, Any] | None) -> int:
    """An InferenceService's revision: its generation, after the split it replaced (0 for none)."""
    if isvc is None:
        return 0
    text = str(isvc["metadata"].get("annotations", {}).get(CONTINUES_ANNOTATION, ""))
    return (int(text) if text.isdigit() else 0) + generation_of(isvc)


def check_revision(
    name: str, current: dict[str, Any] | None, wanted: int, revision: int | None = None
) -> dict[str, Any]:
    """`current`, unless a change meant for revision `wanted` finds it gone or moved on.

    `revision` is the deployment's (the InferenceService's `revision_of` when None).
    """
    if current is None:
        raise ConflictError(f"'{name}' has no revision {wanted}: it is not deployed")
    revision = revision_of(current) if revision is None else revision
    if revision != wanted:
        raise ConflictError(
            f"'{name}' is at revision {revision}, not {wanted}: it changed meanwhile"
        )
    return current
