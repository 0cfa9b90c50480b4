"""Benchmark nstarx serve against KServe's and MLServer's Python servers on the same model and core.

Each server runs pinned to core 0 (`taskset -c 0`), the load generator (wrk for REST, grpc_load.py
for gRPC) on core 1. Writes bench/results/latest.json and the table in bench/README.md.
Usage: python bench/run.py [--warmup 5 --duration 20] [--only ours,kserve,mlserver]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
VENVS = BENCH / ".venvs"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "NSTARX_HOME": str(WORK / "home")}  # fmt: skip


def bench_key() -> str:
    """An API key (`predict:*`) in the bench's own home: ours requires one on every call, so
    every request of every scenario carries it (peers get the same header and ignore it)."""
    from nstarx_jupyter.security import KeyStore

    store = KeyStore(WORK / "home" / "security" / "keys.json")
    return store.create("bench", ["predict:*"])[1]


ROW = [5.1, 3.5, 1.4, 0.2]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_models() -> dict[str, Path]:
    from sklearn.datasets import load_breast_cancer, load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    WORK.mkdir(exist_ok=True)
    x, y = load_iris(return_X_y=True)
    iris = WORK / "iris"
    iris.mkdir(exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=1000, random_state=0).fit(x, y), iris / "model.joblib")
    (iris / "model-settings.json").write_text(json.dumps({"options": {"feature_names": FEATURES}}))
    xb, yb = load_breast_cancer(return_X_y=True)
    forest = WORK / "forest"
    forest.mkdir(exist_ok=True)
    rf = RandomForestClassifier(n_estimators=100, random_state=0).fit(xb, yb)
    joblib.dump(rf, forest / "model.joblib")
    return {"iris": iris, "forest": forest}


def bodies(width: int) -> dict[str, Path]:
    def v2(rows: int) -> dict[str, Any]:
        data = np.tile(_row(width), rows).tolist()
        return {"inputs": [{"name": "input-0", "shape": [rows, width], "datatype": "FP64",
                            "data": data}]}  # fmt: skip

    docs = {"v2-1": v2(1), "v2-32": v2(32), "v1": {"instances": [_row(width)]},
            "records": dict(zip(FEATURES, ROW, strict=True))}  # fmt: skip
    out = {}
    for key, doc in docs.items():
        path = WORK / f"body-{width}-{key}.json"
        path.write_text(json.dumps(doc))
        out[key] = path
    return out


def _row(width: int) -> list[float]:
    return ROW if width == 4 else [float(v) for v in np.linspace(1, 20, width)]


class Server:
    """One server process pinned to core 0."""

    def __init__(self, kind: str, models: dict[str, Path], extra: list[str] | None = None):
        self.kind, self.http, self.grpc = kind, free_port(), free_port()
        started = time.perf_counter()
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", *self._command(models, extra or [])], env=ENV, cwd=WORK,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.http}"
        names = list(models)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                ready = f"{self.url}/v2/models/{names[-1]}/ready"
                auth = {"Authorization": f"Bearer {ENV['BENCH_KEY']}"}
                if requests.get(ready, headers=auth, timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"{kind} exited with {self.process.returncode}")
            time.sleep(0.05)
        self.ready_s = time.perf_counter() - started

    def _command(self, models: dict[str, Path], extra: list[str]) -> list[str]:
        if self.kind == "ours":
            args = [str(ROOT / ".venv/bin/nstarx"), "serve", "--port", str(self.http),
                    "--grpc-port", str(self.grpc), "--log-level", "warning", *extra]  # fmt: skip
            for name, path in models.items():
                args += ["--model", f"{name}={path}"]
            return args
        if self.kind == "kserve":
            args = [str(VENVS / "kserve/bin/python"), str(BENCH / "peers/kserve_model.py"),
                    "--http-port", str(self.http), "--grpc-port", str(self.grpc)]  # fmt: skip
            for name, path in models.items():
                args += ["--model", f"{name}={path / 'model.joblib'}"]
            return args
        repo = WORK / f"mlserver-{self.http}"
        repo.mkdir()
        settings = {"http_port": self.http, "grpc_port": self.grpc, "metrics_port": free_port(),
                    "parallel_workers": 0, "metrics_endpoint": None}  # fmt: skip
        (repo / "settings.json").write_text(json.dumps(settings))
        for name, path in models.items():
            (repo / name).mkdir()
            (repo / name / "model-settings.json").write_text(json.dumps({
                "name": name, "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": str(path / "model.joblib")},
            }))  # fmt: skip
        return [str(VENVS / "mlserver/bin/mlserver"), "start", str(repo)]

    def rss_mib(self) -> float:
        pids = [self.process.pid, *_children(self.process.pid)]
        total = 0
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return total / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    kids = [int(p) for p in found.split()]
    return kids + [g for k in kids for g in _children(k)]


def wrk(url: str, body: Path, connections: int, warmup: float, duration: float) -> dict[str, float]:
    env = {**ENV, "BODY_FILE": str(body)}
    base = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", "--latency",
            "-s", str(BENCH / "wrk/post.lua")]  # fmt: skip
    subprocess.run([*base, f"-d{int(warmup)}s", url], env=env, capture_output=True, check=True)
    measured = [*base, f"-d{int(duration)}s", url]
    out = subprocess.run(measured, env=env, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": _latency(out, "50%"), "p99_ms": _latency(out, "99%"),
            "errors": int(errors.group(1)) if errors else 0}  # fmt: skip


def _latency(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def grpc_load(target: str, model: str, connections: int, warmup: float, duration: float) -> dict:
    out = subprocess.run(
        ["taskset", "-c", "1", str(ROOT / ".venv/bin/python"), str(BENCH / "grpc_load.py"), target,
         "--model", model, "-c", str(connections), "-d", str(duration), "--warmup", str(warmup)],
        env={**ENV, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def grpc_client_ceiling(args: argparse.Namespace, *flags: str) -> float:
    """What grpc_load.py reaches at c=8 against a fixed-answer server on core 0 (threaded grpcio
    server, or `grpc.aio` with `--aio`)."""
    port = free_port()
    echo = subprocess.Popen(["taskset", "-c", "0", str(ROOT / ".venv/bin/python"),
                             str(BENCH / "peers/grpc_echo.py"), str(port), *flags],
                            env=ENV)  # fmt: skip
    try:
        time.sleep(2)
        return float(grpc_load(f"127.0.0.1:{port}", "iris", 8, args.warmup, args.duration)["rps"])
    finally:
        echo.terminate()
        echo.wait()


def in_process(models: dict[str, Path], duration: float) -> dict[str, float]:
    code = f"""
