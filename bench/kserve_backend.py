"""The KServe backend against the test API server: deploy-to-first-prediction and per-call cost.

Starts etcd + kube-apiserver with the KServe CRDs (tests/support/kube.py; needs the binaries
that .ci/build-kube-apiserver.sh builds) and a local `nstarx serve` standing in at the status URL.
No KServe controller runs: a thread plays it and writes Ready as soon as it sees the new
generation, so the figures are the backend's and the API server's share of a deploy, not a
cluster's (pulling images and models, starting pods). Each figure is over --runs runs.

- deploy to first prediction: `apply()` -> `watch()` until ready -> `endpoint()` -> first
  `InferenceClient.predict` through the status URL.
- per call: `describe()`, `apply()` of an unchanged spec, `events()`, `endpoint()`.

Usage: python bench/kserve_backend.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nstarx_jupyter.client.inference import InferenceClient  # noqa: E402
from nstarx_jupyter.deployment.kserve_backend import KServeBackend  # noqa: E402
from nstarx_jupyter.deployment.spec import DeploymentSpec  # noqa: E402
from tests.integration.server import start_server  # noqa: E402
from tests.support.kube import FakeController, create_namespace, running_cluster  # noqa: E402

RECORD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"{statistics.median(ordered) * 1000:.1f} | {p95 * 1000:.1f}"


def _controller(controller: FakeController, name: str, url: str, stop: threading.Event) -> None:
    """Write Ready for each new generation of `name` as soon as it appears (a zero-cost KServe)."""
    seen = 0
    while not stop.is_set():
        try:
            generation = controller.get(name)["metadata"]["generation"]
        except Exception:  # noqa: BLE001 - not created yet
            generation = 0
        if generation > seen:
            controller.ready(name, url)
            seen = generation
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        folder = base / "iris"
        folder.mkdir()
        x, y = load_iris(return_X_y=True)
        joblib.dump(LogisticRegression(max_iter=1000, random_state=0).fit(x, y),
                    folder / "model.joblib")  # fmt: skip
        (folder / "model-settings.json").write_text(
            json.dumps({"options": {"feature_names": list(RECORD)}})
        )
        (base / "kube").mkdir()
        with running_cluster(base / "kube") as cluster:
            print("cluster start (s):", {k: round(v, 1) for k, v in cluster.timings_s.items()})
            create_namespace(cluster, "bench")
            models = [arg for run in range(runs) for arg in ("--model", f"iris-{run}={folder}")]
            server = start_server(*models, timeout_s=120)
            backend = KServeBackend(namespace="bench", kubeconfig=cluster.kubeconfig)
            try:
                first, calls = _measure(backend, FakeController(cluster, "bench"), server.url,
                                        runs)  # fmt: skip
            finally:
                backend.close()
                server.stop()
    print(f"\n{runs} runs; ms, median | p95\n")
    print("| step | median ms | p95 ms |\n|---|---|---|")
    # The first run pays for the first connections, the watch's and the model's first call.
    print(f"| deploy to first prediction, first run | {first[0] * 1000:.1f} | - |")
    print(f"| deploy to first prediction, later runs | {_ms(first[1:])} |")
    for name, samples in calls.items():
        print(f"| {name} | {_ms(samples)} |")


def _measure(
    backend: KServeBackend, controller: FakeController, url: str, runs: int
) -> tuple[list[float], dict[str, list[float]]]:
    first: list[float] = []
    for run in range(runs):
        name = f"iris-{run}"
        stop = threading.Event()
        helper = threading.Thread(target=_controller, args=(controller, name, url, stop),
                                  daemon=True)  # fmt: skip
        helper.start()
        try:
            started = time.perf_counter()
            spec = DeploymentSpec.build(name=name, storage_uri="s3://models/iris/1", auth=False)
            backend.apply(spec)
            for _ in backend.watch(name, timeout_s=30):
                pass
            with InferenceClient(backend.endpoint(name).url) as client:
                client.predict(RECORD)
            first.append(time.perf_counter() - started)
        finally:
            stop.set()
            helper.join()
    spec = DeploymentSpec.build(name="iris-0", storage_uri="s3://models/iris/1", auth=False)
    calls: dict[str, list[float]] = {"describe()": [], "apply() unchanged": [], "events()": [],
                                     "endpoint()": []}  # fmt: skip
    steps: dict[str, Callable[[], object]] = {"describe()": lambda: backend.describe("iris-0"),
             "apply() unchanged": lambda: backend.apply(spec),
             "events()": lambda: backend.events("iris-0"),
             "endpoint()": lambda: backend.endpoint("iris-0")}  # fmt: skip
    for _ in range(runs):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            calls[name].append(time.perf_counter() - started)
    return first, calls


if __name__ == "__main__":
    main()
