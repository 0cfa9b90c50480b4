"""`KServeBackend`: deployments as InferenceServices on a Kubernetes cluster.

The manifests are the ones `to_manifests` makes (the same code path as `to_kserve()`), validated
offline first and then server-side applied with the field manager `nstarx` (never forced, so a
field another manager set comes back as a `ConflictError` naming it). Progress comes from a watch
on the InferenceService's status conditions, as KServe's controller writes them (read in
`kserve_status.py`). A traffic split between variants is one deployment too: an InferenceGraph
over one InferenceService per variant (`kserve_graphs.py`). Both reach the API server through
`kube_objects.KubeObjects`.

Uses the official `kubernetes` client (extra `nstarx-jupyter[kserve]`).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.backend import Description, Endpoint, Progress, Stable, Target
from nstarx_jupyter.deployment.kserve import to_manifests
from nstarx_jupyter.deployment.kserve import validate_manifest as validate_offline
from nstarx_jupyter.deployment.kserve_events import note_event, read_events
from nstarx_jupyter.deployment.kserve_graphs import GraphDeployments
from nstarx_jupyter.deployment.kserve_metrics import TOKEN_ENV, pod_metrics, url_of
from nstarx_jupyter.deployment.kserve_status import (
    CONTINUES_ANNOTATION,
    MANAGED_BY,
    STABLE_ANNOTATION,
    Tracker,
    check_revision,
    conditions_of,
    conditions_text,
    describe_service,
    label,
    progress,
    revision_of,
    spec_of,
    stable_of,
    stage_of,
)
from nstarx_jupyter.deployment.kube_api import FIELD_MANAGER, connect
from nstarx_jupyter.deployment.kube_objects import ISVC, KubeObjects
from nstarx_jupyter.errors import (
    InvalidInputError,
    NotFoundError,
    UnavailableError,
    UnsupportedError,
    require,
)
from nstarx_jupyter.model_uri import REMOTE_SCHEMES, is_fetchable, is_registry_uri

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nstarx_jupyter.deployment.backend import TrafficView
    from nstarx_jupyter.deployment.spec import DeploymentSpec
    from nstarx_jupyter.protocol.control import DeploymentFigures

__all__ = ["FIELD_MANAGER", "STABLE_ANNOTATION", "KServeBackend", "spec_of"]


class KServeBackend:
    """Deployments as KServe InferenceServices in one namespace of a cluster.

    The cluster comes from a kubeconfig (`kubeconfig`, else `$KUBECONFIG`, else
    `~/.kube/config`; `context` picks one of its contexts) or, inside a pod, from the service
    account; `namespace` defaults to the context's (or the pod's) namespace. `api_client` (a
    `kubernetes.client.ApiClient`) takes the place of all of that.
    """

    target: Target = "kserve"

    def __init__(
        self,
        context: str | None = None,
        namespace: str | None = None,
        *,
        kubeconfig: str | Path | None = None,
        api_client: Any = None,
    ) -> None:
        self._k8s = require("kubernetes", "kserve")
        self._owns_client = api_client is None
        if api_client is None:
            api_client, default_namespace = connect(self._k8s, context, kubeconfig)
        else:
            default_namespace = "default"
        self.api_client = api_client
        self.kube = KubeObjects(self._k8s, api_client, namespace or default_namespace)
        """The namespace's KServe objects, as this backend and its splits reach them."""
        self._core = self._k8s.client.CoreV1Api(api_client)
        self._graphs = GraphDeployments(self.kube)

    @property
    def namespace(self) -> str:
        """The namespace every call works in."""
        return self.kube.namespace

    # -- apply -----------------------------------------------------------------------------

    def apply(self, spec: DeploymentSpec, *, if_revision: int | None = None) -> Description:
        """Server-side apply the spec's manifests; with `if_revision`, only onto that generation.

        A spec with a traffic split becomes an InferenceGraph over one InferenceService per
        variant, applied as one deployment (`GraphDeployments.apply`); a spec without one
        replaces a split deployed under its name (`GraphDeployments.unsplit`).
        """
        if spec.namespace is None:
            spec = spec.replace(namespace=self.namespace)
        _refuse_local(spec)
        try:
            docs = to_manifests(spec)  # validated offline: KServe's schema and webhook rules
        except InvalidInputError as exc:
            if exc.message.startswith("traffic."):  # routing KServe has no field for
                raise UnsupportedError(exc.message) from None
            raise
        graph = self._graphs.read(spec.name, spec.namespace)
        if any(doc["kind"] == "InferenceGraph" for doc in docs):
            return self._graphs.apply(spec, docs, graph, if_revision=if_revision)
        if graph is not None:
            return self._graphs.unsplit(spec, docs, graph, if_revision=if_revision)
        current = self.kube.get(ISVC, spec.name, missing_ok=True, namespace=spec.namespace)
        isvc = docs[-1]
        if if_revision is not None:
            seen = check_revision(spec.name, current, if_revision)
            # The API server refuses the apply if the object changed since this read.
            isvc["metadata"]["resourceVersion"] = seen["metadata"]["resourceVersion"]
        labels = isvc["metadata"].setdefault("labels", {})
        labels.setdefault(*MANAGED_BY)
        continues = (current or {}).get("metadata", {}).get("annotations", {})
        if CONTINUES_ANNOTATION in continues:  # applied without it, it would be removed
            isvc["metadata"]["annotations"][CONTINUES_ANNOTATION] = continues[CONTINUES_ANNOTATION]
        stable = self._stable_for(spec, current)
        if stable is not None:
            isvc["metadata"]["annotations"][STABLE_ANNOTATION] = json.dumps(
                {"revision": stable.revision, "spec": stable.spec.model_dump(mode="json")},
                sort_keys=True,
            )
        applied: dict[str, Any] = {}
        for doc in docs:
            applied = self.kube.apply(doc)
        return describe_service(applied)

    def _stable_for(self, spec: DeploymentSpec, current: dict[str, Any] | None) -> Stable | None:
        """The revision that keeps the rest of the traffic while `spec` is a canary, if any.

        KServe splits traffic between the new revision and the last one rolled out to all
        traffic; that one's spec is kept in an annotation so rollback can apply it again.
        """
        if spec.canary_traffic_percent is None or current is None:
            return None  # a full rollout (a promote or a rollback): no stable to remember
        kept = stable_of(current)
        if kept is not None:
            return kept  # a canary already runs: its stable stays the same
        deployed = spec_of(current)
        if deployed.replace(canary_traffic_percent=None) == spec.replace(
            canary_traffic_percent=None
        ):
            return None  # the same model: no new revision, nothing to fall back to
        return Stable(revision=revision_of(current),
                      spec=deployed.replace(canary_traffic_percent=None))  # fmt: skip

    def apply_manifests(self, docs: list[dict[str, Any]]) -> list[str]:
        """Apply a file's documents (`nstarx apply -f --context`), all or none.

        Every document is validated offline first; a bad one refuses the whole file, naming it,
        before anything reaches the cluster.

        Returns:
            One "Kind/name applied" line per document.
        """
        for index, doc in enumerate(docs, 1):
            try:
                validate_offline(doc)
            except InvalidInputError as exc:
                raise InvalidInputError(
                    f"document {index} ({label(doc)}): {exc.message}; nothing was applied"
                ) from None
        lines = []
        for doc in docs:
            self.kube.apply(doc)
            lines.append(f"{label(doc)} applied")
        return lines

    # -- reading ---------------------------------------------------------------------------

    def describe(self, name: str) -> Description:
        """The deployment now: status from its conditions, traffic, URL, spec."""
        graph = self._graphs.read(name)
        if graph is not None:
            return self._graphs.describe(graph)
        return describe_service(self._read(name))

    def deployments(self) -> list[Description]:
        """Every InferenceService of the namespace (not only nstarx's: the sidebar shows all).

        A split is listed once, from its InferenceGraph; its variants' services are not.
        """
        items = self.kube.listed(ISVC).get("items", [])
        splits = self._graphs.listed(items)
        hidden = self._graphs.hidden(items, splits)
        plain = [describe_service(item) for item in items
                 if item["metadata"]["name"] not in hidden]  # fmt: skip
        return sorted([*plain, *splits], key=lambda described: described.name)

    def traffic(self, name: str) -> TrafficView | None:
        """KServe's split: `status.components.predictor.traffic`, or a graph's Splitter."""
        return self.describe(name).traffic

    def delete(self, name: str) -> None:
        """Delete the InferenceService, or a split's graph and variant services.

        The ServingRuntime stays: others may use it.
        """
        if self._graphs.delete(name):
            return
        self.kube.remove(ISVC, name)

    def _read(self, name: str) -> dict[str, Any]:
        found = self.kube.get(ISVC, name)
        assert found is not None  # noqa: S101 - get raises unless missing_ok
        return found

    # -- progress ----------------------------------------------------------------------------

    def watch(self, name: str, *, timeout_s: float = 300.0) -> Iterator[Progress]:
        """Yield accepted -> scheduled -> loaded -> ready (or failed) from a watch on the isvc."""
        graph = self._graphs.read(name)
        if graph is not None:
            yield from self._graphs.watch(graph, timeout_s)
            return
        deadline = time.monotonic() + timeout_s
        isvc = self._read(name)
        revision = revision_of(isvc)
        yield progress("accepted", f"revision {revision} accepted by the API server")
        tracker = Tracker(revision)
        version = isvc["metadata"]["resourceVersion"]
        while True:
            yield from tracker.advance(*stage_of(isvc))
            if tracker.done:
                return
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                seen = conditions_text(conditions_of(isvc))
                raise UnavailableError(tracker.timeout_message(name, timeout_s, seen))
            isvc, version = self._next_change(name, version, remaining_s)

    def _next_change(
        self, name: str, version: str, remaining_s: float
    ) -> tuple[dict[str, Any], str]:
        """The isvc at its next change, or as it is when the watch times out or expires."""
        event = self.kube.next_event(ISVC, version, remaining_s,
                                 field_selector=f"metadata.name={name}")  # fmt: skip
        if event is not None and event["type"] == "DELETED":
            raise NotFoundError(f"InferenceService '{name}' was deleted meanwhile")
        if event is not None and event["type"] in ("ADDED", "MODIFIED"):
            found = event["object"]
            return dict(found), found["metadata"]["resourceVersion"]
        current = self._read(name)  # timed out, expired, or another ERROR event: read it again
        return current, current["metadata"]["resourceVersion"]

    # -- events ------------------------------------------------------------------------------

    def events(self, name: str) -> list[str]:
        """The core/v1 Events of the InferenceService (or split), oldest first, notes included."""
        graph = self._graphs.read(name)
        objects = [("InferenceService", name)] if graph is None else self._graphs.objects(graph)
        with self.kube.errors(ISVC, name):
            return read_events(self._core, self.namespace, objects)

    def note(self, name: str, text: str) -> None:
        """Record `text` as an Event (reason `NstarxNote`) on the InferenceService (or graph)."""
        target = self._graphs.read(name) or self._read(name)
        event = note_event(self._k8s, self.namespace, target, text)
        with self.kube.errors("Event", name):
            self._core.create_namespaced_event(self.namespace, event)

    # -- calling it ---------------------------------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        """`status.url` + `/v1/models/NAME`, with the token of `$NSTARX_KSERVE_TOKEN`."""
        url = self._url(name)
        return Endpoint(url=f"{url}/v1/models/{name}", token=os.environ.get(TOKEN_ENV) or None)

    def metrics(self, name: str, window_s: float = 60) -> DeploymentFigures:
        """The nstarx runtime's own figures, from its control API at the cluster URL.

        One model's are its pod's `DeploymentMetrics`. A split's (`SplitMetrics`) are computed
        from every request its variants' pods answered in the window, as the local server
        computes a split's; `variants` holds each variant's own.
        """
        graph = self._graphs.read(name)
        if graph is not None:
            return self._graphs.metrics(graph, window_s)
        isvc = self._read(name)
        return pod_metrics(isvc, window_s)

    def _url(self, name: str, isvc: dict[str, Any] | None = None) -> str:
        if isvc is None:
            isvc = self._graphs.read(name) or self._read(name)
        return url_of(name, isvc)

    def close(self) -> None:
        """Close the API client's connections if this backend made it."""
        if self._owns_client:
            self.api_client.close()


def _refuse_local(spec: DeploymentSpec) -> None:
    uri = spec.storage_uri
    if uri is None or is_registry_uri(uri) or is_fetchable(uri):
        return  # none: to_manifests says so; models:/ resolves to the registry's store
    raise InvalidInputError(
        f"storage_uri: '{uri}' is on this machine, which a cluster cannot read; upload the model "
        f"and give a URI KServe fetches from: {', '.join(REMOTE_SCHEMES)}"
    )
