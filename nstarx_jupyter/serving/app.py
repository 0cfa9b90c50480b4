"""The ASGI app factory: a model repository, its data plane and the REST routes over them."""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from nstarx_jupyter.config import DEFAULT_HTTP_PORT, DEFAULT_MAX_BODY_BYTES
from nstarx_jupyter.serving.dataplane import DataPlane
from nstarx_jupyter.serving.http_errors import handle_http_exception
from nstarx_jupyter.serving.inference_http import InferenceApp
from nstarx_jupyter.serving.metrics import ServerMetrics
from nstarx_jupyter.serving.repository import ModelRepository
from nstarx_jupyter.serving.rest import RestHandlers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from prometheus_client import CollectorRegistry

    from nstarx_jupyter.serving.settings import ModelSettings

__all__ = ["ServingConfig", "create_app"]


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


def _usable_cores() -> int:
    """Count the cores this process may run on (taskset, cgroups), not the machine's.

    More predict threads than that only make slow predictions fight over the GIL.
    """
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


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
    threads = config.predict_threads or _usable_cores()
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="nstarx-predict")
    metrics = ServerMetrics(registry)
    repository = ModelRepository(models, metrics, executor)
    dataplane = DataPlane(repository, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await repository.start()
        try:
            yield
        finally:
            await repository.close()
            executor.shutdown(wait=False, cancel_futures=True)

    routes = Starlette(
        routes=RestHandlers(dataplane, config.max_body_bytes).routes(),
        exception_handlers={HTTPException: handle_http_exception},
        lifespan=lifespan,
    )
    return InferenceApp(dataplane, routes, config.max_body_bytes)
