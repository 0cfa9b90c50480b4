"""`KServeBackend`: deployments as InferenceServices on a Kubernetes cluster.

The manifests are the ones `to_manifests` makes (the same code path as `to_kserve()`), validated
offline first and then server-side applied with the field manager `nstarx` (never forced, so a
field another manager set comes back as a `ConflictError` naming it). Progress comes from a watch
on the InferenceService's status conditions, as KServe's controller writes them
(`pkg/apis/serving/v1beta1/inference_service_status.go`): `PredictorConfigurationReady` and
`PredictorRouteReady` (the predictor's revision and route), `PredictorReady` (it answers its
readiness check), and `Ready` (the aggregate of `PredictorReady` and `IngressReady`).

Uses the official `kubernetes` client (extra `nstarx-jupyter[kserve]`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from nstarx_jupyter.deployment.backend import (
    Description,
    Endpoint,
    Progress,
    Stable,
    Stage,
    Status,
    Target,
    TrafficArm,
    TrafficView,
)
from nstarx_jupyter.deployment.kserve import NSTARX_RUNTIME, from_kserve, to_manifests
from nstarx_jupyter.deployment.kserve import validate_manifest as validate_offline
from nstarx_jupyter.deployment.kubeconfig import in_cluster_namespace, kubeconfig_path
from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    NstarxError,
    UnauthenticatedError,
    UnavailableError,
    UnsupportedError,
    require,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["FIELD_MANAGER", "STABLE_ANNOTATION", "KServeBackend", "spec_of"]

GROUP = "serving.kserve.io"
FIELD_MANAGER = "nstarx"
STABLE_ANNOTATION = "serving.nstarx.io/stable-spec"
"""During a canary: the spec (and revision) that keeps the rest of the traffic, as JSON."""
MANAGED_BY = ("app.kubernetes.io/managed-by", "nstarx")
TOKEN_ENV = "NSTARX_KSERVE_TOKEN"  # noqa: S105 - the variable's name, not a token
"""A bearer token for the cluster's inference URL (an ingress or Authorino in front of it)."""
NOTE_REASON = "NstarxNote"
ACCEPTED_SCHEMES = ("s3://", "gs://", "pvc://", "oci://", "hf://", "azure://", "hdfs://",
                    "webhdfs://", "https://", "http://")  # fmt: skip
_APPLY = "application/apply-patch+yaml"
# kind -> (version, plural, namespaced)
_KINDS: dict[str, tuple[str, str, bool]] = {
    "InferenceService": ("v1beta1", "inferenceservices", True),
    "InferenceGraph": ("v1alpha1", "inferencegraphs", True),
    "ServingRuntime": ("v1alpha1", "servingruntimes", True),
    "ClusterServingRuntime": ("v1alpha1", "clusterservingruntimes", False),
}
_STAGES: tuple[Stage, ...] = ("accepted", "scheduled", "loaded", "ready")
_WAITS_FOR = {
    "scheduled": "the predictor to be scheduled "
    "(PredictorConfigurationReady or PredictorRouteReady)",
    "loaded": "the model to load (PredictorReady)",
    "ready": "the InferenceService to be ready (Ready)",
}
_FAILING = ("Ready", "PredictorReady", "PredictorConfigurationReady", "PredictorRouteReady",
            "IngressReady", "LatestDeploymentReady", "RoutesReady")  # fmt: skip
