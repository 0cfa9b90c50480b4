"""`KServeBackend`: deployments as InferenceServices on a Kubernetes cluster.

The manifests are the ones `to_manifests` makes (the same code path as `to_kserve()`), validated
offline first and then server-side applied with the field manager `nstarx` (never forced, so a
field another manager set comes back as a `ConflictError` naming it). Progress comes from a watch
on the InferenceService's status conditions, as KServe's controller writes them (read in
`kserve_status.py`). A traffic split between variants is one deployment too: an InferenceGraph
over one InferenceService per variant (`kserve_graphs.py`).

Uses the official `kubernetes` client (extra `nstarx-jupyter[kserve]`).
"""

from __future__ import annotations

import contextlib
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
    MANAGED_BY,
    STABLE_ANNOTATION,
    Tracker,
    check_revision,
    conditions_of,
    conditions_text,
    epoch,
    label,
    progress,
    spec_of,
    stable_of,
    stage_of,
    status_of,
    traffic_of,
)
from nstarx_jupyter.deployment.kube_api import (
    FIELD_MANAGER,
    GROUP,
    KINDS,
    NoKServeError,
    api_error,
    connect,
)
from nstarx_jupyter.deployment.spec import DeploymentSpec
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

__all__ = ["FIELD_MANAGER", "STABLE_ANNOTATION", "KServeBackend", "spec_of"]

