"""Records/s over a WebSocket stream against V2 REST at the same concurrency.

    python bench/stream.py [--concurrency 8,64] [--seconds 10] [--warmup 3] [--flags ...]

The server (this source tree, `python -m nstarx_jupyter.cli serve`) runs pinned to core 0 with
iris from run.py, as users get it: an API key on every call and message, audited. The load runs
on core 1: wrk with C connections for REST (V2 one row, and product records), and for the stream
one WebSocket with a window of C messages in flight (one record, or the same V2 one-row request,
per message), a sender keeping the window full and a reader timing each answer. The last rows
are that load against a fixed-answer WebSocket server on core 0: the ceiling of the Python load
generator (wrk's for REST is far higher). Each row: a warm-up, then the measured run. Prints a
table (one record per call or message, so req/s and records/s are the same figure). Do not run
it long on a shared machine: timings there say little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # the script next to this one

RECORD = dict(zip(bench.FEATURES, bench.ROW, strict=True))
V2_ONE_ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                          "data": bench.ROW}]}  # fmt: skip


class Server(bench.Server):
    """Our server from this source tree (`python -m`, not the installed script)."""

    def _command(self, models: dict[str, Path], extra: list[str]) -> list[str]:
        command = super()._command(models, extra)
        return [sys.executable, "-m", "nstarx_jupyter.cli", *command[1:]]


async def _stream_load(
    url: str, key: str, kind: str, window: int, seconds: float
) -> dict[str, float]:
    """One stream, `window` messages in flight for `seconds`: answers/s, latency, errors."""
    from websockets.asyncio.client import connect

    message = json.dumps(RECORD if kind == "records" else V2_ONE_ROW)
    headers = {"Authorization": f"Bearer {key}"}
    sent_at: asyncio.Queue[float | None] = asyncio.Queue()  # None: the sender is done
    slots = asyncio.Semaphore(window)
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    async with connect(url, additional_headers=headers, compression=None, max_size=None,
                       max_queue=max(16, window)) as ws:  # fmt: skip

        async def send() -> None:
            while time.perf_counter() < stop:
                await slots.acquire()
                sent_at.put_nowait(time.perf_counter())
                await ws.send(message)
            sent_at.put_nowait(None)

        sender = asyncio.create_task(send())
        began = time.perf_counter()
        while (started := await sent_at.get()) is not None:
            answer = await ws.recv()
            latencies.append(time.perf_counter() - started)
            slots.release()
            errors += isinstance(answer, str) and answer.startswith('{"error"')
        elapsed = time.perf_counter() - began
        await sender
    latencies.sort()
    n = len(latencies)
    return {"rps": n / elapsed, "p50_ms": latencies[n // 2] * 1000,
            "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000, "errors": errors}  # fmt: skip


def stream_load(
    server: Server, kind: str, window: int, warmup: float, seconds: float
) -> dict[str, Any]:
    """Run the stream load in a subprocess pinned to core 1 (a warm-up, then the measured run)."""
    url = f"ws://127.0.0.1:{server.http}/v2/models/iris/stream"
    out = subprocess.run(
        ["taskset", "-c", "1", sys.executable, __file__, "--load", url, "--kind", kind,
         "--window", str(window), "--warmup", str(warmup), "--seconds", str(seconds)],
        env=bench.ENV, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    return dict(json.loads(out))


async def _echo(port: int) -> None:
    """A fixed-answer WebSocket server (websockets' own): the load generator's ceiling."""
    from websockets.asyncio.server import ServerConnection, serve

    answer = json.dumps({"prediction": 0, "confidence": 0.98})

    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            await ws.send(answer)

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None):
        await asyncio.Future()


def client_ceiling(window: int, warmup: float, seconds: float) -> dict[str, Any]:
    """What the stream load reaches against the fixed-answer server pinned to core 0."""
    port = bench.free_port()
    echo = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--echo", str(port)],
                            env=bench.ENV)  # fmt: skip
    try:
        time.sleep(1.5)
        server = Server.__new__(Server)
        server.http = port
        return stream_load(server, "records", window, warmup, seconds)
    finally:
        echo.terminate()
        echo.wait()


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every scenario at every concurrency against one server."""
    models = bench.make_models()
    body = bench.bodies(4)
    server = Server("ours", {"iris": models["iris"]}, args.flags)
    rows = []
    try:
        for c in args.concurrency:
            for scenario, run in (
                ("V2 REST 1 row", lambda c: bench.wrk(f"{server.url}/v2/models/iris/infer",
                                                      body["v2-1"], c, args.warmup, args.seconds)),
                ("product records REST", lambda c: bench.wrk(
                    f"{server.url}/v1/models/iris/predict", body["records"], c, args.warmup,
                    args.seconds)),
                ("WebSocket records", lambda c: stream_load(server, "records", c, args.warmup,
                                                            args.seconds)),
                ("WebSocket V2 1 row", lambda c: stream_load(server, "v2", c, args.warmup,
                                                             args.seconds)),
            ):  # fmt: skip
                row = {"scenario": scenario, "c": c, **run(c)}
                rows.append(row)
                print(f"  {scenario} c={c}: {row['rps']:.0f}/s", file=sys.stderr, flush=True)
    finally:
        server.stop()
    for c in args.concurrency:
        row = {"scenario": "load ceiling: fixed-answer WebSocket server", "c": c,
               **client_ceiling(c, args.warmup, args.seconds)}  # fmt: skip
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| scenario | c (connections or window) | records/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['scenario']} | {row['c']} | {row['rps']:.0f} | "
                     f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")],
                        default=[8, 64])  # fmt: skip
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--flags", nargs=argparse.REMAINDER, default=[],
                        help="extra `nstarx serve` flags (last)")  # fmt: skip
    parser.add_argument("--load", help=argparse.SUPPRESS)  # the load subprocess: a stream URL
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)  # the fixed-answer server
    parser.add_argument("--kind", default="records", help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    key = bench.ENV.get("BENCH_KEY") or ""
    if args.echo:
        asyncio.run(_echo(args.echo))
        return
    if args.load:
        asyncio.run(_stream_load(args.load, key, args.kind, args.window, args.warmup))
        result = asyncio.run(_stream_load(args.load, key, args.kind, args.window, args.seconds))
        print(json.dumps(result))
        return
    bench.ENV["BENCH_KEY"] = bench.bench_key()
    bench.ENV["PYTHONPATH"] = str(bench.ROOT)  # the server of this source tree
    rows = measure(args)
    print(f"Server pinned to core 0, load on core 1; warm-up {args.warmup:g} s, "
          f"measured {args.seconds:g} s per row.\n")  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
