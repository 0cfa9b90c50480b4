"""V2 gRPC transport (`inference.GRPCInferenceService`) over the shared `DataPlane`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import grpc

from nstarx_jupyter.errors import ErrorKind, NstarxError, RateLimitedError
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.protocol.grpc.codec import decode_infer_request, encode_infer_response
from nstarx_jupyter.security import ANONYMOUS
from nstarx_jupyter.serving.dataplane import Caller
from nstarx_jupyter.serving.http_errors import STATUS, retry_after
from nstarx_jupyter.serving.pipelines import v2_response

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator
    from pathlib import Path

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane

__all__ = ["GRPC_STATUS", "GrpcServer", "InferenceServicer", "start_grpc_server"]

log = logging.getLogger(__name__)
Metadata = dict[str, Any]
"""The caller's invocation metadata (gRPC's headers), keys in lower case."""

GRPC_THREADS = 8
"""Calls in progress at once; each waits on the event loop, where concurrent calls batch."""

GRPC_STATUS = {
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.INVALID_INPUT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}
"""Error kind to gRPC status: the one place the mapping lives."""


class InferenceServicer:
    """Every V2 RPC, answered on the event loop by the data plane the REST transport uses too.

    Each method takes the request message and the caller's metadata and raises `NstarxError`
    for a failed call; `_bridge` turns that into the gRPC status.
    """

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def _authorize(self, metadata: Metadata, action: str, name: str | None = None) -> None:
        """Check the caller (its `authorization` metadata) and keep it for the audit log."""
        metadata[_PRINCIPAL] = self.dataplane.guard.require(
            metadata.get("authorization"), action, name
        )

    async def ServerLive(self, request: Any, metadata: Metadata) -> pb.ServerLiveResponse:  # noqa: N802
        """Always live while the process answers."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, metadata: Metadata) -> pb.ServerReadyResponse:  # noqa: N802
        """Ready when every model can serve."""
        self._authorize(metadata, "any")
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def ModelReady(self, request: Any, metadata: Metadata) -> pb.ModelReadyResponse:  # noqa: N802
        """Whether one model version is loaded."""
        self._authorize(metadata, "read", request.name)
        return pb.ModelReadyResponse(
            ready=self.dataplane.model_ready(request.name, request.version or None)
        )

    async def ServerMetadata(self, request: Any, metadata: Metadata) -> Any:  # noqa: N802
        """Name, version and extensions."""
        self._authorize(metadata, "any")
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    async def ModelMetadata(self, request: Any, metadata: Metadata) -> Any:  # noqa: N802
        """Inputs and outputs derived from the model."""
        self._authorize(metadata, "read", request.name)
        meta = await self.dataplane.model_metadata(request.name, request.version or None)
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )

    async def ModelInfer(self, request: Any, metadata: Metadata) -> Any:  # noqa: N802
        """Run one inference request (with response metadata naming the variant, if routed)."""
        version = request.model_version or None
        with self.dataplane.counting_rejections(request.model_name, version, "v2-grpc"):
            self._authorize(metadata, "predict", request.model_name)
            decoded = decode_infer_request(request)
            if version is None and self.dataplane.pipelines.get(request.model_name) is not None:
                answer = await self.dataplane.pipelines.infer(request.model_name, decoded,
                                                              "v2-grpc")  # fmt: skip
                return encode_infer_response(v2_response(answer), raw=False)
        caller = None
        if self.dataplane.routes_by_caller(request.model_name):
            caller = Caller(metadata, _peer_address(metadata.get(_PEER, "")))
        response, served = await self.dataplane.infer(
            request.model_name, version, decoded, "v2-grpc", caller
        )
        metadata[_VERSION] = served.model.settings.version
        message = encode_infer_response(response, raw=bool(request.raw_input_contents))
        return (message, served.headers()) if served.variant is not None else message

    async def RepositoryModelLoad(self, request: Any, metadata: Metadata) -> Any:  # noqa: N802
        """Load a model."""
        self._authorize(metadata, "manage", request.model_name)
        await self.dataplane.repository.load(request.model_name)
        return pb.RepositoryModelLoadResponse(model_name=request.model_name, isLoaded=True)

    async def RepositoryModelUnload(self, request: Any, metadata: Metadata) -> Any:  # noqa: N802
        """Unload a model."""
        self._authorize(metadata, "manage", request.model_name)
        await self.dataplane.repository.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse(model_name=request.model_name, isUnloaded=True)