_CONFLICT_WITH = re.compile(r'conflicts? with "([^"]+)"')


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
            api_client, default_namespace = _connect(self._k8s, context, kubeconfig)
        else:
            default_namespace = "default"
        self.api_client = api_client
        self.namespace = namespace or default_namespace
        self._objects = self._k8s.client.CustomObjectsApi(api_client)
        self._core = self._k8s.client.CoreV1Api(api_client)

    # -- apply -----------------------------------------------------------------------------

    def apply(self, spec: DeploymentSpec, *, if_revision: int | None = None) -> Description:
        """Server-side apply the spec's manifests; with `if_revision`, only onto that generation."""
        if spec.namespace is None:
            spec = spec.replace(namespace=self.namespace)
        _refuse_local(spec)
        try:
            docs = to_manifests(spec)  # validated offline: KServe's schema and webhook rules
        except InvalidInputError as exc:
            if exc.message.startswith("traffic."):  # routing KServe has no field for
                raise UnsupportedError(exc.message) from None
            raise
        if any(doc["kind"] == "InferenceGraph" for doc in docs):
            raise UnsupportedError(
                "traffic.split on KServe: an A/B split becomes an InferenceGraph over one "
                "InferenceService per variant; apply that with apply_manifests (to_kserve() "
                "writes it), the KServe backend does not manage graphs as one deployment yet"
            )
        current = self._read(spec.name, missing_ok=True, namespace=spec.namespace)
        isvc = docs[-1]
        if if_revision is not None:
            seen = _check_revision(spec.name, current, if_revision)
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
        kept = _stable(current)
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
                    f"document {index} ({_label(doc)}): {exc.message}; nothing was applied"
                ) from None
        lines = []
        for doc in docs:
            self._apply_doc(doc)
            lines.append(f"{_label(doc)} applied")
        return lines

    def _apply_doc(self, doc: dict[str, Any]) -> dict[str, Any]:
        version, plural, namespaced = _KINDS[doc["kind"]]
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

    # -- reading ---------------------------------------------------------------------------

    def describe(self, name: str) -> Description:
        """The InferenceService now: status from its conditions, traffic, URL, spec."""
        found = self._read(name)
        assert found is not None  # noqa: S101 - _read raises unless missing_ok
        return self._describe(found)

    def deployments(self) -> list[Description]:
        """Every InferenceService of the namespace (not only nstarx's: the sidebar shows all)."""
        with self._errors("InferenceService", None):
            listed = self._objects.list_namespaced_custom_object(
                GROUP, "v1beta1", self.namespace, "inferenceservices"
            )
        return [self._describe(item) for item in listed.get("items", [])]

    def traffic(self, name: str) -> TrafficView | None:
        """The split KServe reports in `status.components.predictor.traffic`."""
        return self.describe(name).traffic

    def delete(self, name: str) -> None:
        """Delete the InferenceService (its ServingRuntime stays: others may use it)."""
        with self._errors("InferenceService", name):
            self._objects.delete_namespaced_custom_object(
                GROUP, "v1beta1", self.namespace, "inferenceservices", name
            )

    def _read(
        self, name: str, *, missing_ok: bool = False, namespace: str | None = None
    ) -> dict[str, Any] | None:
        namespace = namespace or self.namespace
        try:
            with self._errors("InferenceService", name, namespace):
                found = self._objects.get_namespaced_custom_object(
                    GROUP, "v1beta1", namespace, "inferenceservices", name
                )
        except NotFoundError as exc:
            if missing_ok and not isinstance(exc, _NoKServeError):
                return None
            raise
        return dict(found)

    def _describe(self, isvc: dict[str, Any]) -> Description:
        meta = isvc["metadata"]
        status, reason = _status(isvc)
        url = isvc.get("status", {}).get("url")
        try:
            spec = spec_of(isvc)
        except InvalidInputError as exc:  # a hand-written isvc nstarx cannot run: still listed
            spec = DeploymentSpec.build(name=meta["name"], namespace=meta.get("namespace"))
            reason = reason or f"not an nstarx deployment: {exc.message}"
        times = [_epoch(entry.get("time")) for entry in meta.get("managedFields", [])]
        return Description(
            name=meta["name"],
            target="kserve",
            namespace=meta.get("namespace"),
            revision=int(meta.get("generation", 1)),
            status=status,
            reason=reason,
            stage=_stage(isvc)[0],
            spec=spec,
            traffic=_traffic(isvc),
            stable=_stable(isvc),
            url=f"{url}/v1/models/{meta['name']}" if url else None,
            created=_epoch(meta.get("creationTimestamp")),
            updated=max((t for t in times if t is not None), default=None),
        )

    # -- progress ----------------------------------------------------------------------------

    def watch(self, name: str, *, timeout_s: float = 300.0) -> Iterator[Progress]:
        """Yield accepted -> scheduled -> loaded -> ready (or failed) from a watch on the isvc."""
        deadline = time.monotonic() + timeout_s
        isvc = self._read(name)
        assert isvc is not None  # noqa: S101 - _read raises unless missing_ok
        generation = int(isvc["metadata"].get("generation", 1))
        yield _progress("accepted", f"revision {generation} accepted by the API server")
        tracker = _Tracker(generation)
        version = isvc["metadata"]["resourceVersion"]
        while True:
            yield from tracker.advance(isvc)
            if tracker.done:
                return
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise UnavailableError(tracker.timeout_message(name, timeout_s))
            isvc, version = self._next_change(name, version, remaining_s)

    def _next_change(
        self, name: str, version: str, remaining_s: float
    ) -> tuple[dict[str, Any], str]:
        """The isvc at its next change, or as it is when the watch times out or expires."""
        watcher = self._k8s.watch.Watch()
        stream = watcher.stream(
            self._objects.list_namespaced_custom_object, GROUP, "v1beta1", self.namespace,
            "inferenceservices", field_selector=f"metadata.name={name}",
            resource_version=version, timeout_seconds=max(1, int(remaining_s + 0.999)),
            _request_timeout=remaining_s + 10,
        )  # fmt: skip
        try:
            with self._errors("InferenceService", name):
                for event in self._expired_is_the_end(stream):
                    kind, found = event["type"], event["object"]
                    if kind == "DELETED":
                        raise NotFoundError(f"InferenceService '{name}' was deleted meanwhile")
                    if kind in ("ADDED", "MODIFIED"):
                        return dict(found), found["metadata"]["resourceVersion"]
                    break  # another ERROR event: read it again
        finally:
            watcher.stop()
        current = self._read(name)
        assert current is not None  # noqa: S101 - _read raises unless missing_ok
        return current, current["metadata"]["resourceVersion"]

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

    # -- events ------------------------------------------------------------------------------

    def events(self, name: str) -> list[str]:
        """The core/v1 Events of the InferenceService, oldest first, notes included."""
        selector = f"involvedObject.kind=InferenceService,involvedObject.name={name}"
        with self._errors("InferenceService", name):
            listed = self._core.list_namespaced_event(self.namespace, field_selector=selector)
        rows = []
        for event in listed.items:
            at = (event.event_time or event.last_timestamp or event.first_timestamp
                  or event.metadata.creation_timestamp)  # fmt: skip
            stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else "-"
            line = " ".join((event.message or "").split())
            if event.reason == NOTE_REASON:
                rows.append((at, f"{stamp} note: {line}"))
            else:
                rows.append((at, f"{stamp} {event.type or 'Normal'} {event.reason}: {line}"))
        epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
        rows.sort(key=lambda row: row[0] or epoch)
        return [text for _, text in rows]

    def note(self, name: str, text: str) -> None:
        """Record `text` as an Event (reason `NstarxNote`) on the InferenceService."""
        line = " ".join(text.split())
        if not line or len(line) > 2000:
            raise InvalidInputError("text: a non-empty string of 2000 characters at most")
        isvc = self._read(name)
        assert isvc is not None  # noqa: S101 - _read raises unless missing_ok
        models = self._k8s.client
        now = dt.datetime.now(dt.UTC)
        event = models.CoreV1Event(
            metadata=models.V1ObjectMeta(generate_name=f"{name}."),
            involved_object=models.V1ObjectReference(
                api_version=f"{GROUP}/v1beta1", kind="InferenceService", name=name,
                namespace=self.namespace, uid=isvc["metadata"].get("uid"),
            ),
            reason=NOTE_REASON, message=line, type="Normal", count=1,
            first_timestamp=now, last_timestamp=now,
            source=models.V1EventSource(component=FIELD_MANAGER),
        )  # fmt: skip
        with self._errors("Event", name):
            self._core.create_namespaced_event(self.namespace, event)

    # -- calling it ---------------------------------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        """`status.url` + `/v1/models/NAME`, with the token of `$NSTARX_KSERVE_TOKEN`."""
        url = self._url(name)
        return Endpoint(url=f"{url}/v1/models/{name}", token=os.environ.get(TOKEN_ENV) or None)

    def metrics(self, name: str, window_s: float = 60) -> dict[str, Any]:
        """The nstarx runtime's own figures, from its control API at the cluster URL."""
        isvc = self._read(name)
        assert isvc is not None  # noqa: S101 - _read raises unless missing_ok
        runtime = isvc["spec"]["predictor"].get("model", {}).get("runtime")
        if runtime != NSTARX_RUNTIME:
            raise UnsupportedError(
                f"metrics: '{name}' runs on runtime '{runtime or 'auto'}', not nstarx's; server-"
                "side figures need the nstarx runtime (or read them from Prometheus)"
            )
        url = self._url(name, isvc)
        token = os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            answer = httpx.get(
                f"{url}/nstarx/v1/deployments/{name}/metrics",
                params={"window_s": window_s}, headers=headers, timeout=30,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise UnavailableError(f"metrics: cannot reach {url}: {exc}") from None
        if answer.status_code != 200:
            raise _http_error(answer.status_code, f"metrics of '{name}' at {url}: {answer.text}")
        return dict(answer.json())

    def _url(self, name: str, isvc: dict[str, Any] | None = None) -> str:
        isvc = isvc or self._read(name)
        assert isvc is not None  # noqa: S101 - _read raises unless missing_ok
        url = isvc.get("status", {}).get("url")
        if not url:
            _, reason = _status(isvc)
            raise UnavailableError(
                f"'{name}' is not routed yet: the InferenceService has no status.url"
                + (f" ({reason})" if reason else "")
                + "; watch it until it is ready"
            )
        return str(url).rstrip("/")

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
            raise _api_error(exc, kind, name, namespace or self.namespace) from None
        except (OSError, self._urllib3_errors()) as exc:
            host = self.api_client.configuration.host
            raise UnavailableError(f"cannot reach the Kubernetes API at {host}: {exc}") from None

    @staticmethod
    def _urllib3_errors() -> type[Exception]:
        import urllib3

        return urllib3.exceptions.HTTPError


class _NoKServeError(NotFoundError):
    """The cluster has no such resource type: KServe (its CRDs) is not installed."""


def _api_error(exc: Any, kind: str, name: str | None, namespace: str) -> NstarxError:
    """One line naming what the API server refused and why (from its Status document)."""
    try:
        status = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        status = {}
    if not isinstance(status, dict):
        status = {}
    message = " ".join(str(status.get("message") or exc.reason or "").split())
    details = status.get("details") or {}
    causes = details.get("causes") or []
    what = f"{kind} '{name}'" if name else kind
    code = int(exc.status or 0)
    if code == 422:
        fields = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}".strip()
                           for c in causes) or message  # fmt: skip
        return InvalidInputError(f"{what} refused by the API server: {fields}")
    if code == 409:
        return _conflict(what, message, causes)
    if code == 404:
        if not details.get("name"):
            return _NoKServeError(
                f"the cluster has no {kind} resource ({GROUP}): is KServe installed? "
                f"(kubectl get crd {_KINDS.get(kind, ('', kind.lower() + 's'))[1]}.{GROUP})"
            )
        if details.get("kind") == "namespaces":
            return NotFoundError(f"no namespace '{details['name']}' on this cluster")
        return NotFoundError(f"no {what} in namespace '{namespace}'")
    return _http_error(code, f"{what}: {message or exc.reason}")