_APPLY = "application/apply-patch+yaml"


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
        self.namespace = namespace or default_namespace
        self._objects = self._k8s.client.CustomObjectsApi(api_client)
        self._core = self._k8s.client.CoreV1Api(api_client)
        self._graphs = GraphDeployments(self)

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
        current = self._read(spec.name, missing_ok=True, namespace=spec.namespace)
        isvc = docs[-1]
        if if_revision is not None:
            seen = check_revision(spec.name, current, if_revision)
            # The API server refuses the apply if the object changed since this read.
            isvc["metadata"]["resourceVersion"] = seen["metadata"]["resourceVersion"]
        labels = isvc["metadata"].setdefault("labels", {})
        labels.setdefault(*MANAGED_BY)
        stable = self._stable_for(spec, current)
        if stable is not None:
            isvc["metadata"]["annotations"][STABLE_ANNOTATION] = json.dumps(
                {"revision": stable.revision, "spec": stable.spec.model_dump(mode="json")},
                sort_keys=True,
            )
        applied: dict[str, Any] = {}
        for doc in docs:
            applied = self._apply_doc(doc)
        return self._describe(applied)

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
        revision = int(current["metadata"].get("generation", 1))
        return Stable(revision=revision, spec=deployed.replace(canary_traffic_percent=None))

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
            self._apply_doc(doc)
            lines.append(f"{label(doc)} applied")
        return lines

    def _apply_doc(self, doc: dict[str, Any]) -> dict[str, Any]:
        version, plural, namespaced = KINDS[doc["kind"]]
        name = doc["metadata"]["name"]
        common = {"body": doc, "field_manager": FIELD_MANAGER, "force": False,
                  "_content_type": _APPLY}  # fmt: skip
        with self._errors(doc["kind"], name, doc["metadata"].get("namespace")):
            if namespaced:
                where: tuple[str, ...] = (GROUP, version, doc["metadata"].setdefault(
                    "namespace", self.namespace), plural, name)  # fmt: skip
                result = self._objects.patch_namespaced_custom_object(*where, **common)
            else:
                where = (GROUP, version, plural, name)
                result = self._objects.patch_cluster_custom_object(*where, **common)
            if result is None:  # 201 Created: the client deserialises only a patch's 200
                get = (self._objects.get_namespaced_custom_object if namespaced
                       else self._objects.get_cluster_custom_object)  # fmt: skip
                result = get(*where)
        return dict(result)

    # -- objects of one kind in the namespace ----------------------------------------------

    def _get(
        self, kind: str, name: str, *, missing_ok: bool = False, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """One object; None when it is missing and `missing_ok` (not when KServe is)."""
        namespace = namespace or self.namespace
        version, plural, _ = KINDS[kind]
        try:
            with self._errors(kind, name, namespace):
                found = self._objects.get_namespaced_custom_object(
                    GROUP, version, namespace, plural, name
                )
        except NotFoundError as exc:
            if missing_ok and not isinstance(exc, NoKServeError):
                return None
            raise
        return dict(found)

    def _list(
        self, kind: str, *, labels: str | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        """The list answer (its `items` and the `metadata.resourceVersion` to watch from)."""
        version, plural, _ = KINDS[kind]
        selector = {"label_selector": labels} if labels else {}
        with self._errors(kind, None, namespace):
            listed = self._objects.list_namespaced_custom_object(
                GROUP, version, namespace or self.namespace, plural, **selector
            )
        return dict(listed)

    def _remove(self, kind: str, name: str, namespace: str | None = None) -> None:
        version, plural, _ = KINDS[kind]
        namespace = namespace or self.namespace
        with self._errors(kind, name, namespace):
            self._objects.delete_namespaced_custom_object(GROUP, version, namespace, plural, name)

    def _wait_event(
        self, kind: str, version: str, remaining_s: float, **selectors: str
    ) -> dict[str, Any] | None:
        """The next watch event on `kind` (`field_selector` / `label_selector`) after `version`.

        None when the watch timed out or its version expired (410 Gone): read again then.
        """
        api_version, plural, _ = KINDS[kind]
        watcher = self._k8s.watch.Watch()
        stream = watcher.stream(
            self._objects.list_namespaced_custom_object, GROUP, api_version, self.namespace,
            plural, resource_version=version, timeout_seconds=max(1, int(remaining_s + 0.999)),
            _request_timeout=remaining_s + 10, **selectors,
        )  # fmt: skip
        try:
            with self._errors(kind, None):
                for event in self._expired_is_the_end(stream):
                    return dict(event)
        finally:
            watcher.stop()
        return None

    def _expired_is_the_end(self, stream: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The watch's events, ending quietly at 410 Gone (the version left the watch cache).

        The client raises that ERROR event as an exception; the caller then reads the object
        again and watches from its new version.
        """
        try:
            yield from stream
        except self._k8s.client.exceptions.ApiException as exc:
            if exc.status != 410:
                raise

    # -- reading ---------------------------------------------------------------------------

    def describe(self, name: str) -> Description:
        """The deployment now: status from its conditions, traffic, URL, spec."""
        graph = self._graphs.read(name)
        if graph is not None:
            return self._graphs.describe(graph)
        found = self._read(name)
        assert found is not None  # noqa: S101 - _read raises unless missing_ok
        return self._describe(found)

    def deployments(self) -> list[Description]:
        """Every InferenceService of the namespace (not only nstarx's: the sidebar shows all).

        A split is listed once, from its InferenceGraph; its variants' services are not.
        """
        items = self._list("InferenceService").get("items", [])
        splits = self._graphs.listed(items)
        hidden = self._graphs.hidden(items, splits)
        plain = [self._describe(item) for item in items if item["metadata"]["name"] not in hidden]
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
        self._remove("InferenceService", name)

    def _read(
        self, name: str, *, missing_ok: bool = False, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return self._get("InferenceService", name, missing_ok=missing_ok, namespace=namespace)

    def _describe(self, isvc: dict[str, Any]) -> Description:
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
            revision=int(meta.get("generation", 1)),
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

    # -- progress ----------------------------------------------------------------------------

    def watch(self, name: str, *, timeout_s: float = 300.0) -> Iterator[Progress]:
        """Yield accepted -> scheduled -> loaded -> ready (or failed) from a watch on the isvc."""
        graph = self._graphs.read(name)
        if graph is not None:
            yield from self._graphs.watch(graph, timeout_s)
            return
        deadline = time.monotonic() + timeout_s
        isvc = self._read(name)
        assert isvc is not None  # noqa: S101 - _read raises unless missing_ok
        generation = int(isvc["metadata"].get("generation", 1))
        yield progress("accepted", f"revision {generation} accepted by the API server")
        tracker = Tracker(generation)
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
        event = self._wait_event("InferenceService", version, remaining_s,
                                 field_selector=f"metadata.name={name}")  # fmt: skip
        if event is not None and event["type"] == "DELETED":
            raise NotFoundError(f"InferenceService '{name}' was deleted meanwhile")
        if event is not None and event["type"] in ("ADDED", "MODIFIED"):
            found = event["object"]
            return dict(found), found["metadata"]["resourceVersion"]
        current = self._read(name)  # timed out, expired, or another ERROR event: read it again
        assert current is not None  # noqa: S101 - _read raises unless missing_ok
        return current, current["metadata"]["resourceVersion"]

    # -- events ------------------------------------------------------------------------------

    def events(self, name: str) -> list[str]:
        """The core/v1 Events of the InferenceService (or split), oldest first, notes included."""
        graph = self._graphs.read(name)
        objects = [("InferenceService", name)] if graph is None else self._graphs.objects(graph)
        with self._errors("InferenceService", name):
            return read_events(self._core, self.namespace, objects)

    def note(self, name: str, text: str) -> None:
        """Record `text` as an Event (reason `NstarxNote`) on the InferenceService (or graph)."""
        target = self._graphs.read(name) or self._read(name)
        assert target is not None  # noqa: S101 - _read raises unless missing_ok
        event = note_event(self._k8s, self.namespace, target, text)
        with self._errors("Event", name):
            self._core.create_namespaced_event(self.namespace, event)

    # -- calling it ---------------------------------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        """`status.url` + `/v1/models/NAME`, with the token of `$NSTARX_KSERVE_TOKEN`."""
        url = self._url(name)
        return Endpoint(url=f"{url}/v1/models/{name}", token=os.environ.get(TOKEN_ENV) or None)

    def metrics(self, name: str, window_s: float = 60) -> dict[str, Any]:
        """The nstarx runtime's own figures, from its control API at the cluster URL.

        A split's are computed from every request its variants' pods answered in the window,
        as the local server computes a split's; `variants` holds each variant's own.
        """
        graph = self._graphs.read(name)
        if graph is not None:
            return self._graphs.metrics(graph, window_s)
        isvc = self._read(name)
        assert isvc is not None  # noqa: S101 - _read raises unless missing_ok
        return pod_metrics(isvc, window_s)

    def _url(self, name: str, isvc: dict[str, Any] | None = None) -> str:
        if isvc is None:
            isvc = self._graphs.read(name) or self._read(name)
        assert isvc is not None  # noqa: S101 - _read raises unless missing_ok
        return url_of(name, isvc)

    def close(self) -> None:
        """Close the API client's connections if this backend made it."""
        if self._owns_client:
            self.api_client.close()

    # -- errors --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, kind: str, name: str | None, namespace: str | None = None) -> Iterator[None]:
        """Kubernetes API answers as the package's errors, each one line."""
        exceptions = self._k8s.client.exceptions
        try:
            yield
        except exceptions.ApiException as exc:
            raise api_error(exc, kind, name, namespace or self.namespace) from None
        except (OSError, self._urllib3_errors()) as exc:
            host = self.api_client.configuration.host
            raise UnavailableError(f"cannot reach the Kubernetes API at {host}: {exc}") from None

    @staticmethod
    def _urllib3_errors() -> type[Exception]:
        import urllib3

        return urllib3.exceptions.HTTPError


def _refuse_local(spec: DeploymentSpec) -> None:
    uri = spec.storage_uri
    if uri is None or is_registry_uri(uri) or is_fetchable(uri):
        return  # none: to_manifests says so; models:/ resolves to the registry's store
    raise InvalidInputError(
        f"storage_uri: '{uri}' is on this machine, which a cluster cannot read; upload the model "
        f"and give a URI KServe fetches from: {', '.join(REMOTE_SCHEMES)}"
    )
