"""Sinks through a real `nstarx serve`: a deployment's webhook and JSONL file get every answered
request, a KServe manifest's `logger` sends CloudEvents, a pipeline's `sink` step sends its
records, counters show in `/metrics`, and a folder outside the sink root is refused with 403."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.serving.sinks import REQUEST_EVENT, RESPONSE_EVENT
from tests.integration.server import ServerProcess, start_server
from tests.support.receiver import Receiver

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]
ROW = [5.1, 3.5, 1.4, 0.2]
BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def served(tmp_path: Path, iris_path: Path) -> Iterator[tuple[ServerProcess, httpx.Client, Path]]:
    """A server with a state folder; an admin client; the folder file sinks write under."""
    state = tmp_path / "state"
    server = start_server("--state-dir", str(state), "--allow-path", str(iris_path.parent))
    token = json.loads((state / "state.json").read_text())["token"]
    try:
        with httpx.Client(base_url=server.url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as http:  # fmt: skip
            yield server, http, state / "sinks"
    finally:
        server.stop()


def _wait(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("the condition did not hold in time")


def test_every_answered_request_reaches_the_webhook_and_the_file(
    served: tuple[ServerProcess, httpx.Client, Path], receiver: Receiver, iris_path: Path
) -> None:
    server, http, sinks = served
    spec = {"storage_uri": str(iris_path), "trusted": True, "auth": False, "sinks": [
        {"kind": "webhook", "url": receiver.url, "batch_size": 4, "flush_s": 0.2,
         "headers": {"Authorization": "Bearer hook-secret"}},
        {"kind": "file", "name": "archive", "path": "iris-archive", "flush_s": 0.2},
    ]}  # fmt: skip
    made = http.put("/nstarx/v1/deployments/iris", json=spec)
    assert made.status_code == 201, made.text
    assert made.json()["spec"]["sinks"][0]["headers"] == {"Authorization": "***"}
    for i in range(6):
        answer = httpx.post(f"{server.url}/v2/models/iris/infer", json={**BODY, "id": f"r{i}"})
        assert answer.status_code == 200, answer.text
    _wait(lambda: len(receiver.records()) == 6)
    records = receiver.records()
    assert [r["request_id"] for r in records] == [f"r{i}" for i in range(6)]
    assert records[0]["deployment"] == "iris"
    assert records[0]["inputs"] == {"input-0": [ROW]}
    assert records[0]["outputs"] == {"predict": [0]}
    assert receiver.accepted()[0].headers["authorization"] == "Bearer hook-secret"
    archive = sinks / "iris-archive" / "records.jsonl"
    _wait(lambda: len(_lines(archive)) == 6)
    assert [line["request_id"] for line in _lines(archive)] == [f"r{i}" for i in range(6)]
    sent = 'nstarx_sink_sent_records_total{owner="iris",sink="webhook"} 6.0'
    _wait(lambda: sent in httpx.get(f"{server.url}/metrics").text)  # counted once 200 is read
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'nstarx_sink_sent_records_total{owner="iris",sink="archive"} 6.0' in metrics
    assert http.get("/nstarx/v1/deployments/iris").json()["sinks"]["webhook"]["sent"] == 6
    assert "hook-secret" not in http.get("/nstarx/v1/deployments/iris").text

    # Sent back as described (headers hidden), the deployment keeps its secret.
    described = http.get("/nstarx/v1/deployments/iris").json()["spec"]
    again = http.put("/nstarx/v1/deployments/iris", json={**described, "timeout_s": 30})
    assert again.status_code == 200, again.text
    httpx.post(f"{server.url}/v2/models/iris/infer", json={**BODY, "id": "after"})
    _wait(lambda: len(receiver.records()) == 7)
    assert receiver.accepted()[-1].headers["authorization"] == "Bearer hook-secret"


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def test_a_dead_receiver_leaves_a_dead_letter_file_and_requests_unaffected(
    served: tuple[ServerProcess, httpx.Client, Path], iris_path: Path
) -> None:
    server, http, sinks = served
    dead = Receiver(fail_first=-1, fail_status=502)
    try:
        spec = {"storage_uri": str(iris_path), "trusted": True, "auth": False, "sinks": [
            {"kind": "webhook", "url": dead.url, "batch_size": 2, "flush_s": 0.1,
             "max_attempts": 2}]}  # fmt: skip
        assert http.put("/nstarx/v1/deployments/iris", json=spec).status_code == 201
        for i in range(4):
            answer = httpx.post(f"{server.url}/v2/models/iris/infer", json={**BODY, "id": f"d{i}"})
            assert answer.status_code == 200
        letter = sinks / "dead-letter" / "iris.webhook.jsonl"
        _wait(lambda: len(_lines(letter)) == 4)
        assert letter.read_bytes().endswith(b"\n")
        assert {line["request_id"] for line in _lines(letter)} == {f"d{i}" for i in range(4)}
        batches = [json.dumps(post.body, sort_keys=True) for post in dead.posts]
        assert all(batches.count(batch) == 2 for batch in batches)  # two attempts each
    finally:
        dead.close()


def test_a_sink_folder_outside_the_sink_root_is_refused_with_403(
    served: tuple[ServerProcess, httpx.Client, Path], iris_path: Path, tmp_path: Path
) -> None:
    _, http, _ = served
    for path in (str(tmp_path / "elsewhere"), "../../escape"):
        spec = {"storage_uri": str(iris_path), "auth": False,
                "sinks": [{"kind": "file", "path": path}]}  # fmt: skip
        refused = http.put("/nstarx/v1/deployments/iris", json=spec)
        assert refused.status_code == 403, refused.text
        assert "outside the sink folder" in refused.json()["error"]
    assert not (tmp_path / "elsewhere").exists()
    spec = {"storage_uri": str(iris_path), "sinks": [{"url": "ftp://x/"}]}
    bad = http.put("/nstarx/v1/deployments/iris", json=spec)
    assert bad.status_code == 400


def test_a_kserve_logger_applied_locally_sends_cloudevents(
    nstarx_home: Path, iris_path: Path, receiver: Receiver, tmp_path: Path
) -> None:
    manifest = tmp_path / "iris.yaml"
    manifest.write_text(f"""
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris-logged
spec:
  predictor:
    logger:
      mode: all
      url: {receiver.url}
    sklearn:
      storageUri: {iris_path.parent}