def _conflict(what: str, message: str, causes: list[dict[str, Any]]) -> ConflictError:
    owned = [c for c in causes if c.get("reason") == "FieldManagerConflict"]
    if not owned:  # a precondition: the resourceVersion (if_revision) no longer current
        return ConflictError(f"{what} changed meanwhile: {message}")
    managers = sorted({m for c in owned for m in _CONFLICT_WITH.findall(c.get("message", ""))})
    fields = ", ".join(str(c.get("field", "?")).lstrip(".") for c in owned)
    return ConflictError(
        f"{what}: {fields} set by field manager {', '.join(map(repr, managers)) or '?'}; "
        "nstarx does not overwrite another manager's fields: put their value in the spec, or "
        "have them remove it"
    )


def _http_error(code: int, message: str) -> NstarxError:
    kinds: dict[int, type[NstarxError]] = {
        400: InvalidInputError, 401: UnauthenticatedError, 403: ForbiddenError,
        404: NotFoundError, 409: ConflictError, 422: InvalidInputError,
    }  # fmt: skip
    error = kinds.get(code, UnavailableError)
    return error(" ".join(message.split()))


# -- connection ----------------------------------------------------------------------------------


def _connect(k8s: Any, context: str | None, kubeconfig: str | Path | None) -> tuple[Any, str]:
    """An API client and the default namespace: from a kubeconfig, else the pod's account."""
    path = kubeconfig_path(kubeconfig)
    config = k8s.config
    if path is None:
        pod_namespace = in_cluster_namespace()
        if context is None and pod_namespace is not None:
            configuration = k8s.client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return k8s.client.ApiClient(configuration), pod_namespace
        raise UnavailableError(
            "no Kubernetes cluster configured: set KUBECONFIG (or pass kubeconfig=...), or run "
            "inside a pod with a service account"
        )
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c["name"] == context), None) if context else active
        if chosen is None:
            known = ", ".join(sorted(c["name"] for c in contexts))
            raise InvalidInputError(f"context: no context '{context}' in {path}; known: {known}")
        api_client = config.new_client_from_config(
            config_file=path, context=chosen["name"], persist_config=False
        )
    except (config.ConfigException, yaml.YAMLError) as exc:  # missing parts, or not YAML
        raise UnavailableError(f"kubeconfig {path}: {' '.join(str(exc).split())}") from None
    return api_client, chosen.get("context", {}).get("namespace") or "default"


