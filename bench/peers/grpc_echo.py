"""The gRPC load generator's own ceiling: a server that answers every ModelInfer with a fixed reply.

grpcio's synchronous server with a few threads is the fastest Python gRPC server measured here,
so what `grpc_load.py` reaches against it bounds any gRPC row in the table. With `--aio` it is
a `grpc.aio` server instead (what KServe and MLServer use): the ceiling of that design.
Usage: python grpc_echo.py PORT [--aio]
"""

from __future__ import annotations

import asyncio
import sys
from concurrent import futures

import grpc

from nstarx_jupyter.protocol.grpc import inference_pb2 as pb


def main() -> None:
    reply = pb.ModelInferResponse(model_name="iris")
    reply.outputs.add(name="predict", datatype="INT64", shape=[1]).contents.int64_contents.append(0)
    body = reply.SerializeToString()

    def infer(request: bytes, context: grpc.ServicerContext) -> bytes:
        return body

    async def infer_aio(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return body

    aio = "--aio" in sys.argv
    handler = grpc.unary_unary_rpc_method_handler(
        infer_aio if aio else infer, lambda b: b, lambda b: b
    )
    service = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": handler}
    )
    if aio:
        asyncio.run(_serve_aio(service, sys.argv[1]))
        return
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers([service])
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    server.start()
    server.wait_for_termination()


async def _serve_aio(service: grpc.GenericRpcHandler, port: str) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([service])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    main()
