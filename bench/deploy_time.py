"""From deploy() to the first successful prediction, next to `mlflow models serve` and KServe.

Each figure is the median of --runs runs, each in a fresh $NSTARX_HOME. 'cold' starts with no
server running (deploy starts one); 'warm' deploys a second model on the running server. The
peers are timed from process start to their first successful prediction, as a notebook user
starting them would wait. Writes bench/results/deploy_time.json and prints a Markdown table.
Usage: python bench/deploy_time.py [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = ROOT / ".venv/bin"
ROW = [5.1, 3.5, 1.4, 0.2]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

_OURS = """
import json, sys, time
from pathlib import Path
import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend

x, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(x, y)
folder = Path(sys.argv[1]) / "iris"
folder.mkdir()
joblib.dump(model, folder / "model.joblib")
row = [[5.1, 3.5, 1.4, 0.2]]
out = {}
cold = model if sys.argv[2] == "object" else folder
start = time.perf_counter()
first = deploy(cold, "iris")
first.predict(row)
out[f"cold_{sys.argv[2]}_s"] = time.perf_counter() - start
if first.registration is not None:
    first.registration.result()
if sys.argv[2] == "file":
    start = time.perf_counter()
    second = deploy(folder, "iris-two")
    second.predict(row)
    out["warm_file_s"] = time.perf_counter() - start
    start = time.perf_counter()
    third = deploy(model, "iris-object")
    third.predict(row)
    out["warm_object_s"] = time.perf_counter() - start
    third.registration.result()
LocalBackend().stop()
print(json.dumps(out))
"""


def ours(runs: int) -> dict[str, float]:
    found: dict[str, list[float]] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "NSTARX_HOME": home, "OMP_NUM_THREADS": "1"}
            for cold in ("file", "object"):
                sub = Path(home) / cold
                sub.mkdir()
                done = subprocess.run(
                    [str(VENV_BIN / "python"), "-c", _OURS, str(sub), cold],
                    env={**env, "NSTARX_HOME": str(sub)}, capture_output=True, text=True,
                    check=True,
                )  # fmt: skip
                for key, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                    found.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in found.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _first_prediction(command: list[str], url: str, body: dict[str, object],
                      env: dict[str, str]) -> float:  # fmt: skip
    start = time.perf_counter()
    # Its own process group: `mlflow models serve` runs uvicorn as a child that a plain
    # terminate would leave behind, answering the next run's requests.
    # cwd: MLflow 3 writes ./mlflow.db when no tracking URI is set; keep it out of the checkout.
    process = subprocess.Popen(command, env=env, cwd=tempfile.gettempdir(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    try:
        while time.perf_counter() - start < 120:
            try:
                if requests.post(url, json=body, timeout=2).ok:
                    return time.perf_counter() - start
            except requests.RequestException:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {process.returncode}")
            time.sleep(0.02)
        raise RuntimeError(f"{command[0]} never answered")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()


def peers(runs: int) -> dict[str, float]:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    work = Path(tempfile.mkdtemp())
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    joblib.dump(model, work / "model.joblib")
    saved = subprocess.run(
        [str(VENV_BIN / "python"), "-c", "import sys, joblib, mlflow.sklearn; "
         "mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2])",
         str(work / "model.joblib"), str(work / "mlflow-model")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    out: dict[str, float] = {}
    mlflow_model = str(work / "mlflow-model")

    def mlflow_serve() -> tuple[list[str], str, dict[str, object]]:
        port = _free_port()  # a new port each run: nothing left over can answer for it
        command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", mlflow_model,
                   "--env-manager", "local", "-p", str(port)]  # fmt: skip
        return command, f"http://127.0.0.1:{port}/invocations", {"inputs": [ROW]}

    def kserve_serve() -> tuple[list[str], str, dict[str, object]]:
        http, grpc = _free_port(), _free_port()
        command = [str(BENCH / ".venvs/kserve/bin/python"), str(BENCH / "peers/kserve_model.py"),
                   "--http-port", str(http), "--grpc-port", str(grpc),
                   "--model", f"iris={work / 'model.joblib'}"]  # fmt: skip
        return command, f"http://127.0.0.1:{http}/v1/models/iris:predict", {"instances": [ROW]}

    if saved.returncode == 0:
        out["mlflow_models_serve_s"] = statistics.median(
            _first_prediction(*mlflow_serve(), env) for _ in range(runs)
        )
    if (BENCH / ".venvs/kserve/bin/python").exists():
        out["kserve_python_server_s"] = statistics.median(
            _first_prediction(*kserve_serve(), env) for _ in range(runs)
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {**ours(args.runs), **peers(args.runs), "runs": args.runs}
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results/deploy_time.json").write_text(json.dumps(results, indent=1))
    rows = [
        ("deploy(fitted model) → first prediction, no server running (target ≤ 2 s)",
         results.get("cold_object_s")),
        ("deploy(model file) → first prediction, no server running",
         results.get("cold_file_s")),
        ("deploy(model file) → first prediction, server running (target ≤ 0.3 s)",
         results.get("warm_file_s")),
        ("deploy(fitted model) → first prediction, server running (MLflow registers behind)",
         results.get("warm_object_s")),
        ("`mlflow models serve` start → first prediction", results.get("mlflow_models_serve_s")),
        ("KServe Python server start → first prediction", results.get("kserve_python_server_s")),
    ]  # fmt: skip
    table = [f"| path (median of {args.runs}) | seconds |", "|---|---|"]
    table += [f"| {label} | {'n/a' if v is None else f'{v:.2f}'} |" for label, v in rows]
    print("\n".join(table))
    readme = BENCH / "README.md"
    start, end = "<!-- deploy:start -->", "<!-- deploy:end -->"
    text = readme.read_text()
    if start in text:
        head, _, rest = text.partition(start)
        text = head + start + "\n\n" + "\n".join(table) + "\n\n" + rest.partition(end)[1] + \
            rest.partition(end)[2]  # fmt: skip
        readme.write_text(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
