"""`nstarx serve` as a real process: third-party clients, limits, scale to zero and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton_http
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter.deployment.local import LocalBackend
from tests.integration.server import ROOT, ServerProcess, start_server

pytestmark = pytest.mark.integration
ROW = [5.1, 3.5, 1.4, 0.2]


def v2_body(data: list[float], shape: list[int]) -> dict[str, object]:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP32", "data": data}]}


@pytest.fixture(scope="module")
def iris_server(iris_path: Path) -> Iterator[ServerProcess]:
    server = start_server("--model", f"iris={iris_path}")
    yield server
    server.stop()


def write_slow_model(root: Path, name: str, **settings: object) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    doc = {"runtime": "tests.support.runtimes.SlowRuntime", **settings}
    (folder / "model-settings.json").write_text(json.dumps(doc))


def test_port_zero_prints_the_bound_url(iris_server: ServerProcess) -> None:
    assert iris_server.url.startswith("http://127.0.0.1:")
    assert not iris_server.url.endswith(":0")
    assert requests.get(f"{iris_server.url}/v2/health/live", timeout=5).json() == {"live": True}


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_infers_like_the_model(
    iris_server: ServerProcess, iris_model: LogisticRegression, binary: bool
) -> None:
    client = triton_http.InferenceServerClient(url=iris_server.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        meta = client.get_model_metadata("iris")
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        rows = np.asarray([ROW, [6.0, 3.0, 5.0, 2.0]], dtype=np.float32)
        tensor = triton_http.InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        wanted = [
            triton_http.InferRequestedOutput("predict", binary_data=binary),
            triton_http.InferRequestedOutput("predict_proba", binary_data=binary),
        ]
        result = client.infer("iris", [tensor], outputs=wanted, request_id="abc-1")
        assert result.get_response()["id"] == "abc-1"
        expected = iris_model.predict(rows.astype(np.float64))
        np.testing.assert_array_equal(result.as_numpy("predict"), expected)
        np.testing.assert_allclose(
            result.as_numpy("predict_proba"), iris_model.predict_proba(rows.astype(np.float64))
        )
    finally:
        client.close()


def test_plain_requests_without_content_type(iris_server: ServerProcess) -> None:
    body = json.dumps(v2_body(ROW, [1, 4])).encode()
    response = requests.post(f"{iris_server.url}/v2/models/iris/infer", data=body, timeout=5)
    assert "Content-Type" not in response.request.headers
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"


def test_oversized_body_is_413_over_a_real_socket(iris_path: Path) -> None:
    server = start_server("--model", f"iris={iris_path}", "--max-body-bytes", "1000")
    try:
        response = requests.post(f"{server.url}/v2/models/iris/infer", data=b"x" * 2000, timeout=5)
        assert response.status_code == 413
        assert "1000-byte limit" in response.json()["error"]
    finally:
        server.stop()


def test_scale_to_zero_unloads_when_idle_and_reloads_on_demand(iris_path: Path) -> None:
    server = start_server(
        "--model", f"iris={iris_path}", "--min-replicas", "0", "--idle-timeout-s", "0.3"
    )
    try:
        index = requests.post(f"{server.url}/v2/repository/index", timeout=5).json()
        assert index == [{"name": "iris", "version": "1", "state": "UNAVAILABLE"}]
        assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
        url = f"{server.url}/v2/models/iris/infer"
        assert requests.post(url, json=v2_body(ROW, [1, 4]), timeout=10).status_code == 200
        assert requests.get(f"{server.url}/v2/models/iris/ready", timeout=5).status_code == 200
        _wait_for_state(server, "UNAVAILABLE")
        # The next request waits through the cold start instead of failing.
        assert requests.post(url, json=v2_body(ROW, [1, 4]), timeout=10).status_code == 200
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'nstarx_model_load_seconds_count{model="iris",version="1"} 2.0' in metrics
    finally:
        server.stop()


def _wait_for_state(server: ServerProcess, state: str, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        index = requests.post(f"{server.url}/v2/repository/index", timeout=5).json()
        if index[0]["state"] == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"model never reached {state}: {index}")


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[ServerProcess]:
    write_slow_model(tmp_path, "limited", options={"delay_s": 0.6}, container_concurrency=1,
                     max_queue=1)  # fmt: skip
    write_slow_model(tmp_path, "deadline", options={"delay_s": 0.6}, timeout_s=0.1)
    write_slow_model(tmp_path, "slow", options={"delay_s": 1.0})
    server = start_server("--model-repository", str(tmp_path))
    yield server
    server.stop()


def _post_pair(url: str) -> requests.Response:
    body = {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    return requests.post(url, json=body, timeout=30)


def test_full_queue_answers_503_with_retry_after(slow_server: ServerProcess) -> None:
    url = f"{slow_server.url}/v2/models/limited/infer"
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(_post_pair, [url] * 4))
    statuses = sorted(r.status_code for r in responses)
    # one predicting, one queued, the rest turned away
    assert statuses == [200, 200, 503, 503]
    rejected = [r for r in responses if r.status_code == 503]
    assert all(r.headers["Retry-After"] == "1" for r in rejected)
    assert "queue is full" in rejected[0].json()["error"]


def test_deadline_answers_504(slow_server: ServerProcess) -> None:
    response = _post_pair(f"{slow_server.url}/v2/models/deadline/infer")
    assert response.status_code == 504
    assert "did not answer within 0.1 s" in response.json()["error"]


def test_health_answers_while_a_slow_model_works(slow_server: ServerProcess) -> None:
    finished: list[str] = []
    url = f"{slow_server.url}/v2/models/slow/infer"
    worker = threading.Thread(target=lambda: finished.append(str(_post_pair(url).status_code)))
    worker.start()
    time.sleep(0.2)  # the prediction (1 s of CPU) is under way
    for _ in range(5):
        response = requests.get(f"{slow_server.url}/v2/health/live", timeout=5)
        assert response.status_code == 200
        finished.append("health")
    worker.join()
    # every health check came back while the slow prediction was still running
    assert finished == ["health"] * 5 + ["200"]


def test_cli_mistakes_print_one_line_and_no_traceback(tmp_path: Path) -> None:
    cases = [
        (["--model", "iris"], "expects NAME=PATH"),
        (["--model", f"iris={tmp_path / 'missing.joblib'}"], "does not exist"),
        (["--model", "iris=nosuchruntime.Thing:"], "cannot import runtime"),
        (["--model", "bad name!=x.joblib"], "model setting 'name'"),
    ]
    for args, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "nstarx_jupyter.cli", "serve", "--port", "0", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_the_readme_demo_runs_the_quickstart_headless(tmp_path: Path) -> None:
    """`make demo` runs `nstarx demo`: train, deploy with a key, predict, load, redeploy.

    In its own home ($NSTARX_HOME/demo): the user's registry and server are left alone.
    """
    home = tmp_path / "home"
    env = {**os.environ, "NSTARX_HOME": str(home)}
    env.pop("NSTARX_DEMO_HOME", None)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "nstarx_jupyter.cli", "demo", "--cleanup", "--rps", "50",
             "--duration-s", "2"],
            capture_output=True, text=True, timeout=240, env=env, check=False,
        )  # fmt: skip
    finally:  # --cleanup stops the server; a failed run must not leave it behind either
        LocalBackend(home / "demo" / "server").stop()
        LocalBackend(home / "server").stop()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"the demo's own home (its registry, server and keys): {home / 'demo'}" in out
    assert [path.name for path in home.iterdir()] == ["demo"]  # nothing of the user's touched
    assert (home / "demo" / "server").is_dir()
    assert "deployed iris revision 1 (Ready)" in out
    assert "API key (shown once): nsx_" in out
    assert '"prediction": "setosa"' in out
    assert "sent 100, ok 100, errors 0" in out
    assert "server-side latency: p50 " in out
    assert "registered in MLflow as models:/iris/1" in out
    assert "deployed RandomForestClassifier as revision 3" in out
    assert "deleted iris and stopped the local server" in out
