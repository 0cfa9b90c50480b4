"""Lifecycle of a real server process: a drain on SIGTERM, and models that fail to load."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from tests.integration.server import start_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

ROW = [5.1, 3.5, 1.4, 0.2]
INFER = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}


class _Outcomes:
    """What clients saw, with the time they saw it (monotonic seconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[tuple[float, str, Any]] = []

    def add(self, kind: str, detail: Any = None) -> None:
        with self.lock:
            self.rows.append((time.monotonic(), kind, detail))

    def of(self, kind: str, after: float = 0.0) -> list[tuple[float, str, Any]]:
        with self.lock:
            return [row for row in self.rows if row[1] == kind and row[0] >= after]


def _predict_loop(url: str, stop: threading.Event, out: _Outcomes) -> None:
    """Predict in a loop on a keep-alive connection, as a client behind a balancer would."""
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            try:
                answer = http.post(f"{url}/v2/models/iris/infer", json=INFER)
            except httpx.ConnectError:  # nothing was sent: the listener is closed
                out.add("refused")
                time.sleep(0.02)
                continue
            except httpx.HTTPError as exc:  # sent, then reset or cut: a failed request
                out.add("failed", repr(exc))
                continue
            out.add("ok" if answer.status_code == 200 else "failed", answer.status_code)


def _probe_loop(url: str, stop: threading.Event, out: _Outcomes) -> None:
    """Poll readiness every 20 ms, as a load balancer's health check would."""
    with httpx.Client(timeout=5) as http:
        while not stop.is_set():
            try:
                out.add(f"ready-{http.get(f'{url}/v2/health/ready').status_code}")
            except httpx.HTTPError:
                out.add("ready-refused")
            time.sleep(0.02)


def _grpc_probe_loop(address: str, stop: threading.Event, out: _Outcomes) -> None:
    """Poll V2 gRPC ServerReady every 20 ms."""
    with grpc.insecure_channel(address) as channel:
        ready = channel.unary_unary(
            "/inference.GRPCInferenceService/ServerReady",
            request_serializer=pb.ServerReadyRequest.SerializeToString,
            response_deserializer=pb.ServerReadyResponse.FromString,
        )
        while not stop.is_set():
            try:
                out.add(f"grpc-ready-{ready(pb.ServerReadyRequest(), timeout=5).ready}")
            except grpc.RpcError:
                out.add("grpc-ready-refused")
            time.sleep(0.02)


def _slow_call(url: str, at: float, out: _Outcomes) -> None:
    """At monotonic time `at`, call a model that sleeps 1.5 s: in flight when the port closes."""
    time.sleep(max(0.0, at - time.monotonic()))
    with httpx.Client(timeout=30) as http:
        try:
            answer = http.post(f"{url}/v2/models/slow/infer", json=INFER)
            out.add("slow", answer.status_code)
        except httpx.HTTPError as exc:
            out.add("slow", repr(exc))


def test_sigterm_under_load_answers_not_ready_during_the_drain_and_exits_0_with_no_failure(
    iris_path: Path, tmp_path: Path
) -> None:
    slow = tmp_path / "repository" / "slow"
    slow.mkdir(parents=True)
    (slow / "model-settings.json").write_text(json.dumps({
        "runtime": "tests.support.runtimes.BrokenIrisRuntime",
        "options": {"mode": "sleep", "delay_s": 1.5}}))  # fmt: skip
    server = start_server("--model", f"iris={iris_path}", "--model-repository", str(slow.parent),
                          "--drain-s", "2", "--grpc-port", "0")  # fmt: skip
    assert server.grpc is not None
    predictions, probes = _Outcomes(), _Outcomes()
    stop = threading.Event()
    clients = [threading.Thread(target=_predict_loop, args=(server.url, stop, predictions))
               for _ in range(4)]  # fmt: skip
    clients.append(threading.Thread(target=_probe_loop, args=(server.url, stop, probes)))
    clients.append(threading.Thread(target=_grpc_probe_loop, args=(server.grpc, stop, probes)))
    for thread in clients:
        thread.start()
    try:
        time.sleep(1.0)
        assert predictions.of("ok"), "no prediction succeeded before SIGTERM"
        assert probes.of("ready-200")
        assert probes.of("grpc-ready-True")
        signalled = time.monotonic()
        in_flight = threading.Thread(target=_slow_call, args=(server.url, signalled + 1.2,
                                                              predictions))  # fmt: skip
        in_flight.start()
        clients.append(in_flight)
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=30)
        exited = time.monotonic()
        time.sleep(0.3)  # the clients find the port closed
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
        server.stop()
    log = "".join(server.output)
    assert code == 0, log
    # Readiness turned 503 at once and stayed so while the listener still answered.
    after = [row for row in probes.rows if row[0] >= signalled + 0.1]
    not_ready = [row for row in after if row[1] == "ready-503"]
    assert not_ready, after
    assert not [row for row in after if row[1] == "ready-200"]
    assert not_ready[-1][0] - signalled >= 1.0  # the drain lasted (2 s; probes may lag on CI)
    assert [row for row in after if row[1] == "grpc-ready-False"]
    assert not [row for row in after if row[1] == "grpc-ready-True"]
    # Predictions kept being served through the drain, and none that was accepted failed.
    served_in_drain = predictions.of("ok", after=signalled + 0.5)
    assert len(served_in_drain) >= 20
    assert predictions.of("failed") == []
    # A request still running when the listener closed (sent 1.2 s in, 1.5 s long) finished.
    assert [row[2] for row in predictions.of("slow")] == [200]
    assert exited - signalled < 10
    assert "Traceback" not in log


