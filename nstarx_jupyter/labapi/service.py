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
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import nstarx_home
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.errors import InvalidInputError, NotFoundError, NstarxError
from nstarx_jupyter.labapi import views
from nstarx_jupyter.labapi.models import (
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
from nstarx_jupyter.labapi.pipelines import PipelineService
from nstarx_jupyter.labapi.scopes import lab_scopes
from nstarx_jupyter.notebook.api import Deployment, deploy
from nstarx_jupyter.notebook.snippets import curl_snippet, python_snippet
from nstarx_jupyter.notebook.usage import USAGE_COST_WINDOW_S
from nstarx_jupyter.security.home import audit_local, key_store

if TYPE_CHECKING:
    from nstarx_jupyter.registry import Registry

__all__ = ["METRICS_WINDOW_S", "LabService"]

log = logging.getLogger(__name__)

METRICS_WINDOW_S = 10.0
"""The window of each deployment's figures (the sidebar polls every few seconds)."""
COST_WINDOW_S = USAGE_COST_WINDOW_S
"""The window of the sidebar's cost figures (per 1,000 predictions, per day): the card's."""
TREND_SINCE_S = {"hour": 3600.0, "day": 86400.0}
"""The sparklines' toggle: the last hour or day of per-minute rollups."""


class LabService:
    """The server extension's logic, on one `LocalBackend` and a registry opened on first use."""

    def __init__(self, backend: LocalBackend | None = None, registry: Registry | None = None):
        self.backend = backend or LocalBackend()
        self._registry = registry
        self.registry_lock = threading.RLock()
        self.pipelines = PipelineService(self.backend, lambda: self.registry, self.registry_lock)

    @property
    def registry(self) -> Registry:
        """The model registry (the default one under `$NSTARX_HOME`, opened on first use)."""
        if self._registry is None:
            from nstarx_jupyter.registry import Registry

            self._registry = Registry()
        return self._registry

    def warm(self) -> None:
        """Open the registry and read the catalog once, so the first real call is quick.

        Only a registry that exists: a lab whose user never registered a model does not
        import MLflow, nor create its store, at start-up.
        """
        from nstarx_jupyter.registry.catalog import default_store

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

    # -- the local server ------------------------------------------------------------------------

    def server_info(self) -> ServerInfo:
        """Whether the local server runs, and where."""
        from nstarx_jupyter import __version__

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

    def deployments(self) -> list[DeploymentInfo]:
        """Every deployment with its latest figures; none while the server is stopped.

        The sidebar polls this: it must not start a server nobody asked for.
        """
        state = self.backend.running()
        if state is None:
            return []
        return [self._info(doc, state.url) for doc in self.backend.deployments()]

    def deployment(self, name: str) -> DeploymentInfo:
        """One deployment."""
        url = self.backend.ensure_server().url
        return self._info(self.backend.describe(name), url)

    def deploy(self, request: DeployRequest) -> DeployResult:
        """Serve a registry version from the sidebar's form, as `nstarx_jupyter.deploy()` does.

        With `canary_percent` and an existing deployment, the version goes out as its canary
        (no key is minted); otherwise it becomes the deployment's model, with a key for it.
        """
        uri = f"models:/{request.model}/{request.version}"
        if request.canary_percent is not None and self._exists(request.name):
            applied = Deployment(request.name, self.backend).canary(uri, request.canary_percent)
            info = self._info(applied, self.backend.ensure_server().url)
            return DeployResult(deployment=info, key=None)
        batching = {"max_batch_size": request.max_batch_size,
                    "max_latency_ms": request.max_latency_ms}  # fmt: skip
        made = deploy(
            uri, request.name, min_replicas=request.min_replicas,
            max_replicas=request.max_replicas, backend=self.backend,
            batching={k: v for k, v in batching.items() if v is not None} or None,
        )  # fmt: skip
        return DeployResult(deployment=self.deployment(request.name), key=made.api_key)

    def delete(self, name: str) -> None:
        """Stop serving a deployment and forget it."""
        self.backend.delete(name)

    def set_canary_percent(self, name: str, change: TrafficChange) -> DeploymentInfo:
        """Move the canary's share of traffic (`InvalidInputError` when no canary runs)."""
        applied = Deployment(name, self.backend).set_canary_percent(change.canary_percent)
        return self._info(applied, self.backend.ensure_server().url)

    def roll(self, name: str, action: str) -> DeploymentInfo:
        """`promote` the canary to all traffic, or `rollback` to the stable revision."""
        rollout = Deployment(name, self.backend)
        applied = rollout.promote() if action == "promote" else rollout.rollback()
        return self._info(applied, self.backend.ensure_server().url)

    def snippets(self, name: str) -> Snippets:
        """How to call a deployment in cURL and Python, the key read from `$NSTARX_API_KEY`."""
        described = self.backend.describe(name)
        spec = described.get("spec") or {}
        url = f"{self.backend.ensure_server().url}/v1/models/{name}"
        example = self._example(spec.get("storage_uri"))
        auth = bool(spec.get("auth", True))
        return Snippets(
            url=url,
            curl=curl_snippet(url, example, None, auth),
            python=python_snippet(url, example, None, auth, key_from_env=True),
        )

    def logs(self, name: str) -> Logs:
        """A deployment's events, oldest first."""
        return Logs(name=name, lines=self.backend.logs(name))

    def _info(self, described: dict[str, Any], server_url: str) -> DeploymentInfo:
        name = str(described["name"])
        figures, per_arm = MetricsSample(), None
        with contextlib.suppress(NstarxError):  # figures are a nicety: a status still shows
            answer = self.backend.metrics(name, METRICS_WINDOW_S)
            figures = views.metrics_sample(answer)
            figures = views.with_usage(figures, answer, self._cost(name))
            if len((described.get("traffic") or {}).get("split") or []) > 1:
                per_arm = views.arm_metrics(self.backend.variants(name, METRICS_WINDOW_S))
        return views.deployment_info(described, server_url, figures, per_arm)

    def _exists(self, name: str) -> bool:
        try:
            self.backend.describe(name)
        except NotFoundError:
            return False
        return True

    def _example(self, storage_uri: object) -> dict[str, Any]:
        """A record to put in the snippets: the registry version's input names, each 0."""
        if not isinstance(storage_uri, str) or not storage_uri.startswith("models:/"):
            return {}
        from nstarx_jupyter.registry import parse_model_uri

        try:
            name, version, alias = parse_model_uri(storage_uri)
            with self.registry_lock:
                signature = self.registry.signature(name, version, alias=alias)
        except NstarxError:
            return {}
        columns = (signature or {}).get("inputs") or []
        return {str(column["name"]): 0.0 for column in columns if "name" in column}

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
            return KeyCreated(info=views.key_info(made), key=str(made["key"]))
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

    def _cost(self, name: str) -> dict[str, Any] | None:
        """The control API's cost of the last hour (None when it cannot say)."""
        try:
            return self.backend.cost(name, COST_WINDOW_S)
        except NstarxError:
            return None

    def trend(self, name: str, since: str) -> Trend:
        """A deployment's per-minute rollups of the last `hour` or `day`, for the sparklines."""
        if since not in TREND_SINCE_S:
            raise InvalidInputError(f"since: 'hour' or 'day', not '{since}'")
        return views.trend(self.backend.history(name, TREND_SINCE_S[since]))