_PEER = ":peer"
"""Where the bridge puts the caller's address (`ipv4:127.0.0.1:5000`) among the metadata."""
_PRINCIPAL = ":principal"
"""Where a method leaves the checked caller, for the audit log."""
_VERSION = ":version"
"""Where `ModelInfer` leaves the version that answered."""


def _peer_address(peer: str) -> str | None:
    """The IP address in a gRPC peer string (`ipv4:ADDR:PORT`, `ipv6:[ADDR]:PORT`)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or None
    return None


def _audited(
    method: Callable[[Any, Metadata], Coroutine[Any, Any, Any]], dataplane: DataPlane
) -> Callable[[Any, Metadata, float], Coroutine[Any, Any, Any]]:
    """`method`, recording the call in the audit log when it ends.

    The record is made on the event loop, where records of concurrent calls go out in one write
    (one write per call from grpcio's threads cost 6 % of the throughput).
    """
    action = method.__name__

    async def call(request: Any, metadata: Metadata, started: float) -> Any:
        status = 200
        try:
            return await method(request, metadata)
        except NstarxError as exc:
            status = STATUS[exc.kind]
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        except Exception:
            status = 500
            raise
        finally:
            model = getattr(request, "model_name", "") or getattr(request, "name", "")
            version = metadata.get(_VERSION) or getattr(request, "model_version", "") or ""
            dataplane.audit.call(
                metadata.get(_PRINCIPAL, ANONYMOUS), action, "grpc", model, version, status,
                started, client=_peer_address(metadata[_PEER]) or "",
            )  # fmt: skip

    return call


def _bridge(
    loop: asyncio.AbstractEventLoop,
    method: Callable[[Any, Metadata], Coroutine[Any, Any, Any]],
    dataplane: DataPlane,
) -> Callable[[Any, grpc.ServicerContext], Any]:
    """A handler for grpcio's thread pool that runs `method` on the event loop and waits.

    A caller that goes away does not cancel the work (`context.add_callback` costs 15 % of the
    throughput); the model's `timeout_s` bounds it as it does for REST.
    """
    audited = None if method.__name__ == "ServerLive" else _audited(method, dataplane)

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        metadata: Metadata = dict(context.invocation_metadata() or ())
        metadata[_PEER] = context.peer()
        call = method(request, metadata) if audited is None else audited(request, metadata, started)
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(call, loop)
        try:
            result = future.result()
            if isinstance(result, tuple):  # (message, response metadata)
                result, headers = result
                context.send_initial_metadata(headers)
            principal: Principal = metadata.get(_PRINCIPAL, ANONYMOUS)
            record = principal.record
            if record is not None and record.rate_limit is not None:  # keys without one: no cost
                context.set_trailing_metadata(dataplane.guard.rate_limit_headers(principal))
            return result
        except NstarxError as exc:
            wait = retry_after(exc)
            if wait is not None:
                limit = exc.headers if isinstance(exc, RateLimitedError) else ()
                context.set_trailing_metadata((("retry-after", str(wait)), *limit))
            context.abort(GRPC_STATUS[exc.kind], exc.message)
        except concurrent.futures.CancelledError:
            context.abort(grpc.StatusCode.CANCELLED, "cancelled")
        except Exception:  # request boundary: log the bug, answer INTERNAL
            log.exception("gRPC call crashed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("abort returned")  # pragma: no cover - abort always raises

    return handler


SERVICE = "inference.GRPCInferenceService"
"""The standard service name; our generated messages live in package `nstarx.inference`."""

_RPCS: dict[str, tuple[Any, Any]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
}


def _handlers(servicer: InferenceServicer, loop: asyncio.AbstractEventLoop) -> Any:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                _bridge(loop, getattr(servicer, name), servicer.dataplane),
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )
            for name, (request, response) in _RPCS.items()
        },
    )


class GrpcServer:
    """grpcio's server with its thread pool; `stop` waits for it without blocking the loop."""

    def __init__(self, server: grpc.Server, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        self._server = server
        self._pool = pool

    async def stop(self, grace: float | None) -> None:
        """Refuse new calls, let calls in flight finish for up to `grace` seconds, then stop."""
        done = self._server.stop(grace)
        await asyncio.get_running_loop().run_in_executor(None, done.wait)
        self._pool.shutdown(wait=False)


async def start_grpc_server(
    dataplane: DataPlane,
    host: str,
    port: int,
    max_message_bytes: int,
    *,
    tls_files: tuple[Path, Path] | None = None,
) -> tuple[GrpcServer, int]:
    """Start the gRPC server; its calls run on the running event loop. Returns it and its port.

    With `tls_files` (certificate, key) it serves TLS only: gRPC core negotiates TLS 1.2 or
    newer by default, as the REST side does.

    grpcio's synchronous server (a thread pool in front of the same event loop) rather than
    `grpc.aio`: on one core `grpc.aio` answers a fixed reply about 3300 times a second, the
    threaded server about 5100 (bench/README.md), so the loop hop costs less than aio saves, and
    requests waiting in several threads still meet in the loop's adaptive batcher.
    """
    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(
        GRPC_THREADS, thread_name_prefix="nstarx-grpc", initializer=_batch_scheduling
    )
    with _threads_started_batch():  # grpc core's and grpcio's threads start from here
        server = grpc.server(pool, options=options)
        server.add_generic_rpc_handlers((_handlers(InferenceServicer(dataplane), loop),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if tls_files is None:
            bound = server.add_insecure_port(address)
        else:
            cert, key = (path.read_bytes() for path in tls_files)
            credentials = grpc.ssl_server_credentials([(key, cert)])
            bound = server.add_secure_port(address, credentials)
        if bound == 0:
            raise OSError(f"cannot bind gRPC to {host}:{port}")
        server.start()
    return GrpcServer(server, pool), bound


_SCHED_BATCH: int | None = (
    getattr(os, "SCHED_BATCH", None) if hasattr(os, "sched_setscheduler") else None
)
"""Linux's batch scheduling policy; None where there is no such policy to set."""


def _batch_scheduling(policy: int | None = _SCHED_BATCH, priority: int = 0) -> None:
    """Put the calling thread under Linux's `SCHED_BATCH` (or back under `policy`).

    A gRPC call wakes grpcio's threads several times, and each wakes the event loop or is
    woken by it: about 12 context switches a call at 8 concurrent callers. Under the default
    policy a woken thread preempts the running one, which usually holds the GIL, so they swap
    back and forth for nothing (the event loop was preempted 3,600 times a second).
    `SCHED_BATCH` threads do not preempt on wake-up: they run when the running thread blocks,
    and gRPC calls go through 10-20 % faster (bench/README.md). Only gRPC's threads get it; the
    event loop keeps its policy, so it still preempts them and REST is unaffected. Where the
    policy does not exist or cannot be set, nothing changes.
    """
    if policy is None or _SCHED_BATCH is None:
        return
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, policy, os.sched_param(priority))


@contextlib.contextmanager
def _threads_started_batch() -> Iterator[None]:
    """Run the block with this thread under `SCHED_BATCH`, restoring its policy after.

    Threads started inside the block inherit the policy.
    """
    if _SCHED_BATCH is None:
        yield
        return
    before, param = os.sched_getscheduler(0), os.sched_getparam(0)
    _batch_scheduling()
    try:
        yield
    finally:
        _batch_scheduling(before, param.sched_priority)
