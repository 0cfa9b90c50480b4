"""What the lab's sidebar asks for, without tornado: the local server, the catalog, deployments.

Every method blocks (HTTP to the local server, MLflow): the handlers run them on worker
threads, never on Jupyter's event loop. Calls into the registry take `registry_lock`, since
MLflow's fluent API, which the registry points at its store for a block, is process-wide.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from nstarx_jupyter import __version__
from nstarx_jupyter.config import nstarx_home
from nstarx_jupyter.deployment.kubeconfig import (
    in_cluster_namespace,
    kube_contexts,
    kubeconfig_path,
)
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.service import DeploymentService, backend_for
from nstarx_jupyter.errors import (
    InvalidInputError,
    MissingExtraError,
    NotFoundError,
    NstarxError,
)
from nstarx_jupyter.labapi import views
from nstarx_jupyter.labapi.models import (
    ClusterContext,
    Contexts,
    DeploymentInfo,
    DeployRequest,
    DeployResult,
    KeyCreate,
    KeyCreated,
    KeyInfo,
    Logs,
    MetricsSample,
    ModelSummary,
    ModelVersionInfo,
    ServerInfo,
    Snippets,
    TrafficChange,
    Trend,
)
from nstarx_jupyter.labapi.pipeline_document import PipelineService
from nstarx_jupyter.labapi.scopes import lab_scopes
from nstarx_jupyter.model_uri import is_registry_uri, registry_uri
from nstarx_jupyter.notebook.drift import DEFAULT_WINDOW as DRIFT_BADGE_WINDOW
from nstarx_jupyter.notebook.snippets import curl_snippet, python_snippet
from nstarx_jupyter.notebook.usage import USAGE_COST_WINDOW_S
from nstarx_jupyter.registry import Registry, parse_model_uri
from nstarx_jupyter.registry.catalog import default_store
from nstarx_jupyter.security.home import audit_local, key_store

if TYPE_CHECKING:
    from nstarx_jupyter.deployment.backend import Description, Target
    from nstarx_jupyter.protocol.control import DeploymentCost, DriftView

__all__ = ["LOCAL", "METRICS_WINDOW_S", "LabService", "Where"]

log = logging.getLogger(__name__)

METRICS_WINDOW_S = 10.0
"""The window of each deployment's figures (the sidebar polls every few seconds)."""
CLUSTER_FIGURES_BACKOFF_S = 60.0
"""After a cluster deployment's figures could not be read (its URL unreachable from here, a
runtime without nstarx's control API), the list skips them this long: each try may take the
backend's whole HTTP timeout, and the sidebar's list waits for it."""
Where = tuple[str, str | None, str | None]
"""Which deployments a call means: (target, kubeconfig context, namespace)."""
LOCAL: Where = ("local", None, None)
COST_WINDOW_S = USAGE_COST_WINDOW_S
"""The window of the sidebar's cost figures (per 1,000 predictions, per day): the card's."""
DRIFT_WINDOW = DRIFT_BADGE_WINDOW
"""The window of the sidebar's drift badge: the card's (the server's default, its cached report)."""
TREND_SINCE_S = {"hour": 3600.0, "day": 86400.0}
"""The sparklines' toggle: the last hour or day of per-minute rollups."""


