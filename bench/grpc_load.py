"""Closed-loop V2 gRPC load: C callers on one channel, each sending ModelInfer back to back."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import grpc
import numpy as np

from nstarx_jupyter.protocol.grpc import inference_pb2 as pb


def _request(model: str, rows: int) -> bytes:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="input-0", datatype="FP64", shape=[rows, 4])
    request.raw_input_contents.append(np.tile([5.1, 3.5, 1.4, 0.2], rows).astype("<f8").tobytes())
    return request.SerializeToString()


async def _run(
    target: str, body: bytes, concurrency: int, seconds: float, key: str | None = None
) -> dict[str, float]:
    metadata = (("authorization", f"Bearer {key}"),) if key else None
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        latencies: list[float] = []
        errors = 0
        stop = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                start = time.perf_counter()
                try:
                    await call(body, metadata=metadata)
                except grpc.RpcError:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    lat = np.asarray(latencies) * 1000
    return {"rps": len(lat) / elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "errors": errors}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--model", default="iris")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("-c", type=int, default=8)
    parser.add_argument("-d", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    args = parser.parse_args()
    body = _request(args.model, args.rows)
    key = os.environ.get("BENCH_KEY")  # the API key ours needs; peers ignore the metadata
    asyncio.run(_run(args.target, body, args.c, args.warmup, key))
    print(json.dumps(asyncio.run(_run(args.target, body, args.c, args.d, key))))


if __name__ == "__main__":
    main()