def test_a_model_that_fails_to_load_is_failed_with_its_reason_while_the_others_serve(
    iris_path: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"not a model")
    server = start_server("--model", f"good={iris_path}", "--model", f"bad={broken}")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.post("/v2/models/good/infer", json=INFER).status_code == 200
            ready = http.get("/v2/models/bad/ready")
            assert ready.status_code == 503
            assert ready.json()["state"] == "FAILED"
            assert "broken.joblib" in ready.json()["reason"]
            index = {row["name"]: row for row in http.post("/v2/repository/index").json()}
            assert index["good"]["state"] == "READY"
            assert index["bad"]["state"] == "FAILED"
            assert "broken.joblib" in index["bad"]["reason"]
            metadata = http.get("/v2/models/bad")
            assert metadata.status_code == 503
            assert "FAILED to load" in metadata.json()["error"]
            assert "broken.joblib" in metadata.json()["error"]
            failed_call = http.post("/v2/models/bad/infer", json=INFER)
            assert failed_call.status_code == 503
            assert "FAILED" in failed_call.json()["error"]
            # KServe's rule: a server is ready when its models are; live stays 200.
            assert http.get("/v2/health/ready").status_code == 503
            assert http.get("/v2/health/live").status_code == 200
            # Fixed, then loaded again: it serves and the server is ready.
            shutil.copyfile(iris_path, broken)
            assert http.post("/v2/repository/models/bad/load").status_code == 200
            assert http.post("/v2/models/bad/infer", json=INFER).status_code == 200
            assert http.get("/v2/health/ready").status_code == 200
    finally:
        server.stop()
    log = "".join(server.output)
    assert "model bad version 1 FAILED to load" in log
    assert server.process.returncode == 0


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """A backend on this test's $NSTARX_HOME; its server is stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


@pytest.mark.xdist_group("local-backend")
def test_a_deployment_that_no_longer_loads_is_failed_with_its_reason_everywhere(
    backend: LocalBackend, named_iris: Path
) -> None:
    deploy(named_iris, "iris", backend=backend)
    assert backend.stop()
    (named_iris / "model.joblib").write_bytes(b"not a model any more")
    state = backend.ensure_server()  # restores iris, which does not load now
    described = backend.describe("iris")
    assert described.status == "Failed"
    assert "did not load" in (described.reason or "")
    admin = {"authorization": f"Bearer {state.token}"}
    index = httpx.post(f"{state.url}/v2/repository/index", headers=admin).json()
    assert [(row["name"], row["state"]) for row in index] == [("iris", "FAILED")]
    assert "did not load" in index[0]["reason"]
    status = subprocess.run(
        [sys.executable, "-m", "nstarx_jupyter.cli", "status"], capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("iris "))
    assert "Failed" in row
    assert "the model did not load" in row


def test_sigint_drains_too_and_a_second_signal_stops_at_once(iris_path: Path) -> None:
    server = start_server("--model", f"iris={iris_path}", "--drain-s", "60")
    try:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            assert http.get("/v2/health/ready").status_code == 200
            server.process.send_signal(signal.SIGINT)
            time.sleep(0.3)
            assert http.get("/v2/health/ready").status_code == 503  # draining, still answering
            assert http.get("/v2/models/iris/ready").status_code == 503
            assert http.post("/v2/models/iris/infer", json=INFER).status_code == 200
        second = time.monotonic()
        server.process.send_signal(signal.SIGTERM)  # not the 60 s drain: stop now
        code = server.process.wait(timeout=20)
        stopped_s = time.monotonic() - second
    finally:
        server.stop()
    assert code == 0, "".join(server.output)
    assert stopped_s < 5