class LabService:
    """The server extension's logic, on one `LocalBackend` and a registry opened on first use.

    Deployments go through `DeploymentService`: on the local server by default, on a cluster
    when the list names `target=kserve` (and a kubeconfig `context`).
    """

    def __init__(self, backend: LocalBackend | None = None, registry: Registry | None = None):
        self.backend = backend or LocalBackend()
        self.service = DeploymentService(self.backend)
        self._clusters: dict[Where, DeploymentService] = {}
        self._clusters_lock = threading.Lock()
        self._no_figures: dict[tuple[str, str], float] = {}  # (url or name, name) -> retry at
        self._registry = registry
        self.registry_lock = threading.RLock()
        self.pipelines = PipelineService(self.backend, lambda: self.registry, self.registry_lock)

    @property
    def registry(self) -> Registry:
        """The model registry (the default one under `$NSTARX_HOME`, opened on first use)."""
        if self._registry is None:
            self._registry = Registry()
        return self._registry

    def warm(self) -> None:
        """Open the registry and read the catalog once, so the first real call is quick.

        Only a registry that exists: a lab whose user never registered a model does not
        import MLflow, nor create its store, at start-up.
        """
        if not os.environ.get("MLFLOW_TRACKING_URI") and not default_store().exists():
            return
        try:
            self.models()
        except Exception as exc:  # noqa: BLE001 - a cold start is slower, not broken
            log.info("warming the registry failed: %s", exc)

    def close(self) -> None:
        """Unload the models test runs loaded and close the connections to the local server."""
        self.pipelines.close()
        self.backend.close()
        with self._clusters_lock:
            for cluster in self._clusters.values():
                cluster.backend.close()
            self._clusters.clear()

    # -- the local server ------------------------------------------------------------------------

    def server_info(self) -> ServerInfo:
        """Whether the local server runs, and where."""
        state = self.backend.running()
        home = str(nstarx_home())
        if state is None:
            return ServerInfo(running=False, home=home, version=__version__)
        return ServerInfo(running=True, url=state.url, grpc=state.grpc, pid=state.pid,
                          home=home, version=__version__)  # fmt: skip

    def start_server(self) -> ServerInfo:
        """Start the local server (detached) unless it runs already."""
        self.backend.ensure_server()
        return self.server_info()

    # -- the model catalog -----------------------------------------------------------------------

    def models(self, search: str = "") -> list[ModelSummary]:
        """The registered models whose name, tags, aliases or description contain `search`."""
        with self.registry_lock:
            frame = self.registry.models()
        found = [views.model_summary(row) for row in frame.to_dict(orient="records")]
        return [model for model in found if views.matches(model, search)]

    def model_versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of model `name`, newest first."""
        with self.registry_lock:
            frame = self.registry.versions(name)
        return [views.model_version_info(name, row) for row in frame.to_dict(orient="records")]

    # -- deployments -----------------------------------------------------------------------------

    def deployments(
        self, target: Target = "local", context: str | None = None, namespace: str | None = None
    ) -> list[DeploymentInfo]:
        """Every deployment of `target` with its latest figures; none while the server is stopped.

        The sidebar polls this: it must not start a local server nobody asked for.
        """
        where = (target, context, namespace)
        if where == LOCAL and self.backend.running() is None:
            return []
        service = self.service_for(where)
        return [self._info(described, service) for described in service.deployments()]

    def service_for(self, where: Where = LOCAL) -> DeploymentService:
        """The deployment service of `where`: the local one, or a cluster's (made once each)."""
        if where == LOCAL:
            return self.service
        target, context, namespace = where
        with self._clusters_lock:
            found = self._clusters.get(where)
            if found is None:
                backend = backend_for(cast("Target", target), context=context, namespace=namespace)
                # the list shows a rollout's way to Ready: no request waits for the controller
                found = self._clusters[where] = DeploymentService(backend, wait_rollouts=False)
            return found

    def deployment(self, name: str, where: Where = LOCAL) -> DeploymentInfo:
        """One deployment."""
        service = self.service_for(where)
        return self._info(service.describe(name), service)

    def deploy(self, request: DeployRequest, where: Where = LOCAL) -> DeployResult:
        """Serve a registry version from the sidebar's form, as `nstarx_jupyter.deploy()` does.

        With `canary_percent` and an existing deployment, the version goes out as its canary
        (no key is minted); otherwise it becomes the deployment's model, with a key for it.
        On a cluster the answer comes once the API server accepted the InferenceService: the
        list shows its way to Ready (no key either: keys are the local server's).
        """
        if where == LOCAL and request.storage_uri is not None:
            raise InvalidInputError("storage_uri: only for a cluster (target 'kserve')")
        if where != LOCAL:  # a registry version resolves to its artifact's URI through MLflow
            with self.registry_lock:
                applied = self._apply_form(request, self.service_for(where))
            return DeployResult(deployment=self._info(applied, self.service_for(where)), key=None)
        if request.canary_percent is not None and self._exists(request.name):
            applied = self._apply_form(request, self.service)
            return DeployResult(deployment=self._info(applied, self.service), key=None)
        self._apply_form(request, self.service)
        self.service.wait_ready(request.name)
        name = request.name  # its key goes when it is deleted (`KeyStore.revoke_minted_for`)
        made = self.backend.create_key(f"sidebar deploy of {name}", [f"predict:{name}"],
                                       deployment=name)  # fmt: skip
        return DeployResult(deployment=self.deployment(request.name), key=made.key)

    def _apply_form(self, request: DeployRequest, service: DeploymentService) -> Description:
        """The form's version as the deployment's canary (if it asks and exists), or its model."""
        uri, uploaded = registry_uri(request.model, request.version), request.storage_uri
        if request.canary_percent is not None and self._exists(request.name, service):
            return service.canary(request.name, uri, request.canary_percent,
                                  storage_uri=uploaded)[0]  # fmt: skip
        batching = {"max_batch_size": request.max_batch_size,
                    "max_latency_ms": request.max_latency_ms}  # fmt: skip
        return service.deploy(
            uri, request.name, storage_uri=uploaded, min_replicas=request.min_replicas,
            max_replicas=request.max_replicas,
            batching={k: v for k, v in batching.items() if v is not None} or None,
        ).description  # fmt: skip

    def delete(self, name: str, where: Where = LOCAL) -> None:
        """Stop serving a deployment and forget it."""
        self.service_for(where).delete(name)

    def set_canary_percent(
        self, name: str, change: TrafficChange, where: Where = LOCAL
    ) -> DeploymentInfo:
        """Move the canary's share of traffic (`InvalidInputError` when no canary runs)."""
        service = self.service_for(where)
        return self._info(service.set_canary_percent(name, change.canary_percent), service)

    def roll(self, name: str, action: str, where: Where = LOCAL) -> DeploymentInfo:
        """`promote` the canary to all traffic, or `rollback` to the stable revision."""
        service = self.service_for(where)
        applied = service.promote(name) if action == "promote" else service.rollback(name)
        return self._info(applied, service)

    def snippets(self, name: str, where: Where = LOCAL) -> Snippets:
        """How to call a deployment in cURL and Python, the key read from `$NSTARX_API_KEY`."""
        service = self.service_for(where)
        spec = service.describe(name).spec
        url = service.backend.endpoint(name).url
        example = self._example(spec.storage_uri)
        return Snippets(
            url=url,
            curl=curl_snippet(url, example, None, spec.auth),
            python=python_snippet(url, example, None, spec.auth, key_from_env=True),
        )

    def logs(self, name: str, where: Where = LOCAL) -> Logs:
        """A deployment's events, oldest first."""
        return Logs(name=name, lines=self.service_for(where).events(name))

    def _info(self, described: Description, service: DeploymentService) -> DeploymentInfo:
        name = described.name
        figures, per_arm = MetricsSample(), None
        if service.target != "local":  # drift, resource use and cost are the local server's
            return views.deployment_info(described, self._cluster_figures(described, service))
        drift = views.drift_badge(self._drift(name))
        with contextlib.suppress(NstarxError):  # figures are a nicety: a status still shows
            answer = service.local("metrics").deployment_metrics(name, METRICS_WINDOW_S)
            figures = views.metrics_sample(answer)
            figures = views.with_usage(figures, answer, self._cost(name))
            if described.traffic is not None and len(described.traffic.split) > 1:
                arms = service.local("variants").variants(name, METRICS_WINDOW_S)
                per_arm = views.arm_metrics(arms)
        return views.deployment_info(described, figures, per_arm, drift)

    def _cluster_figures(self, described: Description, service: DeploymentService) -> MetricsSample:
        """Requests and latency from the runtime at the cluster's URL, once it is Ready.

        Resource use and cost are the local server's: none here (the sidebar hides them). A
        deployment whose figures could not be read is skipped for `CLUSTER_FIGURES_BACKOFF_S`.
        """
        if described.status != "Ready":  # not routed yet: no URL to ask
            return MetricsSample()
        key = (described.url or "", described.name)
        if self._no_figures.get(key, 0.0) > time.monotonic():
            return MetricsSample()
        try:
            answer = service.backend.metrics(described.name, METRICS_WINDOW_S)
            return views.metrics_sample(answer)
        except NstarxError as exc:
            log.info("no figures of %s: %s", described.name, exc)
            self._no_figures[key] = time.monotonic() + CLUSTER_FIGURES_BACKOFF_S
            return MetricsSample()

    def _exists(self, name: str, service: DeploymentService | None = None) -> bool:
        try:
            (service or self.service).describe(name)
        except NotFoundError:
            return False
        return True

    def _example(self, storage_uri: object) -> dict[str, Any]:
        """A record to put in the snippets: the registry version's inputs, 0 or a string each."""
        if not isinstance(storage_uri, str) or not is_registry_uri(storage_uri):
            return {}

        try:
            name, version, alias = parse_model_uri(storage_uri)
            with self.registry_lock:
                signature = self.registry.signature(name, version, alias=alias)
        except NstarxError:
            return {}
        columns = (signature or {}).get("inputs") or []
        if len(columns) == 1 and columns[0].get("type") == "string" and "name" not in columns[0]:
            return {"text": "example text"}  # a text model: one document per row
        return {str(column["name"]): "a" if column.get("type") == "string" else 0.0
                for column in columns if "name" in column}  # fmt: skip

    # -- clusters ------------------------------------------------------------------------------

    def contexts(self) -> Contexts:
        """The kubeconfig's contexts for the picker; none, with the reason, when it has none.

        Not an error: a lab without the `kserve` extra or a kubeconfig deploys locally only.
        """
        try:
            path, found = kube_contexts()
        except NstarxError as exc:
            pod_namespace = in_cluster_namespace() if kubeconfig_path() is None else None
            if pod_namespace is not None and not isinstance(exc, MissingExtraError):
                return Contexts(in_cluster_namespace=pod_namespace)  # the pod's own cluster
            return Contexts(reason=exc.message)
        contexts = [ClusterContext(name=c.name, cluster=c.cluster, namespace=c.namespace,
                                   current=c.current) for c in found]  # fmt: skip
        reason = None if contexts else f"kubeconfig {path} has no contexts"
        return Contexts(kubeconfig=path, contexts=contexts, reason=reason)

    # -- API keys --------------------------------------------------------------------------------

    def keys(self) -> list[KeyInfo]:
        """Every API key by prefix (never the key); read from the key file when no server runs."""
        if self.backend.running() is not None:
            return [views.key_info(record) for record in self.backend.list_keys()]
        return [views.key_info(record.public()) for record in key_store().records()]

    def create_key(self, request: KeyCreate) -> KeyCreated:
        """Mint a key for named deployments (`lab_scopes`); the answer holds it this once."""
        scopes = list(lab_scopes(request.scopes))
        if self.backend.running() is not None:
            made = self.backend.create_key(request.name, scopes)
            return KeyCreated(info=views.key_info(made), key=made.key)
        record, secret = key_store().create(request.name, scopes)
        audit_local("keys.create")
        return KeyCreated(info=views.key_info(record.public()), key=secret)

    def revoke_key(self, key_id: str) -> KeyInfo:
        """Revoke a key by id or prefix; it stays listed, as revoked."""
        if self.backend.running() is not None:
            return views.key_info(self.backend.revoke_key(key_id))
        record = key_store().revoke(key_id)
        audit_local("keys.revoke")
        return views.key_info(record.public())

    # -- resource use, cost, trends (issue 19) ---------------------------------------------------

    def _cost(self, name: str) -> DeploymentCost | None:
        """The control API's cost of the last hour (None when it cannot say)."""
        try:
            return self.backend.cost(name, COST_WINDOW_S)
        except NstarxError:
            return None

    def _drift(self, name: str) -> DriftView | None:
        """The control API's drift over the last hour (None when it cannot say)."""
        try:
            return self.backend.drift(name, DRIFT_WINDOW)
        except NstarxError:
            return None

    def trend(self, name: str, since: str) -> Trend:
        """A deployment's per-minute rollups of the last `hour` or `day`, for the sparklines."""
        if since not in TREND_SINCE_S:
            raise InvalidInputError(f"since: 'hour' or 'day', not '{since}'")
        return views.trend(self.backend.history(name, TREND_SINCE_S[since]))
