"""In-process (threads) against process isolation: req/s, p50 and p99 for iris over V2 REST.

`python bench/isolation.py` starts two servers of this checkout on core 0 (`taskset -c 0`), one
serving iris as usual and one with `--isolation process` (the model in a worker process of its
own), and loads each with wrk on core 1 at 1 and 8 connections. The rounds alternate between the
two servers, so the machine's drift falls on both alike; each row is the mean of the rounds'
req/s and the median of their p50 and p99. Run it alone on the machine: two cores shared with
anything else measure the neighbours. Needs `wrk` and `taskset` (as `run.py` does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests
from run import ENV, ROOT, WORK, bench_key, bodies, free_port, make_models, wrk

MODES = {"in-process (threads)": [], "process isolation": ["--isolation", "process"]}


class Server:
    """`nstarx serve` of this checkout with iris, pinned to core 0."""

    def __init__(self, model: Path, extra: list[str]) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        command = [*pin, sys.executable, "-m", "nstarx_jupyter.cli", "serve", "--port",
                   self.url.rsplit(":", 1)[1], "--log-level", "warning", "--model",
                   f"iris={model}", *extra]  # fmt: skip
        env = {**ENV, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(command, env=env, cwd=WORK, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
        auth = {"Authorization": f"Bearer {ENV['BENCH_KEY']}"}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/v2/models/iris/ready", headers=auth, timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the server did not become ready in 120 s")

    def stop(self) -> None:
        """Stop the server (its worker processes end with it)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> None:
    """Measure both modes and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per run")
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per row")
    parser.add_argument("--connections", default="1,8", help="comma-separated wrk -c values")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    ENV["BENCH_KEY"] = bench_key()
    model = make_models()["iris"]
    body = bodies(4)["v2-1"]
    servers = {mode: Server(model, extra) for mode, extra in MODES.items()}
    rows = []
    try:
        for c in (int(value) for value in args.connections.split(",")):
            runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in servers}
            for _ in range(args.rounds):
                for mode, server in servers.items():
                    url = f"{server.url}/v2/models/iris/infer"
                    runs[mode].append(wrk(url, body, c, args.warmup, args.duration))
            for mode, results in runs.items():
                rows.append((mode, c, statistics.mean(r["rps"] for r in results),
                             statistics.median(r["p50_ms"] for r in results),
                             statistics.median(r["p99_ms"] for r in results),
                             sum(int(r["errors"]) for r in results)))  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
    print(f"iris, V2 REST 1 row; {args.rounds} x {args.duration} s per row; cores: "
          f"{os.cpu_count()}\n")  # fmt: skip
    print("| mode | c | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
    for mode, c, rps, p50, p99, errors in rows:
        print(f"| {mode} | {c} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {errors} |")


if __name__ == "__main__":
    main()
