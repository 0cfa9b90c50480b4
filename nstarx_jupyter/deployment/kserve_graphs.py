"""A traffic split on KServe as one deployment: an InferenceGraph over one service per variant.

`to_manifests` renders a spec whose traffic is split between variants as the InferenceServices
`NAME-primary`, `NAME-VARIANT` and an InferenceGraph `NAME` whose root Splitter sends each its
weight. `GraphDeployments` applies, reads, watches and deletes them as one deployment, the way
the local server presents a split:

- The graph carries the spec (annotation `serving.nstarx.io/spec`) and the deployment's revision
  (`serving.nstarx.io/revision`, one more whenever the spec changes: KServe's `generation` of
  the graph counts only changes of its weights); each variant's service carries the label
  `nstarx.io/deployment=NAME`. `deployments()` lists the graph once and hides those services.
- It is Ready once the graph and every variant's service are. Until then its stage is the least
  advanced service's (`loaded` once every service is ready and the graph not yet), its reason
  that of the first part not ready, named. Its traffic is the Splitter's weights, its URL the
  graph's `status.url`.
- `apply` gets manifests `to_manifests` validated offline, applies the services, then the graph
  (so it routes to services that exist), then deletes what the spec no longer has: variants
  left out, and the plain InferenceService `NAME` when a one-model deployment became a split.
  A failure midway names what was applied before it (the API server has no transactions).
- `unsplit` (a spec without a split where a split runs) applies the plain InferenceService
  `NAME`, then deletes the graph and the variants' services. The new InferenceService starts
  again at KServe's generation 1; its annotation `serving.nstarx.io/continues-revision` holds
  the split's revision, which its revision counts from, so the revision only grows.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.backend import (
    Description,
    Stage,
    Status,
    TrafficArm,
    TrafficView,
)
from nstarx_jupyter.deployment.kserve_metrics import split_metrics
from nstarx_jupyter.deployment.kserve_status import (
    CONTINUES_ANNOTATION,
    DEPLOYMENT_LABEL,
    MANAGED_BY,
    STAGES,
    Tracker,
    check_revision,
    conditions_of,
    conditions_text,
    describe_service,
    epoch,
    failure_of,
    is_current,
    label,
    progress,
    revision_of,
    stage_of,
    status_of,
)
from nstarx_jupyter.deployment.kube_api import NoKServeError
from nstarx_jupyter.deployment.kube_objects import ISVC, KubeObjects
from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    NstarxError,
    UnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nstarx_jupyter.deployment.backend import Progress
    from nstarx_jupyter.protocol.control import SplitMetrics

__all__ = ["REVISION_ANNOTATION", "SPEC_ANNOTATION", "GraphDeployments"]

SPEC_ANNOTATION = "serving.nstarx.io/spec"
"""On a split's InferenceGraph: the deployment spec it was applied from, as JSON."""
REVISION_ANNOTATION = "serving.nstarx.io/revision"
"""On a split's InferenceGraph: the deployment's revision (one more per change of the spec)."""
GRAPH = "InferenceGraph"
_WAITS_FOR = {
    "scheduled": "every variant's predictor to be scheduled "
    "(PredictorConfigurationReady or PredictorRouteReady)",
    "loaded": "every variant's model to load (PredictorReady)",
    "ready": "the InferenceGraph and every variant's InferenceService to be ready (Ready)",
}
_MESSAGES = {
    "scheduled": "every variant's predictor scheduled",
    "loaded": "every variant's model loaded (the predictors report ready)",
    "ready": "ready: the InferenceGraph answers at its URL",
}
_WORST: tuple[Status, ...] = ("Failed", "Unknown", "Loading")

_Part = tuple[str, Status, str | None, Stage]
"""What (`InferenceService 'iris-b'`), its status, why not ready, its stage."""