import json, time, joblib, numpy as np, orjson
iris = joblib.load({str(models["iris"] / "model.joblib")!r})
rf = joblib.load({str(models["forest"] / "model.joblib")!r})
body = open({str(WORK / "body-4-v2-1.json")!r}, 'rb').read()
x = np.asarray([{ROW}]); xb = np.linspace(1, 20, 30).reshape(1, -1)
def rate(f):
    end = time.perf_counter() + {duration}; n = 0
    while time.perf_counter() < end:
        f(); n += 1
    return n / {duration}
def codec():
    doc = orjson.loads(body); t = doc["inputs"][0]
    y = iris.predict(np.asarray(t["data"], dtype=np.float64).reshape(t["shape"]))
    return orjson.dumps({{"model_name": "iris", "outputs": [{{"name": "predict",
        "datatype": "INT64", "shape": [1], "data": y}}]}}, option=orjson.OPT_SERIALIZE_NUMPY)
print(json.dumps({{"iris_predict": rate(lambda: iris.predict(x)), "iris_codec_predict": rate(codec),
                  "forest_predict": rate(lambda: rf.predict(xb))}}))
"""
    out = subprocess.run(["taskset", "-c", "0", str(ROOT / ".venv/bin/python"), "-c", code],
                         env=ENV, capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out)


def import_time_ms() -> float:
    runs = []
    for _ in range(5):
        err = subprocess.run([str(ROOT / ".venv/bin/python"), "-X", "importtime", "-c",
                              "import nstarx_jupyter"], capture_output=True, text=True,
                             check=True).stderr  # fmt: skip
        last = [line for line in err.splitlines() if line.rstrip().endswith("nstarx_jupyter")][-1]
        runs.append(int(last.split("|")[1]) / 1000)
    return statistics.median(runs)


BATCHING = ["--max-batch-size", "32", "--max-latency-ms", "2"]
OFF = ["--max-batch-size", "0"]
"""Batching off. The default batches models with independent rows without waiting: a batch
holds what arrived in the same event-loop turn."""
SCENARIOS = {  # name: (body key, path template, servers that speak it)
    "V2 REST 1 row": ("v2-1", "/v2/models/{m}/infer", ("ours", "kserve", "mlserver")),
    "V2 REST 32 rows": ("v2-32", "/v2/models/{m}/infer", ("ours", "kserve", "mlserver")),
    "V1 :predict": ("v1", "/v1/models/{m}:predict", ("ours", "kserve")),
    "product records": ("records", "/v1/models/{m}/predict", ("ours",)),
    "V2 gRPC 1 row": ("grpc", "", ("ours", "kserve", "mlserver")),
}


def measure(server: Server, scenario: str, model: str, body: dict[str, Path], c: int,
            args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    key, path, _ = SCENARIOS[scenario]
    if key == "grpc":
        result = grpc_load(f"127.0.0.1:{server.grpc}", model, c, args.warmup, args.duration)
    else:
        result = wrk(server.url + path.format(m=model), body[key], c, args.warmup, args.duration)
    row = {"server": server.kind, "model": model, "scenario": scenario, "c": c, **result}
    print(json.dumps(row), flush=True)
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    models = make_models()
    iris_body, forest_body = bodies(4), bodies(30)
    results: dict[str, Any] = {"rows": [], "servers": {}}
    # The ceilings are measured first, next to our rows, and again at the end: a machine whose
    # speed drifts during the run shows as two different figures instead of a skewed ratio.
    results["in_process"] = in_process(models, args.duration)
    for kind in args.only:
        server = Server(kind, {"iris": models["iris"]})
        info = {"ready_s": server.ready_s, "rss_idle_mib": server.rss_mib()}
        for scenario, (_, _, kinds) in SCENARIOS.items():
            if kind in kinds:
                for c in (1, 8, 64):
                    results["rows"].append(measure(server, scenario, "iris", iris_body, c, args))
        server.stop()
        server = Server(kind, {"forest": models["forest"]})
        row = measure(server, "V2 REST 1 row", "forest", forest_body, 8, args)
        results["rows"].append(row)
        server.stop()
        many = {f"iris{i}": models["iris"] for i in range(20)}
        server = Server(kind, many)
        info["rss_20_models_mib"] = server.rss_mib()
        server.stop()
        results["servers"][kind] = info
    if "ours" in args.only:
        # What checking the key, the rate limit and the audit record cost: the same server open.
        server = Server("ours", {"iris": models["iris"]}, ["--no-auth"])
        for c in (8, 64):
            row = measure(server, "V2 REST 1 row", "iris", iris_body, c, args)
            results["rows"].append({**row, "server": "ours, auth off"})
        server.stop()
        server = Server("ours", {"iris": models["iris"]}, OFF)
        for scenario in ("V2 REST 1 row", "V2 gRPC 1 row"):
            for c in (1, 8, 64):
                row = measure(server, scenario, "iris", iris_body, c, args)
                results["rows"].append({**row, "server": "ours, batching off"})
        server.stop()
        server = Server("ours", {"forest": models["forest"]}, OFF)
        row = measure(server, "V2 REST 1 row", "forest", forest_body, 8, args)
        results["rows"].append({**row, "server": "ours, batching off"})
        server.stop()
        for label, extra in (("batching off", OFF), ("batching on", BATCHING)):
            server = Server("ours", {"forest": models["forest"]}, extra)
            row = measure(server, "V2 REST 1 row", "forest", forest_body, 64, args)
            results["rows"].append({**row, "server": f"ours, {label}"})
            server.stop()
    results["in_process_end"] = in_process(models, args.duration)
    results["in_process"]["grpc_client_ceiling"] = grpc_client_ceiling(args)
    results["in_process"]["grpc_aio_ceiling"] = grpc_client_ceiling(args, "--aio")
    results["import_ms"] = import_time_ms()
    results["args"] = {"warmup_s": args.warmup, "duration_s": args.duration}
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument(
        "--only", type=lambda s: s.split(","), default=["ours", "kserve", "mlserver"]
    )
    parser.add_argument(
        "--merge", action="store_true",
        help="keep the other servers' rows from results/latest.json (re-measure some only)",
    )  # fmt: skip
    args = parser.parse_args()
    ENV["BENCH_KEY"] = bench_key()
    results = run(args)
    if args.merge:
        results = _merged(results, args.only)
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results/latest.json").write_text(json.dumps(results, indent=1))
    from report import write_readme  # bench/ is on sys.path when run as a script

    write_readme(results, BENCH / "README.md", _versions())


def _merged(fresh: dict[str, Any], measured: list[str]) -> dict[str, Any]:
    """`fresh` rows for the servers just measured, the previous run's rows for the others."""
    previous = json.loads((BENCH / "results/latest.json").read_text())
    kept = [row for row in previous["rows"] if row["server"].split(",")[0] not in measured]
    servers = {**previous["servers"], **fresh["servers"]}
    return {**fresh, "rows": fresh["rows"] + kept, "servers": servers}


def _versions() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())  # fmt: skip
    out = {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version()}
    for name, venv in (("kserve", "kserve"), ("mlserver", "mlserver"),
                       ("scikit-learn", "kserve"), ("nstarx-jupyter", None)):  # fmt: skip
        py = ROOT / ".venv/bin/python" if venv is None else VENVS / venv / "bin/python"
        code = f"import importlib.metadata as m; print(m.version({name!r}))"
        done = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
        out[name] = done.stdout.strip() or "absent"
    return out


if __name__ == "__main__":
    sys.exit(main())
