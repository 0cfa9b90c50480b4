"""The ASGI app factory: a model repository, its data plane and the REST routes over them."""

from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from nstarx_jupyter.config import DEFAULT_HTTP_PORT, DEFAULT_MAX_BODY_BYTES
from nstarx_jupyter.security import Guard, admin_token
from nstarx_jupyter.security.audit_log import AuditLog
from nstarx_jupyter.security.home import access_rules, audit_dir, key_store, security_dir
from nstarx_jupyter.security.hosts import AllowedHosts
from nstarx_jupyter.serving.audit_trail import CallAudit
from nstarx_jupyter.serving.dataplane import DataPlane
from nstarx_jupyter.serving.http_errors import handle_http_exception
from nstarx_jupyter.serving.inference_http import InferenceApp
from nstarx_jupyter.serving.metrics import ServerMetrics
from nstarx_jupyter.serving.repository import ModelRepository
from nstarx_jupyter.serving.request_body import BodyBudget
from nstarx_jupyter.serving.rest import RestHandlers
from nstarx_jupyter.serving.sinks import SinkHub
from nstarx_jupyter.serving.stream import StreamEndpoint
from nstarx_jupyter.serving.trust import default_policy
from nstarx_jupyter.serving.usage import UsageMonitor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable
    from pathlib import Path

    from prometheus_client import CollectorRegistry

    from nstarx_jupyter.pipelines import PipelineSpec
    from nstarx_jupyter.security import DeploymentFacts
    from nstarx_jupyter.serving.settings import ModelSettings

__all__ = ["ServingConfig", "create_app", "make_guard"]


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """Server-wide settings; per-model ones live in `ModelSettings`."""

    host: str = "127.0.0.1"
    """Address to bind; loopback unless the user opens it up."""
    port: int = DEFAULT_HTTP_PORT
    """REST port; 0 picks a free one."""
    grpc_port: int | None = None
    """V2 gRPC port; None serves no gRPC, 0 picks a free one."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger request bodies get 413 before they are read."""
    predict_threads: int = 0
    """Threads running slow predictions off the event loop; 0 means one per usable core."""
    state_dir: Path | None = None
    """Where deployments persist; turns on the control API (`/nstarx/v1`)."""
    auth: bool = True
    """Every route but live health needs a key (or the admin token); False opens the data plane
    (`nstarx serve --no-auth`; the control API still needs a credential)."""
    security_dir: Path | None = None
    """Keys, access rules and the admin token (default `$NSTARX_HOME/security`)."""
    admin_token: str | None = None
    """The owner's bearer token (default: the one kept in `security_dir/admin-token`)."""
    audit_dir: Path | None = None
    """Where the audit log is appended (default `$NSTARX_HOME/audit`)."""
    audit: bool = True
    """Record every call and management action in the audit log."""
    tls_cert: Path | None = None
    """PEM certificate (chain); with `tls_key`, REST and gRPC serve TLS 1.2+ only."""
    tls_key: Path | None = None
    """PEM private key of `tls_cert`, unencrypted."""
    pipelines: tuple[PipelineSpec, ...] = ()
    """Pipelines served from the start (`nstarx serve --pipeline`), after the models."""
    allow_paths: tuple[Path, ...] = ()
    """Folders the control API may load model files from, besides `$NSTARX_HOME` (the model
    repository and `nstarx serve --allow-path`); the admin's `trusted: true` may name others."""
    sink_dir: Path | None = None
    """Where file sinks and dead-letter files are written (default `state_dir/sinks`, else
    `$NSTARX_HOME/sinks`); a sink sent over the control API cannot name a folder outside it."""
    allow_runtimes: tuple[str, ...] = ()
    """Runtime import paths the control API accepts besides the built-in runtimes
    (`nstarx serve --allow-runtime`)."""
    header_timeout_s: float = 10.0
    """A request's headers must arrive within this many seconds of the connection opening (or of
    the next request starting on a keep-alive connection); past it, 408 and the connection
    closes."""
    body_timeout_s: float = 30.0
    """A request's body must arrive within this many seconds of its headers (408 past it)."""
    max_connections: int = 4096
    """HTTP connections at once (lowered to stay below the file descriptor limit); past it the
    oldest connections that have not sent a whole request are dropped, so health answers."""
    max_inflight_body_bytes: int | None = None
    """Bytes of request bodies held at once across requests (default `max_body_bytes`); past
    it, 503 with `Retry-After` before more is read."""
    drain_s: float = 2.0
    """On SIGTERM or SIGINT: seconds readiness answers 503 while requests are still served
    (load balancers stop sending), before the listeners close and the process exits 0."""
    allow_hosts: tuple[str, ...] = ()
    """`Host` names the control API answers besides this server's own (a reverse proxy's);
    `*` allows any (`nstarx serve --allow-host`)."""
    stream_window: int = 64
    """WebSocket streams: messages a connection may have unanswered; at that many the server
    stops reading it until an answer goes out."""
    stream_idle_s: float = 300.0
    """A stream with no message and no answer pending for this long is closed (1001)."""
    stream_send_timeout_s: float = 30.0
    """A stream whose client leaves its answers unread (the send buffer full) for this long is
    closed (1013)."""


