"""V2 gRPC transport (`inference.GRPCInferenceService`) over the shared `DataPlane`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from nstarx_jupyter.errors import ErrorKind, NstarxError
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.protocol.grpc import inference_pb2_grpc as pb_grpc
from nstarx_jupyter.protocol.grpc.codec import decode_infer_request, encode_infer_response

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nstarx_jupyter.serving.dataplane import DataPlane

__all__ = ["GRPC_STATUS", "InferenceServicer", "start_grpc_server"]

log = logging.getLogger(__name__)
T = TypeVar("T")

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


async def _guard(
    context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[T]]
) -> T:
    try:
        return await call()
    except NstarxError as exc:
        await context.abort(GRPC_STATUS[exc.kind], exc.message)
    except Exception:  # request boundary: log the bug, answer INTERNAL
        log.exception("gRPC call crashed")
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Every V2 RPC, answered by the data plane the REST transport uses too."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def _authorize(self, context: Any, name: str, *, admin: bool = False) -> None:
        if not self.dataplane.protects(name):
            return
        given = dict(context.invocation_metadata() or ()).get("authorization")
        self.dataplane.authorize(name, given, admin=admin)

    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        """Always live while the process answers."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        """Ready when every model can serve."""
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        """Whether one model version is loaded."""

        async def call() -> pb.ModelReadyResponse:
            self._authorize(context, request.name)
            ready = self.dataplane.model_ready(request.name, request.version or None)
            return pb.ModelReadyResponse(ready=ready)

        return await _guard(context, call)

    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:  # noqa: N802
        """Name, version and extensions."""
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:  # noqa: N802
        """Inputs and outputs derived from the model."""

        async def call() -> pb.ModelMetadataResponse:
            self._authorize(context, request.name)
            meta = await self.dataplane.model_metadata(request.name, request.version or None)
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
            )

        return await _guard(context, call)

    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        """Run one inference request."""

        async def call() -> pb.ModelInferResponse:
            version = request.model_version or None
            with self.dataplane.counting_rejections(request.model_name, version, "v2-grpc"):
                self._authorize(context, request.model_name)
                decoded = decode_infer_request(request)
            response = await self.dataplane.infer(request.model_name, version, decoded, "v2-grpc")
            return encode_infer_response(response, raw=bool(request.raw_input_contents))

        return await _guard(context, call)

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Load a model."""

        async def call() -> pb.RepositoryModelLoadResponse:
            self._authorize(context, request.model_name, admin=True)
            await self.dataplane.repository.load(request.model_name)
            return pb.RepositoryModelLoadResponse(model_name=request.model_name, isLoaded=True)

        return await _guard(context, call)

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Unload a model."""

        async def call() -> pb.RepositoryModelUnloadResponse:
            self._authorize(context, request.model_name, admin=True)
            await self.dataplane.repository.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse(model_name=request.model_name, isUnloaded=True)

        return await _guard(context, call)


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


def _handlers(servicer: InferenceServicer) -> Any:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(servicer, name),
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )
            for name, (request, response) in _RPCS.items()
        },
    )


async def start_grpc_server(
    dataplane: DataPlane, host: str, port: int, max_message_bytes: int
) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC server on the running event loop; returns it and the bound port."""
    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((_handlers(InferenceServicer(dataplane)),))
    bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    await server.start()
    return server, bound