# -- reading an isvc -----------------------------------------------------------------------------


def _refuse_local(spec: DeploymentSpec) -> None:
    uri = spec.storage_uri
    if uri is None or uri.startswith("models:/") or uri.startswith(ACCEPTED_SCHEMES):
        return  # none: to_manifests says so; models:/ resolves to the registry's store
    raise InvalidInputError(
        f"storage_uri: '{uri}' is on this machine, which a cluster cannot read; upload the model "
        f"and give a URI KServe fetches from: {', '.join(s.rstrip('/:') for s in ACCEPTED_SCHEMES)}"
    )


def _check_revision(name: str, current: dict[str, Any] | None, if_revision: int) -> dict[str, Any]:
    if current is None:
        raise ConflictError(f"'{name}' has no revision {if_revision}: it is not deployed")
    generation = int(current["metadata"].get("generation", 1))
    if generation != if_revision:
        raise ConflictError(
            f"'{name}' is at revision {generation}, not {if_revision}: it changed meanwhile"
        )
    return current


def spec_of(isvc: dict[str, Any]) -> DeploymentSpec:
    """The spec an InferenceService was applied from (what `from_kserve` reads of it).

    A stored InferenceService carries what the server and the controller added (`status`,
    managed fields, our own annotations); only the applied part is read.
    """
    meta = isvc["metadata"]
    annotations = {key: value for key, value in meta.get("annotations", {}).items()
                   if key != STABLE_ANNOTATION
                   and key != "kubectl.kubernetes.io/last-applied-configuration"}  # fmt: skip
    labels = {key: value for key, value in meta.get("labels", {}).items()
              if (key, value) != MANAGED_BY}  # fmt: skip
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


