"""V2 gRPC transport (`inference.GRPCInferenceService`) over the shared `DataPlane`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from nstarx_jupyter.errors import GRPC_CODE, HTTP_STATUS, NstarxError, RateLimitedError
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.protocol.grpc.codec import (
    decode_infer_request,
    encode_infer_response,
    parse_message,
)
from nstarx_jupyter.security import ANONYMOUS, RefusedCaller
from nstarx_jupyter.serving.dataplane import Caller
from nstarx_jupyter.serving.http_errors import retry_after
from nstarx_jupyter.serving.pipeline_host import v2_response

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator
    from pathlib import Path

    from google.protobuf.message import Message

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane

__all__ = ["GRPC_STATUS", "GrpcServer", "InferenceServicer", "start_grpc_server"]

log = logging.getLogger(__name__)
_M = TypeVar("_M", bound="Message")
Metadata = dict[str, Any]
"""The caller's invocation metadata (gRPC's headers), keys in lower case."""

GRPC_THREADS = 8
"""Calls in progress at once; each waits on the event loop, where concurrent calls batch."""

GRPC_STATUS = {kind: grpc.StatusCode[code] for kind, code in GRPC_CODE.items()}
"""Error kind to gRPC status: `errors.GRPC_CODE` with its names looked up."""


class InferenceServicer:
    """Every V2 RPC, answered on the event loop by the data plane the REST transport uses too.

    Each method takes the request's bytes (grpcio hands them over unparsed) and the caller's
    metadata, checks the caller, then parses, and raises `NstarxError` for a failed call;
    `_bridge` turns that into the gRPC status. Checking the key before parsing means a caller
    without one learns nothing from the parser and costs the server no parsing; a message that
    does not parse is the caller's mistake (INVALID_ARGUMENT), never a crash.
    """

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def _read(self, message: type[_M], data: bytes, metadata: Metadata, action: str) -> _M:
        """Identify the caller, then parse `data` (kept for the audit log).

        The model a call names is inside the message, so only what needs no name is checked
        before parsing: a missing or unknown key is refused here (unless a public deployment
        or `--no-auth` may let an anonymous caller through), the rest by `_authorize`.
        """
        guard = self.dataplane.guard
        anonymous = not guard.enabled or (action in _OPEN_ACTIONS and bool(guard.public))
        try:
            metadata[_PRINCIPAL] = guard.identify(
                metadata.get("authorization"), anonymous=anonymous
            )
        except RefusedCaller as exc:  # a known key over its rate limit (429): the audit names it
            metadata[_PRINCIPAL] = exc.principal
            raise
        request = parse_message(message, data)
        metadata[_REQUEST] = request
        return request

    def _authorize(self, metadata: Metadata, action: str, name: str | None = None) -> None:
        """Check that the caller `_read` identified may do `action` on `name`.

        The same decision as `Guard.require`, without identifying the key a second time (that
        would take a second token from its rate limit).
        """
        guard = self.dataplane.guard
        principal = metadata[_PRINCIPAL]
        if principal is not ANONYMOUS:
            guard.check(principal, action, name)
        elif guard.enabled and not (action in _OPEN_ACTIONS and name in guard.public):
            guard.identify(None)  # raises the usual "this call needs an API key"

    async def ServerLive(self, data: bytes, metadata: Metadata) -> pb.ServerLiveResponse:  # noqa: N802
        """Always live while the process answers."""
        parse_message(pb.ServerLiveRequest, data)
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, data: bytes, metadata: Metadata) -> pb.ServerReadyResponse:  # noqa: N802
        """Ready when every model can serve."""
        self._read(pb.ServerReadyRequest, data, metadata, "any")
        self._authorize(metadata, "any")
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def ModelReady(self, data: bytes, metadata: Metadata) -> pb.ModelReadyResponse:  # noqa: N802
        """Whether one model version is loaded."""
        request = self._read(pb.ModelReadyRequest, data, metadata, "read")
        self._authorize(metadata, "read", request.name)
        return pb.ModelReadyResponse(
            ready=self.dataplane.model_ready(request.name, request.version or None)
        )

    async def ServerMetadata(self, data: bytes, metadata: Metadata) -> Any:  # noqa: N802
        """Name, version and extensions."""
        self._read(pb.ServerMetadataRequest, data, metadata, "any")
        self._authorize(metadata, "any")
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    async def ModelMetadata(self, data: bytes, metadata: Metadata) -> Any:  # noqa: N802
        """Inputs and outputs derived from the model."""
        request = self._read(pb.ModelMetadataRequest, data, metadata, "read")
        self._authorize(metadata, "read", request.name)
        meta = await self.dataplane.model_metadata(request.name, request.version or None)
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )

    async def ModelInfer(self, data: bytes, metadata: Metadata) -> Any:  # noqa: N802
        """Run one inference request (with response metadata naming the variant, if routed)."""
        with self.dataplane.counting_rejections("", None, "v2-grpc"):  # no name before parsing
            request = self._read(pb.ModelInferRequest, data, metadata, "predict")
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

    async def RepositoryModelLoad(self, data: bytes, metadata: Metadata) -> Any:  # noqa: N802
        """Load a model."""
        request = self._read(pb.RepositoryModelLoadRequest, data, metadata, "manage")
        self._authorize(metadata, "manage", request.model_name)
        await self.dataplane.repository.load(request.model_name)
        return pb.RepositoryModelLoadResponse(model_name=request.model_name, isLoaded=True)

    async def RepositoryModelUnload(self, data: bytes, metadata: Metadata) -> Any:  # noqa: N802
        """Unload a model."""
        request = self._read(pb.RepositoryModelUnloadRequest, data, metadata, "manage")
        self._authorize(metadata, "manage", request.model_name)
        await self.dataplane.repository.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse(model_name=request.model_name, isUnloaded=True)


_OPEN_ACTIONS = ("predict", "read")
"""What an anonymous caller may do on a public deployment (as `Guard.require` decides)."""
_PEER = ":peer"
"""Where the bridge puts the caller's address (`ipv4:127.0.0.1:5000`) among the metadata."""
_PRINCIPAL = ":principal"
"""Where a method leaves the checked caller, for the audit log."""
_VERSION = ":version"
"""Where `ModelInfer` leaves the version that answered."""
_REQUEST = ":request"
"""Where a method leaves the parsed request, for the audit log."""


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

    async def call(data: bytes, metadata: Metadata, started: float) -> Any:
        status = 200
        try:
            return await method(data, metadata)
        except NstarxError as exc:
            status = HTTP_STATUS[exc.kind]
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        except Exception:
            status = 500
            raise
        finally:
            request = metadata.get(_REQUEST)  # None: refused before parsing, or unparsable
            model = getattr(request, "model_name", "") or getattr(request, "name", "")
            version = metadata.get(_VERSION) or getattr(request, "model_version", "") or ""
            dataplane.audit.call(
                metadata.get(_PRINCIPAL, ANONYMOUS), action, "grpc", model, version, status,
                started, client=_peer_address(metadata[_PEER]) or "",
            )  # fmt: skip

    return call


