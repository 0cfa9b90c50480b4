"""The local backend: find or start the detached local server and drive its control API."""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, JsonValue

from nstarx_jupyter.client.inference import error_from
from nstarx_jupyter.config import STATE_FILE, server_dir
from nstarx_jupyter.deployment.backend import (
    DeploymentList,
    DeploymentView,
    Description,
    Endpoint,
    Progress,
    Target,
    TrafficView,
)
from nstarx_jupyter.deployment.local_answers import describe_local, parse_answer, stages_of
from nstarx_jupyter.deployment.local_server import (
    LOG_FILE,
    ServerState,
    alive,
    local_trust,
    read_state,
    spawn_server,
    state_cert,
)
from nstarx_jupyter.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    NstarxError,
    UnavailableError,
)
from nstarx_jupyter.pipelines.served import GraphList, GraphView, PipelineList, PipelineView
from nstarx_jupyter.protocol.control import (
    AbReport,
    AccessRule,
    AccessRules,
    AuditRow,
    AuditRows,
    DeploymentCost,
    DeploymentFigures,
    DeploymentHistory,
    DeploymentLogs,
    DeploymentMetrics,
    DeploymentVariants,
    DriftReferenceView,
    DriftView,
    ExplainView,
    ImportanceView,
    KeyCreated,
    KeyList,
    KeyRecord,
    KeyRotated,
    PriceTable,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nstarx_jupyter.deployment.spec import DeploymentSpec
    from nstarx_jupyter.protocol.analysis import ExplainRows

__all__ = ["LocalBackend", "ServerState"]

START_TIMEOUT_S = 60.0
WATCH_INTERVAL_S = 0.1
"""How often `watch` reads a deployment that is still loading (the local server cannot push)."""
_DOMAIN_ERRORS: dict[int, type[NstarxError]] = {
    400: InvalidInputError, 404: NotFoundError, 409: ConflictError,
}  # fmt: skip
"""Control-API answers raised as the domain error a caller catches (others: `InferenceError`)."""
_M = TypeVar("_M", bound=BaseModel)


_IDEMPOTENT = frozenset({"GET", "HEAD"})
"""Safe methods, which a call repeats once when its connection drops before an answer. (PUT and
DELETE are idempotent by RFC 9110, but a repeated DELETE that had landed would report 404.)"""


class LocalBackend:
    """Deployments on this machine's server: one process per `$NSTARX_HOME`, started on demand.

    The server is started detached (its own session, output in `server.log`), so it outlives the
    notebook kernel that started it; it serves the saved deployments again when restarted.
    Besides the `Backend` protocol it holds what only this server has: API keys, access rules,
    the audit log, pipelines, per-variant figures and the A/B report.
    """

    target: Target = "local"

    def __init__(
        self, state_dir: Path | None = None, *, timeout_s: float = 120.0, start: bool = True
    ) -> None:
        self.state_dir = state_dir or server_dir()
        self.timeout_s = timeout_s
        self.start = start
        """Start a server when none runs; False (`attached()`): a call then raises instead."""
        self._http_client: httpx.Client | None = None
        self._reached: ServerState | None = None
        """The server the last control call reached: the next one goes straight to it."""

    @property
    def _http(self) -> httpx.Client:
        """One pooled client for every call (a new one per call costs more than the call)."""
        if self._http_client is None:
            self._http_client = httpx.Client(
                timeout=self.timeout_s, verify=local_trust(self.state_dir / STATE_FILE)
            )
        return self._http_client

    # -- the server process --------------------------------------------------------------------

    def running(self) -> ServerState | None:
        """The running server's state, or None (a stale state file from a dead one is ignored)."""
        state = read_state(self.state_dir / STATE_FILE)
        if state is None or not alive(state.pid):
            return None
        try:
            self._http.get(f"{state.url}/v2/health/live", timeout=2).raise_for_status()
        except httpx.HTTPError:
            return None
        return state

    def attached(self) -> LocalBackend:
        """The same server's backend for work in the background, which never starts a server.

        A registration finishing after `nstarx stop` (or a test's teardown) must not bring the
        server back: nobody would stop that one.
        """
        return LocalBackend(self.state_dir, timeout_s=self.timeout_s, start=False)

    def _server(self) -> ServerState:
        """The running server; one started for it unless `start` is off."""
        if self.start:
            return self.ensure_server()
        state = self.running()
        if state is None:
            raise UnavailableError(f"the local server ({self.state_dir}) is not running")
        return state

    def ensure_server(self) -> ServerState:
        """The running server, starting one (detached, on a free port) when none answers."""
        state = self.running()
        if state is not None:
            return state
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        pid = spawn_server(self.state_dir)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not alive(pid):
                raise UnavailableError(
                    f"the local server stopped while starting; see {self.state_dir / LOG_FILE}"
                )
            state = self.running()
            if state is not None and state.pid == pid:
                return state
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        raise UnavailableError(f"the local server did not start in {START_TIMEOUT_S:.0f} s")

    def stop(self) -> bool:
        """Stop the running server (its deployments stay saved); False when none was running."""
        state = self.running()
        if state is None:
            return False
        os.kill(state.pid, 15)
        self.close()  # its pooled connections die with the server
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and alive(state.pid):
            time.sleep(0.05)
        return True

    def close(self) -> None:
        """Close the pooled connections to the server (the server keeps running)."""
        self._reached = None
        if self._http_client is not None:
            self._http_client.close()
            self._http_client = None

    def __del__(self) -> None:
        # Deployment handles each hold a backend and are dropped without ceremony in notebooks.
        client = getattr(self, "_http_client", None)
        if client is not None:
            client.close()

    # -- the control API -----------------------------------------------------------------------

    def apply(self, spec: DeploymentSpec, *, if_revision: int | None = None) -> Description:
        """Create or replace a deployment and return its description once it serves.

        With `if_revision`, only while that revision is current (else `ConflictError`).
        """
        doc = spec.model_dump(mode="json", exclude_defaults=True)
        query = "" if if_revision is None else f"?if_revision={if_revision}"
        path = f"/deployments/{spec.name}{query}"
        return self._description(self._answer(DeploymentView, "PUT", path, doc))

    def describe(self, name: str) -> Description:
        """One deployment's description (spec, revision, status, traffic)."""
        return self._description(self._answer(DeploymentView, "GET", f"/deployments/{name}"))

    def deployments(self) -> list[Description]:
        """Every deployment's description."""
        listed = self._answer(DeploymentList, "GET", "/deployments").root
        return [self._description(view) for view in listed]

    def traffic(self, name: str) -> TrafficView | None:
        """Where the deployment's requests go now (None before it serves)."""
        return self.describe(name).traffic

    def watch(self, name: str, *, timeout_s: float = 300.0) -> Iterator[Progress]:
        """Follow the current revision to `ready` or `failed`, from what `describe` says.

        The local server has no watch API (its `apply` returns once the model serves, so this
        usually ends at once); short polling of `describe` is the one way here. A cluster
        backend watches instead.
        """
        deadline = time.monotonic() + timeout_s
        said: set[str] = set()
        while True:
            described = self.describe(name)
            for step in stages_of(described):
                if step.stage not in said:
                    said.add(step.stage)
                    yield step
                if step.stage in ("ready", "failed"):
                    return
            if time.monotonic() >= deadline:
                waited = "loaded" if "scheduled" in said else "scheduled"
                raise UnavailableError(
                    f"'{name}' was not {waited} after {timeout_s:g} s "
                    f"(status {described.status}: {described.reason or 'no reason given'})"
                )
            time.sleep(WATCH_INTERVAL_S)

    def endpoint(self, name: str) -> Endpoint:
        """The model's URL on the running server, with the admin token and its TLS trust."""
        state = self._reached or self.ensure_server()
        cert = state_cert(self.state_dir / STATE_FILE)
        return Endpoint(url=f"{state.url}/v1/models/{name}", token=state.token,
                        verify=cert or True)  # fmt: skip

    def metrics(self, name: str, window_s: float = 60) -> DeploymentFigures:
        """Requests, rate, error rate and p50/p95/p99 (ms) over the last `window_s` seconds.

        The `Backend` protocol's answer; it is `deployment_metrics`' (`DeploymentMetrics`).
        """
        return self.deployment_metrics(name, window_s)

    def deployment_metrics(self, name: str, window_s: float = 60) -> DeploymentMetrics:
        """Requests, rate, error rate, p50/p95/p99 (ms) and resource use over `window_s` s."""
        path = f"/deployments/{name}/metrics?window_s={window_s}"
        return self._answer(DeploymentMetrics, "GET", path)

    def variants(self, name: str, window_s: float = 60) -> DeploymentVariants:
        """Per variant and revision: share of traffic and the last `window_s` s of requests."""
        path = f"/deployments/{name}/variants?window_s={window_s}"
        return self._answer(DeploymentVariants, "GET", path)

    def ab_report(
        self,
        name: str,
        *,
        control: str | None = None,
        window_s: float | None = None,
        minimum_effect: float | None = None,
        alpha: float | None = None,
        power: float | None = None,
    ) -> AbReport:
        """The server's A/B analysis of a deployment (see `ControlPlane.ab_report`)."""
        query = {"control": control, "window_s": window_s, "minimum_effect": minimum_effect,
                 "alpha": alpha, "power": power}  # fmt: skip
        params = urlencode({key: value for key, value in query.items() if value is not None})
        return self._answer(AbReport, "GET", f"/deployments/{name}/ab?{params}")

    def note(self, name: str, text: str) -> None:
        """Append a line to a deployment's events (what an automated rollout decided, say)."""
        self._call("POST", f"/deployments/{name}/logs", {"text": text})

    def events(self, name: str) -> list[str]:
        """A deployment's events: deploys, revisions, failures with their reasons, deletion."""
        return self._answer(DeploymentLogs, "GET", f"/deployments/{name}/logs").lines

    def delete(self, name: str) -> None:
        """Stop serving a deployment and forget it."""
        self._call("DELETE", f"/deployments/{name}")

    def _description(self, view: DeploymentView) -> Description:
        """The control API's answer as a `Description`; `url` on the server the call reached."""
        state = self._reached
        url = None if state is None else f"{state.url}/v1/models/{view.name}"
        return describe_local(view, url)

    def put_pipeline(self, spec: dict[str, JsonValue]) -> PipelineView:
        """Serve a pipeline (its `PipelineSpec` as a dict) at `/v1/models/NAME/predict`."""
        return self._answer(PipelineView, "PUT", f"/pipelines/{spec['name']}", spec)

    def pipelines(self) -> list[PipelineView]:
        """The served pipelines."""
        return self._answer(PipelineList, "GET", "/pipelines").root

    def delete_pipeline(self, name: str) -> None:
        """Stop serving a pipeline (and the models it brought)."""
        self._call("DELETE", f"/pipelines/{name}")

    def put_graph(self, spec: dict[str, JsonValue]) -> GraphView:
        """Serve a KServe InferenceGraph (its `GraphSpec` as a dict) at its name's endpoints."""
        return self._answer(GraphView, "PUT", f"/graphs/{spec['name']}", spec)

    def graphs(self) -> list[GraphView]:
        """The served inference graphs."""
        return self._answer(GraphList, "GET", "/graphs").root

    def delete_graph(self, name: str) -> None:
        """Stop serving an inference graph."""
        self._call("DELETE", f"/graphs/{name}")

    def create_key(
        self,
        name: str = "",
        scopes: list[str] | None = None,
        *,
        expires_in_s: float | None = None,
        rate_limit: float | None = None,
        burst: int | None = None,
        deployment: str | None = None,
    ) -> KeyCreated:
        """Mint an API key (scopes such as `predict:iris`; default `predict:*`).

        `.key` is the key, shown once; the server keeps only its digest. `deployment`: the
        deployment whose deploy mints it (deleting that deployment revokes the key).
        """
        body = {"name": name, "scopes": scopes, "expires_in_s": expires_in_s,
                "rate_limit": rate_limit, "burst": burst, "deployment": deployment}  # fmt: skip
        made = {k: v for k, v in body.items() if v is not None}
        return self._answer(KeyCreated, "POST", "/keys", made)

    def list_keys(self) -> list[KeyRecord]:
        """Every API key by id and prefix (never the key), revoked ones marked."""
        return self._answer(KeyList, "GET", "/keys").root

    def revoke_key(self, key_id: str) -> KeyRecord:
        """Revoke a key by id or prefix (`nsx_1a2b3c4d`); calls with it get 401 from now on."""
        return self._answer(KeyRecord, "DELETE", f"/keys/{key_id}")

    def rotate_key(self, key_id: str, grace_s: float = 0.0) -> KeyRotated:
        """Replace a key by a new one (same name, scopes, limits); the old one works `grace_s`."""
        return self._answer(KeyRotated, "POST", f"/keys/{key_id}/rotate", {"grace_s": grace_s})

    def access(self) -> dict[str, AccessRule]:
        """Every registry model's access rules."""
        return self._answer(AccessRules, "GET", "/access").root

    def set_access(self, model: str, **lists: list[str] | None) -> AccessRule:
        """Set who may `read`, `deploy` and `call` registry model `model` (None lifts a list)."""
        return self._answer(AccessRule, "PUT", f"/access/{model}", lists)

    def audit(self, **filters: str | float | None) -> list[AuditRow]:
        """Audit records, oldest first; filters: since, until, key, action, model, status, limit."""
        params = urlencode({key: value for key, value in filters.items() if value is not None})
        return self._answer(AuditRows, "GET", f"/audit?{params}").root

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One control-API call, to the server the last call reached when there was one.

        Looking the server up (its state file, its pid, a health request) cost about as much as
        the call itself, on every call: a sidebar poll over 20 deployments made 21 of them. A
        server that has gone away since (stopped, restarted on another port) refuses the
        connection, so nothing was sent: the call then finds or starts one and goes again.
        """
        state = self._reached or self._server()
        try:
            response = self._send(state, method, path, body)
        except UnavailableError as exc:
            if method in _IDEMPOTENT and isinstance(exc.__cause__, httpx.RemoteProtocolError):
                # The pooled connection closed as the call went out ("Server disconnected
                # without sending a response"): the same call again is safe for these methods.
                response = self._send(state, method, path, body)
            elif self._reached is None or not isinstance(exc.__cause__, httpx.ConnectError):
                raise
            else:
                self.close()  # and forget the server: it is gone
                state = self._server()
                response = self._send(state, method, path, body)
        self._reached = state
        if response.status_code == 204:
            return None
        if response.status_code >= 400:
            error = error_from(response)
            domain = _DOMAIN_ERRORS.get(response.status_code)
            raise error if domain is None else domain(error.message)
        return response.json()

    def _answer(self, model: type[_M], method: str, path: str, body: Any = None) -> _M:
        """A control-API call whose answer is `model` (`protocol.control`), checked as it enters."""
        doc = self._call(method, path, body)
        return parse_answer(model, doc, f"{method} {path.split('?')[0]}")

    def _send(self, state: ServerState, method: str, path: str, body: Any) -> httpx.Response:
        try:
            return self._http.request(
                method, f"{state.url}/nstarx/v1{path}", json=body,
                headers={"authorization": f"Bearer {state.token}"},
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise UnavailableError(f"the local server did not answer: {exc}") from exc

    # -- resource use, cost, trends (issue 19) ---------------------------------------------------

    def cost(self, name: str, window_s: float = 3600) -> DeploymentCost:
        """What a deployment cost over the last `window_s` s, in all and per variant (server)."""
        path = f"/deployments/{name}/cost?window_s={window_s}"
        return self._answer(DeploymentCost, "GET", path)

    def history(self, name: str, since_s: float = 86400) -> DeploymentHistory:
        """A deployment's per-minute rollups of the last `since_s` seconds (30 days kept)."""
        path = f"/deployments/{name}/history?since_s={since_s}"
        return self._answer(DeploymentHistory, "GET", path)

    def drift(self, name: str, window: str = "1h") -> DriftView:
        """A deployment's drift over the last `window` (`"1h"`, `"15m"`, seconds): the server's."""
        query = urlencode({"window": window})
        return self._answer(DriftView, "GET", f"/deployments/{name}/drift?{query}")

    def drift_reference(self, name: str) -> DriftReferenceView:
        """The deployment's drift reference: source, rows, features (`source: none` without)."""
        return self._answer(DriftReferenceView, "GET", f"/deployments/{name}/drift/reference")

    def set_drift_reference(
        self, name: str, reference: dict[str, JsonValue] | None
    ) -> DriftReferenceView | None:
        """Set the drift reference (`{"columns": ...}` or `{"window": ...}`); None removes it.

        Returns what the server keeps (None after a removal).
        """
        path = f"/deployments/{name}/drift/reference"
        if reference is None:
            self._call("DELETE", path)
            return None
        return self._answer(DriftReferenceView, "PUT", path, reference)

    def explain(self, name: str, rows: ExplainRows, label: str | None = None) -> ExplainView:
        """SHAP values of `rows` (at most 100) by the deployment's model: the server's answer."""
        body: dict[str, object] = {"rows": rows}
        if label is not None:
            body["class"] = label
        return self._answer(ExplainView, "POST", f"/deployments/{name}/explain", body)

    def importance(self, name: str, window: str = "1h") -> ImportanceView:
        """Mean |SHAP value| per feature over the window's sampled live rows: the server's."""
        query = urlencode({"window": window})
        return self._answer(ImportanceView, "GET", f"/deployments/{name}/importance?{query}")

    def prices(self) -> PriceTable:
        """The server's price table (CPU-hour, GB-hour, GPU-hour, currency, source)."""
        return self._answer(PriceTable, "GET", "/prices")

    def set_prices(self, prices: dict[str, float | str]) -> PriceTable:
        """Set the price table (kept in `$NSTARX_HOME/prices.json`); unnamed prices: defaults."""
        return self._answer(PriceTable, "PUT", "/prices", prices)