def _stable(isvc: dict[str, Any]) -> Stable | None:
    text = isvc["metadata"].get("annotations", {}).get(STABLE_ANNOTATION)
    if not text:
        return None
    try:
        return Stable.model_validate_json(text)
    except ValueError:
        return None  # edited by hand into something else: no stable to offer


def _conditions(isvc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in isvc.get("status", {}).get("conditions", []) if "type" in c}


def _failure(isvc: dict[str, Any]) -> str | None:
    """'Reason: message' of the first failing condition (or the model's failure info)."""
    conditions = _conditions(isvc)
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


def _current(isvc: dict[str, Any]) -> bool:
    """Whether the status speaks of this generation (False right after a change)."""
    observed = isvc.get("status", {}).get("observedGeneration")
    return observed is None or int(observed) >= int(isvc["metadata"].get("generation", 1))


def _status(isvc: dict[str, Any]) -> tuple[Status, str | None]:
    if not isvc.get("status"):
        return "Unknown", "no status yet: is the KServe controller running?"
    if not _current(isvc):
        return "Loading", "the controller has not reconciled this revision yet"
    failure = _failure(isvc)
    if failure:
        return "Failed", failure
    ready = _conditions(isvc).get("Ready", {})
    if ready.get("status") != "True":
        return "Loading", ready.get("reason") or None
    copies = isvc.get("status", {}).get("modelStatus", {}).get("copies", {})
    min_replicas = isvc["spec"]["predictor"].get("minReplicas", 1)
    if min_replicas == 0 and copies.get("totalCopies") == 0:
        return "Idle", None
    return "Ready", None