""")
    backend = LocalBackend(nstarx_home / "server", timeout_s=60)
    try:
        applied = subprocess.run(
            [sys.executable, "-m", "nstarx_jupyter.cli", "apply", "-f", str(manifest)],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        assert "spec.predictor.logger: sent" in applied.stdout
        state = backend.running()
        assert state is not None
        answer = httpx.post(f"{state.url}/v1/models/iris-logged:predict",
                            json={"instances": [ROW]}, timeout=30)  # fmt: skip
        assert answer.status_code == 200, answer.text
        receiver.wait_for(2)
        request, response = receiver.accepted()
        assert request.headers["ce-type"] == REQUEST_EVENT
        assert response.headers["ce-type"] == RESPONSE_EVENT
        assert request.headers["ce-id"] == response.headers["ce-id"]
        assert request.headers["ce-inferenceservicename"] == "iris-logged"
        assert request.body["inputs"][0]["data"] == ROW
        assert response.body["outputs"][0]["data"] == [0]
    finally:
        backend.stop()


def test_a_pipeline_sink_step_sends_its_records_and_passes_them_on(
    served: tuple[ServerProcess, httpx.Client, Path], receiver: Receiver
) -> None:
    server, http, _ = served
    pipeline = {
        "name": "export",
        "nodes": [
            {"id": "check", "component": "validate",
             "config": {"schema": {"type": "object", "required": ["x"]}}},
            {"id": "send", "component": "sink",
             "config": {"sink": {"kind": "webhook", "url": receiver.url, "flush_s": 0.1}}},
            {"id": "out", "component": "records"},
        ],
        "edges": [{"id": "a", "source": "check", "target": "send"},
                  {"id": "b", "source": "send", "target": "out"}],
    }  # fmt: skip
    made = http.put("/nstarx/v1/pipelines/export", json=pipeline)
    assert made.status_code in (200, 201), made.text
    answer = http.post(f"{server.url}/v1/models/export/predict", json=[{"x": 1}, {"x": 2}])
    assert answer.status_code == 200, answer.text
    assert answer.json() == [{"x": 1}, {"x": 2}]
    _wait(lambda: len(receiver.records()) == 2)
    assert [r["record"] for r in receiver.records()] == [{"x": 1}, {"x": 2}]
    assert receiver.records()[0]["pipeline"] == "export"
    sent = 'nstarx_sink_sent_records_total{owner="export",sink="send"} 2.0'
    _wait(lambda: sent in httpx.get(f"{server.url}/metrics").text)


def test_deploy_from_python_with_sinks_and_a_later_change_keeps_the_secret(
    nstarx_home: Path, named_iris: Path, receiver: Receiver
) -> None:
    from nstarx_jupyter.notebook.api import deploy

    backend = LocalBackend(nstarx_home / "server", timeout_s=60)
    try:
        sinks = [{"kind": "webhook", "url": receiver.url, "flush_s": 0.1,
                  "headers": {"X-Hook-Key": "k-123"}},
                 {"kind": "file", "path": "py"}]  # fmt: skip
        made = deploy(named_iris, "iris", backend=backend, sinks=sinks)
        row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
        assert made.predict(row)["prediction"] == 0
        _wait(lambda: len(receiver.records()) == 1)
        assert receiver.accepted()[0].headers["x-hook-key"] == "k-123"
        described = backend.describe("iris")
        assert described.spec.sinks[0].headers == {"X-Hook-Key": "***"}  # type: ignore[union-attr]
        backend.apply(described.spec.replace(timeout_s=20))  # sent back hidden: kept
        made.predict(row)
        _wait(lambda: len(receiver.records()) == 2)
        assert receiver.accepted()[-1].headers["x-hook-key"] == "k-123"
        archive = backend.state_dir / "sinks" / "py" / "records.jsonl"
        _wait(lambda: len(_lines(archive)) == 2)
    finally:
        backend.stop()