def _usable_cores() -> int:
    """Count the cores this process may run on (taskset, cgroups), not the machine's.

    More predict threads than that only make slow predictions fight over the GIL.
    """
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def make_guard(config: ServingConfig, facts: DeploymentFacts | None = None) -> Guard:
    """The server's guard: the keys and access rules of `security_dir`, the admin token.

    It also holds the `Host` names the control API answers (`config.allow_hosts`), and asks
    `facts` (the data plane) what is served.
    """
    folder = config.security_dir or security_dir()
    return Guard(
        key_store(folder),
        config.admin_token or admin_token(folder),
        access_rules(folder),
        facts=facts,
        control_hosts=AllowedHosts(config.host, config.allow_hosts),
        enabled=config.auth,
    )


def create_app(
    models: Iterable[ModelSettings],
    config: ServingConfig | None = None,
    *,
    registry: CollectorRegistry | None = None,
) -> InferenceApp:
    """Build the server's ASGI app; models load in its lifespan (start-up), in order.

    `app.dataplane` is the data plane the gRPC transport shares; `app.lifespan()` runs start-up
    and shut-down outside an ASGI server (in tests).
    """
    config = config or ServingConfig()
    # two at least: a model may use all but one, so another always has a thread
    threads = config.predict_threads or max(2, _usable_cores())
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="nstarx-predict")
    metrics = ServerMetrics(registry)
    repository = ModelRepository(models, metrics, executor, threads)
    usage = UsageMonitor(repository)  # CPU, memory, threads, GPU per model version
    metrics.registry.register(usage.collector())
    sink_root = config.sink_dir or (config.state_dir / "sinks" if config.state_dir else None)
    sinks = SinkHub(sink_root, [config.security_dir or security_dir()])
    metrics.registry.register(sinks.collector())
    dataplane = DataPlane(repository, metrics, functools.partial(make_guard, config), sinks)
    guard = dataplane.guard
    if config.audit:
        dataplane.audit = CallAudit(AuditLog(config.audit_dir or audit_dir()))

    control = None
    routes = RestHandlers(dataplane, config.max_body_bytes).routes()
    if config.state_dir is not None:
        from nstarx_jupyter.serving.control import ControlPlane
        from nstarx_jupyter.serving.control_api import ControlApi

        policy = default_policy(config.allow_paths, config.allow_runtimes,
                                config.security_dir or security_dir())  # fmt: skip
        control = ControlPlane(dataplane, config.state_dir, guard, policy, usage=usage)
        routes = [*ControlApi(control).routes(), *routes]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await repository.start()
        if control is not None:
            await control.restore()
        for pipeline in config.pipelines:
            await dataplane.pipelines.put(pipeline)
        try:
            yield
        finally:
            if control is not None:
                await control.close()
            await dataplane.close()
            await repository.close()
            executor.shutdown(wait=False, cancel_futures=True)
            dataplane.audit.close()

    starlette = Starlette(
        routes=routes,
        exception_handlers={HTTPException: handle_http_exception},
        lifespan=lifespan,
    )
    budget = BodyBudget(config.max_inflight_body_bytes or config.max_body_bytes)
    stream = StreamEndpoint(dataplane, budget, config.stream_window, config.stream_idle_s)
    return InferenceApp(dataplane, starlette, config.max_body_bytes, budget, stream)