class GraphDeployments:
    """The splits of a namespace (`KServeBackend`'s), each an InferenceGraph and its services."""

    def __init__(self, kube: KubeObjects) -> None:
        self.kube = kube

    # -- reading -------------------------------------------------------------------------------

    def read(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The split deployed as `name`, or None (no graph, or a graph nstarx did not make)."""
        try:
            graph = self.kube.get(GRAPH, name, missing_ok=True, namespace=namespace)
        except (NoKServeError, ForbiddenError):  # no InferenceGraph CRD, or not ours to read:
            return None  # no splits to see; InferenceServices work as before
        if graph is None or SPEC_ANNOTATION not in graph["metadata"].get("annotations", {}):
            return None
        return graph

    def _services(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The list answer for the services labelled as the split `name`'s variants."""
        return self.kube.listed(ISVC, labels=f"{DEPLOYMENT_LABEL}={name}", namespace=namespace)

    @staticmethod
    def steps(graph: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
        """The root Splitter's steps, each with the InferenceService it sends to."""
        root = graph["spec"].get("nodes", {}).get("root", {})
        return [(step, step["serviceName"]) for step in root.get("steps", [])
                if step.get("serviceName")]  # fmt: skip

    def describe(
        self, graph: dict[str, Any], services: dict[str, dict[str, Any]] | None = None
    ) -> Description:
        """The split from its graph and its variants' services (read when not given)."""
        meta = graph["metadata"]
        if services is None:
            services = _by_name(self._services(meta["name"], meta.get("namespace")))
        parts = _parts(graph, services)
        status, reason = _status(parts)
        stage, failure = _stage(parts)
        url = graph.get("status", {}).get("url")
        objects = [graph, *services.values()]
        times = [epoch(entry.get("time")) for item in objects
                 for entry in item["metadata"].get("managedFields", [])]  # fmt: skip
        spec, problem = _spec(graph)
        return Description(
            name=meta["name"], target="kserve", namespace=meta.get("namespace"),
            revision=_revision(graph), status=status, reason=reason or failure or problem,
            stage=stage, spec=spec, traffic=_traffic(graph, services),
            url=f"{url.rstrip('/')}/v1/models/{meta['name']}" if url else None,
            created=epoch(meta.get("creationTimestamp")),
            updated=max((t for t in times if t is not None), default=None),
        )  # fmt: skip

    def listed(self, items: list[dict[str, Any]]) -> list[Description]:
        """Each split of the namespace, described from `items` (the namespace's services)."""
        try:
            graphs = self.kube.listed(GRAPH).get("items", [])
        except (NoKServeError, ForbiddenError):
            return []
        owned: dict[str, dict[str, dict[str, Any]]] = {}
        for item in items:
            owner = item["metadata"].get("labels", {}).get(DEPLOYMENT_LABEL)
            if owner:
                owned.setdefault(owner, {})[item["metadata"]["name"]] = item
        return [self.describe(graph, owned.get(graph["metadata"]["name"], {}))
                for graph in graphs
                if SPEC_ANNOTATION in graph["metadata"].get("annotations", {})]  # fmt: skip

    @staticmethod
    def hidden(items: list[dict[str, Any]], splits: list[Description]) -> set[str]:
        """The services not listed on their own: variants of a split, and a split's namesake."""
        names = {described.name for described in splits}
        return {item["metadata"]["name"] for item in items
                if item["metadata"]["name"] in names
                or item["metadata"].get("labels", {}).get(DEPLOYMENT_LABEL) in names}  # fmt: skip

    def objects(self, graph: dict[str, Any]) -> list[tuple[str, str]]:
        """(kind, name) of the split's parts, for its Events.

        The graph, its services, and the InferenceService it may have been before the split.
        """
        name = graph["metadata"]["name"]
        return [(GRAPH, name), (ISVC, name), *((ISVC, service) for _, service in self.steps(graph))]

    def metrics(self, graph: dict[str, Any], window_s: float) -> SplitMetrics:
        """The split's figures from every request of its variants' pods (`kserve_metrics.py`)."""
        meta = graph["metadata"]
        services = _by_name(self._services(meta["name"], meta.get("namespace")))
        steps = [(step.get("name") or service, service, float(step.get("weight", 0)))
                 for step, service in self.steps(graph)]  # fmt: skip
        return split_metrics(meta["name"], steps, services, window_s)

    # -- changing ------------------------------------------------------------------------------

    def apply(
        self,
        spec: DeploymentSpec,
        docs: list[dict[str, Any]],
        graph: dict[str, Any] | None,
        *,
        if_revision: int | None = None,
    ) -> Description:
        """Apply a split's manifests (`docs`, the graph last) as one deployment."""
        name, namespace = spec.name, spec.namespace
        plain = self.kube.get(ISVC, name, missing_ok=True, namespace=namespace)
        revision = _revision(graph) if graph is not None else revision_of(plain)
        if if_revision is not None:
            check_revision(name, graph or plain, if_revision, revision)
        text = _spec_text(spec)
        changed = graph is None or graph["metadata"]["annotations"].get(SPEC_ANNOTATION) != text
        meta = docs[-1]["metadata"]
        meta.setdefault("annotations", {}).update(
            {SPEC_ANNOTATION: text, REVISION_ANNOTATION: str(revision + 1 if changed else revision)}
        )
        if if_revision is not None and graph is not None:  # refused if it changed since the read
            meta["resourceVersion"] = graph["metadata"]["resourceVersion"]
        for doc in docs:
            if doc["kind"] in (GRAPH, ISVC):
                doc["metadata"].setdefault("labels", {}).update(
                    {MANAGED_BY[0]: MANAGED_BY[1], DEPLOYMENT_LABEL: name}
                )
        stored = self._apply_all(docs)
        wanted = {doc["metadata"]["name"] for doc in docs if doc["kind"] == ISVC}
        stale = [service for service in _by_name(self._services(name, namespace))
                 if service not in wanted]  # fmt: skip
        if plain is not None:
            stale.append(name)  # the one-model deployment this split replaces
        for service in stale:
            with contextlib.suppress(NotFoundError):
                self.kube.remove(ISVC, service, namespace)
        return self.describe(stored)

    def unsplit(
        self,
        spec: DeploymentSpec,
        docs: list[dict[str, Any]],
        graph: dict[str, Any],
        *,
        if_revision: int | None = None,
    ) -> Description:
        """Back to one model: apply the plain InferenceService, then delete the split's parts."""
        revision = _revision(graph)
        if if_revision is not None:
            check_revision(spec.name, graph, if_revision, revision)
        meta = docs[-1]["metadata"]
        meta.setdefault("labels", {}).setdefault(*MANAGED_BY)
        meta.setdefault("annotations", {})[CONTINUES_ANNOTATION] = str(revision)
        stored = self._apply_all(docs)
        self.delete(spec.name, spec.namespace)
        return describe_service(stored)

    def delete(self, name: str, namespace: str | None = None) -> bool:
        """Delete the split `name` (its graph, then its services); False if there is none."""
        if self.read(name, namespace) is None:
            return False
        self.kube.remove(GRAPH, name, namespace)
        for service in _by_name(self._services(name, namespace)):
            with contextlib.suppress(NotFoundError):
                self.kube.remove(ISVC, service, namespace)
        return True

    def _apply_all(self, docs: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply `docs` in order; a failure says which were applied before it. The last one."""
        applied: list[str] = []
        stored: dict[str, Any] = {}
        for doc in docs:
            try:
                stored = self.kube.apply(doc)
            except NstarxError as exc:
                done = ", ".join(applied) or "nothing"
                raise type(exc)(f"{exc.message}; applied before it: {done}") from None
            applied.append(label(doc))
        return stored

    # -- progress --------------------------------------------------------------------------------

    def watch(self, graph: dict[str, Any], timeout_s: float) -> Iterator[Progress]:
        """The split's stages, from a watch on its services, then on its graph."""
        deadline = time.monotonic() + timeout_s
        name = graph["metadata"]["name"]
        revision = _revision(graph)
        yield progress("accepted", f"revision {revision} accepted by the API server")
        tracker = Tracker(revision, _WAITS_FOR, _MESSAGES)
        listed = self._services(name)
        while True:
            services = _by_name(listed)
            parts = _parts(graph, services)
            yield from tracker.advance(*_stage(parts))
            if tracker.done:
                return
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                seen = "; ".join(f"{what}: {conditions_text(conditions_of(item)) or 'none'}"
                                 for what, item in _not_ready(graph, services))  # fmt: skip
                raise UnavailableError(tracker.timeout_message(name, timeout_s, seen))
            if all(part[3] == "ready" for part in parts[:-1]):  # the services: now the graph
                version = graph["metadata"]["resourceVersion"]
                self.kube.next_event(GRAPH, version, remaining_s,
                                         field_selector=f"metadata.name={name}")  # fmt: skip
                found = self.kube.get(GRAPH, name)
                assert found is not None  # noqa: S101 - get raises unless missing_ok
                graph = found
            else:
                version = listed["metadata"]["resourceVersion"]
                self.kube.next_event(ISVC, version, remaining_s,
                                         label_selector=f"{DEPLOYMENT_LABEL}={name}")  # fmt: skip
                listed = self._services(name)


def _by_name(listed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["metadata"]["name"]: item for item in listed.get("items", [])}


def _spec_text(spec: DeploymentSpec) -> str:
    return json.dumps(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=True)


def _spec(graph: dict[str, Any]) -> tuple[DeploymentSpec, str | None]:
    """The spec in the graph's annotation, or a bare one and why it could not be read."""
    meta = graph["metadata"]
    try:
        return DeploymentSpec.build(**json.loads(meta["annotations"][SPEC_ANNOTATION])), None
    except (ValueError, TypeError, InvalidInputError) as exc:  # edited by hand
        bare = DeploymentSpec.build(name=meta["name"], namespace=meta.get("namespace"))
        return bare, f"{SPEC_ANNOTATION} is not a deployment spec: {exc}"


def _revision(graph: dict[str, Any]) -> int:
    text = graph["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, "")
    return int(text) if text.isdigit() else int(graph["metadata"].get("generation", 1))


def _graph_part(graph: dict[str, Any]) -> _Part:
    what = f"InferenceGraph '{graph['metadata']['name']}'"
    if not graph.get("status"):
        return what, "Unknown", "no status yet: is the KServe controller running?", "accepted"
    if not is_current(graph):
        return what, "Loading", "the controller has not reconciled this revision yet", "accepted"
    failure = failure_of(graph)
    if failure:
        return what, "Failed", failure, "failed"
    ready = conditions_of(graph).get("Ready", {})
    if ready.get("status") != "True":
        return what, "Loading", ready.get("reason") or None, "accepted"
    return what, "Ready", None, "ready"


def _parts(graph: dict[str, Any], services: dict[str, dict[str, Any]]) -> list[_Part]:
    """Each variant's service, then the graph (last)."""
    parts: list[_Part] = []
    for _, service in GraphDeployments.steps(graph):
        what = f"InferenceService '{service}'"
        isvc = services.get(service)
        if isvc is None:
            parts.append((what, "Unknown", "missing: apply the deployment again", "accepted"))
            continue
        status, reason = status_of(isvc)
        stage, failure = stage_of(isvc)
        parts.append((what, status, failure or reason, stage))
    return [*parts, _graph_part(graph)]


def _status(parts: list[_Part]) -> tuple[Status, str | None]:
    """Ready when every part is (Idle counts: it loads on the next request), else the worst."""
    for worst in _WORST:
        for what, status, reason, _ in parts:
            if status == worst:
                return status, f"{what}: {reason or status.lower()}"
    return "Ready", None


def _stage(parts: list[_Part]) -> tuple[Stage, str | None]:
    """A failed part's failure, else the least advanced service (`loaded` until the graph is)."""
    for what, _, reason, stage in parts:
        if stage == "failed":
            return "failed", f"{what}: {reason}"
    *services, graph = parts
    least = min((STAGES.index(stage) for *_, stage in services), default=len(STAGES) - 1)
    if least == len(STAGES) - 1 and graph[3] != "ready":
        return "loaded", None
    return STAGES[least], None


def _not_ready(
    graph: dict[str, Any], services: dict[str, dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    found = [(f"InferenceService '{name}'", isvc) for name, isvc in services.items()
             if stage_of(isvc)[0] != "ready"]  # fmt: skip
    if _graph_part(graph)[3] != "ready":
        found.append((f"InferenceGraph '{graph['metadata']['name']}'", graph))
    return found


def _traffic(graph: dict[str, Any], services: dict[str, dict[str, Any]]) -> TrafficView:
    """The Splitter's weights per variant, each served by its service's latest ready revision."""
    arms = []
    for step, service in GraphDeployments.steps(graph):
        predictor = services.get(service, {}).get("status", {}).get("components", {})
        revision = predictor.get("predictor", {}).get("latestReadyRevision")
        arms.append(TrafficArm(variant=step.get("name") or service, version=revision or service,
                               percent=float(step.get("weight", 0))))  # fmt: skip
    return TrafficView(split=arms)