def _stage(isvc: dict[str, Any]) -> tuple[Stage, str | None]:
    """How far the current revision got, and the failure's 'Reason: message' if it failed."""
    if not _current(isvc):
        return "accepted", None
    failure = _failure(isvc)
    if failure:
        return "failed", failure
    conditions = _conditions(isvc)

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


class _Tracker:
    """Which stages `watch` reported; turns each isvc version into the new stages."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.reached = 0  # index into _STAGES: accepted
        self.done = False
        self.last: dict[str, dict[str, Any]] = {}

    def advance(self, isvc: dict[str, Any]) -> Iterator[Progress]:
        self.last = _conditions(isvc)
        stage, failure = _stage(isvc)
        if stage == "failed":
            self.done = True
            yield _progress("failed", f"revision {self.generation} failed: {failure}", failure)
            return
        target = _STAGES.index(stage)
        while self.reached < target:  # a jump (say straight to Ready) reports the steps between
            self.reached += 1
            yield _progress(_STAGES[self.reached], _MESSAGES[_STAGES[self.reached]])
        self.done = stage == "ready"

    def timeout_message(self, name: str, timeout_s: float) -> str:
        waiting = _STAGES[self.reached + 1]
        seen = "; ".join(
            f"{kind}={c.get('status')}" + (f" ({c['reason']})" if c.get("reason") else "")
            for kind, c in self.last.items()
        )
        return (f"'{name}' was not ready after {timeout_s:g} s: waited for {_WAITS_FOR[waiting]}; "
                f"last conditions: {seen or 'none (no controller wrote a status)'}")  # fmt: skip


def _progress(stage: Stage, message: str, reason: str | None = None) -> Progress:
    return Progress(stage=stage, message=message, reason=reason, at=time.time())


def _traffic(isvc: dict[str, Any]) -> TrafficView | None:
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


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _label(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "not a mapping"
    metadata = doc.get("metadata")
    name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
    return f"{doc.get('kind', '?')}/{name}"