class _CrashLog:
    """Logs the traceback of a crashed call, at most `burst` of them every `window_s`.

    A bug a client can trigger at will must not let it fill the disk with tracebacks: past the
    burst, crashes are only counted, and the next traceback logged says how many were not.
    """

    def __init__(self, burst: int = 5, window_s: float = 60.0) -> None:
        self.burst, self.window_s = burst, window_s
        self._lock = threading.Lock()  # grpcio's threads record concurrently
        self._window_started = -window_s
        self._logged = self._suppressed = 0

    def record(self) -> None:
        """Log the exception being handled, unless this window's burst is spent."""
        now = time.monotonic()
        with self._lock:
            if now - self._window_started >= self.window_s:
                self._window_started, self._logged = now, 0
            if self._logged >= self.burst:
                self._suppressed += 1
                return
            self._logged += 1
            suppressed, self._suppressed = self._suppressed, 0
        more = f" ({suppressed} more crashed without a traceback logged)" if suppressed else ""
        log.exception("gRPC call crashed%s", more)


_CRASHES = _CrashLog()


MAX_DETAILS_CHARS = 1000
"""The longest error text a call answers; the rest (a client's 1 MB input name) is cut."""


def _details(message: str) -> str:
    """`message`, cut to fit the status trailer (a long one turned into RESOURCE_EXHAUSTED)."""
    if len(message) <= MAX_DETAILS_CHARS:
        return message
    return f"{message[:MAX_DETAILS_CHARS]}... ({len(message) - MAX_DETAILS_CHARS} more characters)"


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

    def handler(data: bytes, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        metadata: Metadata = dict(context.invocation_metadata() or ())
        metadata[_PEER] = context.peer()
        call = method(data, metadata) if audited is None else audited(data, metadata, started)
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
            context.abort(GRPC_STATUS[exc.kind], _details(exc.message))
        except concurrent.futures.CancelledError:
            context.abort(grpc.StatusCode.CANCELLED, "cancelled")
        except Exception:  # noqa: BLE001 - request boundary: _CRASHES logs the bug, answer INTERNAL
            _CRASHES.record()
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
                request_deserializer=None,  # bytes: the method checks the caller, then parses
                response_serializer=response.SerializeToString,
            )
            for name, (_, response) in _RPCS.items()
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
