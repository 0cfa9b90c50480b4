"""WebSocket streams against a real `nstarx serve`: order and ids over 10,000 records, V2
messages, errors that keep the stream, the size, idle and slow-consumer limits, keys, the
audit log, batching, pipelines, and the edge's books and deadlines for upgraded connections."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, Frame, Opcode
from websockets.sync.client import connect
from websockets.uri import parse_uri

from nstarx_jupyter.client import AsyncInferenceClient, InferenceClient, InferenceError
from nstarx_jupyter.security.audit_log import read_audit
from nstarx_jupyter.security.home import key_store
from tests.conftest import IRIS_FEATURES
from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration

WINDOW = 32
IDLE_S = 3.0
SEND_TIMEOUT_S = 2.0
MAX_BODY = 200_000
PIPELINE = {
    "name": "ignored",
    "nodes": [
        {"id": "check", "component": "validate",
         "config": {"schema": {"type": "object", "required": ["petal_length"],
                              "properties": {"petal_length": {"type": "number"}}}}},
        {"id": "out", "component": "records"},
    ],
    "edges": [{"id": "e", "source": "check", "target": "out"}],
}  # fmt: skip


class Served:
    """The module's server, its home and keys."""

    def __init__(self, process: ServerProcess, home: Path, keys: dict[str, str]) -> None:
        self.process, self.home, self.keys = process, home, keys
        self.url = process.url
        self.ws = "ws" + process.url.removeprefix("http")

    def stream(self, name: str = "iris", key: str | None = "app", **options: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return connect(f"{self.ws}/v2/models/{name}/stream", additional_headers=headers,
                       compression=None, **options)  # fmt: skip

    def client(self, key: str = "app") -> InferenceClient:
        return InferenceClient(f"{self.url}/v1/models/iris", api_key=self.keys[key])


@pytest.fixture(scope="module")
def served(iris_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("stream")
    home = root / "home"
    folder = root / "iris"
    folder.mkdir()
    (folder / "model.joblib").symlink_to(iris_path)
    (folder / "model-settings.json").write_text(
        json.dumps({"options": {"feature_names": IRIS_FEATURES}})
    )
    pipeline = root / "checker.json"
    pipeline.write_text(json.dumps(PIPELINE))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NSTARX_HOME", str(home))
        store = key_store()
        keys = {name: store.create(name, scopes)[1] for name, scopes in
                [("app", ["predict:iris", "predict:checker"]), ("other", ["predict:fraud"]),
                 ("all", ["predict:*", "metrics"])]}  # fmt: skip
        process = start_server(
            "--model", f"iris={folder}", "--pipeline", f"checker={pipeline}",
            "--max-batch-size", "16", "--max-latency-ms", "5",
            "--stream-window", str(WINDOW), "--stream-idle-s", str(IDLE_S),
            "--stream-send-timeout-s", str(SEND_TIMEOUT_S), "--max-body-bytes", str(MAX_BODY),
            "--max-inflight-body-bytes", "8000000",
            "--header-timeout-s", "1", "--body-timeout-s", "1", "--max-connections", "8",
            auth=True,
        )  # fmt: skip
    yield Served(process, home, keys)
    process.stop()


def _record(row: np.ndarray) -> dict[str, float]:
    return dict(zip(IRIS_FEATURES, row.tolist(), strict=True))


def _batches(url: str, key: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    for family in text_string_to_metric_families(text):
        if family.name == "nstarx_batch_size":
            count = sum(s.value for s in family.samples if s.name.endswith("_count"))
            total = sum(s.value for s in family.samples if s.name.endswith("_sum"))
            return count, total
    raise AssertionError("no batch size histogram")


def _audit(served: Served, **match: Any) -> list[Any]:
    time.sleep(0.2)  # records go out in batches every few milliseconds
    rows = read_audit(served.home / "audit", model=match.pop("model", None))
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def test_ten_thousand_records_lose_none_and_keep_their_order(
    served: Served, iris_model: LogisticRegression, iris_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = iris_data
    expected = iris_model.predict(x).tolist()
    admin = served.keys["all"]
    batches_before = _batches(served.url, admin)
    audited_before = len(_audit(served, model="iris", transport="ws", status=200))
    count = 10_000
    items = ({"id": i, "records": _record(x[i % len(x)])} for i in range(count))
    with served.client() as client:
        answers = list(client.stream(items, window=64))
    assert len(answers) == count
    assert [a["id"] for a in answers] == list(range(count))
    assert [a["records"]["prediction"] for a in answers] == [
        expected[i % len(x)] for i in range(count)
    ]
    # Batching applies: the messages in flight were merged into fewer predict calls.
    calls, rows = (a - b for a, b in zip(_batches(served.url, admin), batches_before, strict=True))
    assert rows >= count
    assert calls < rows
    # One audit record per message, like REST calls.
    audited = _audit(served, model="iris", transport="ws", status=200)
    assert len(audited) - audited_before == count
    assert {r["action"] for r in audited} == {"predict"}
    assert {r["principal"] for r in audited} == {"app"}


def test_v2_messages_and_bad_messages_answered_in_turn(served: Served) -> None:
    v2 = {"id": "v-1", "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                                   "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}  # fmt: skip
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    with served.stream() as ws:
        ws.send(json.dumps(v2))
        ws.send("{not json")
        ws.send(json.dumps({"id": 5, "records": {"colour": "red"}}))
        ws.send(json.dumps({**v2, "parameters": {"binary_data_output": True}}))
        ws.send(json.dumps([record, record]))
        answers = [json.loads(ws.recv(timeout=10)) for _ in range(5)]
    assert answers[0]["id"] == "v-1"
    assert answers[0]["model_name"] == "iris"
    assert answers[0]["outputs"][0]["data"] == [0, 2]
    assert answers[1]["status"] == 400
    assert "malformed JSON" in answers[1]["error"]
    assert answers[2] == {"error": "unknown field 'colour'", "status": 400, "id": 5}
    assert answers[3]["status"] == 400
    assert answers[3]["id"] == "v-1"
    assert [a["prediction"] for a in answers[4]] == [0, 0]
    refused = _audit(served, model="iris", transport="ws", status=400)
    assert {r["action"] for r in refused} >= {"predict", "infer"}
    # The client: errors="yield" puts the error in the answer's place and goes on.
    with served.client() as client:
        got = list(client.stream([record, {"colour": "red"}, record], errors="yield"))
        assert got[0]["prediction"] == 0
        assert isinstance(got[1], InferenceError)
        assert got[1].status == 400
        assert got[2]["prediction"] == 0
        with pytest.raises(InferenceError, match="unknown field 'colour'"):
            list(client.stream([record, {"colour": "red"}, record]))


def test_a_pipeline_streams_records_and_v2(served: Served) -> None:
    length = {"name": "petal_length", "datatype": "FP64", "shape": [2], "data": [1.5, 2.5]}
    with served.stream("checker") as ws:
        ws.send(json.dumps({"petal_length": 1.0}))
        ws.send(json.dumps({"other": 1}))
        ws.send(json.dumps({"id": "p", "inputs": [length]}))
        answers = [json.loads(ws.recv(timeout=10)) for _ in range(3)]
    assert answers[0] == {"petal_length": 1.0}
    assert answers[1]["status"] == 400
    assert "node 'check'" in answers[1]["error"]
    assert answers[2]["id"] == "p"
    assert answers[2]["outputs"][0]["data"] == [1.5, 2.5]


def test_a_message_over_the_body_limit_closes_with_1009(served: Served) -> None:
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    with served.stream() as ws:
        ws.send(json.dumps([record] * 10))
        assert len(json.loads(ws.recv(timeout=10))) == 10
        ws.send(json.dumps([record] * 3000))  # about 270 kB
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    with served.client() as client, pytest.raises(InferenceError) as error:
        list(client.stream([[record] * 3000]))
    assert error.value.status == 413


def test_keys_are_checked_on_the_upgrade(served: Served) -> None:
    for key, name, status in [(None, "iris", 401), ("other", "iris", 403), ("all", "nope", 404)]:
        with pytest.raises(InvalidStatus) as refused:
            served.stream(name, key=key)
        assert refused.value.response.status_code == status
        assert "error" in json.loads(refused.value.response.body or b"{}")
    with pytest.raises(InferenceError) as error:
        list(InferenceClient(f"{served.url}/v1/models/iris").stream([{}]))
    assert error.value.status == 401
    with pytest.raises(InferenceError) as error:
        list(served.client("other").stream([{}]))
    assert error.value.status == 403
    refusals = _audit(served, model="iris", transport="ws", action="stream")
    assert {r["status"] for r in refusals} >= {401, 403}


def test_a_live_stream_outlasts_the_edge_deadlines_then_idles_out(served: Served) -> None:
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    with served.stream() as ws:
        # The edge's header and body deadlines are 1 s: the stream lives on past them.
        for _ in range(6):
            time.sleep(0.5)
            ws.send(json.dumps(record))
            assert json.loads(ws.recv(timeout=10))["prediction"] == 0
        last = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=IDLE_S + 10)
        idle = time.monotonic() - last
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert "idle" in closed.value.rcvd.reason
    assert idle >= IDLE_S - 0.5


def test_closed_streams_give_back_their_place_under_the_cap(served: Served) -> None:
    # The server takes 8 connections: 20 streams one after the other must all open.
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    for _ in range(20):
        with served.stream() as ws:
            ws.send(json.dumps(record))
            assert json.loads(ws.recv(timeout=10))["prediction"] == 0
    assert httpx.get(f"{served.url}/v2/health/live").status_code == 200


def test_async_client_streams_an_async_iterable_in_order(
    served: Served, iris_model: LogisticRegression, iris_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = iris_data
    expected = iris_model.predict(x).tolist()

    async def items() -> AsyncIterator[Any]:
        for i in range(300):
            if i == 150:
                yield {"colour": "red"}
            yield _record(x[i % len(x)])

    async def run() -> list[Any]:
        async with AsyncInferenceClient(f"{served.url}/v1/models/iris",
                                        api_key=served.keys["app"]) as client:  # fmt: skip
            return [a async for a in client.stream(items(), window=8, errors="yield")]

    answers = asyncio.run(run())
    assert len(answers) == 301
    assert isinstance(answers[150], InferenceError)
    del answers[150]
    assert [a["prediction"] for a in answers] == [expected[i % len(x)] for i in range(300)]


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _raw_stream(served: Served) -> tuple[socket.socket, ClientProtocol]:
    """A stream on a plain socket (websockets' sans-I/O protocol): it reads only when told."""
    uri = parse_uri(f"{served.ws}/v2/models/iris/stream")
    protocol = ClientProtocol(uri, max_size=None)
    request = protocol.connect()
    request.headers["Authorization"] = f"Bearer {served.keys['app']}"
    protocol.send_request(request)
    sock = socket.create_connection((uri.host, uri.port))
    # Small buffers, yet over the loopback MSS (64 kB): smaller ones crawl once read again.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 262144)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.sendall(b"".join(protocol.data_to_send()))
    while protocol.handshake_exc is None and not protocol.events_received():
        protocol.receive_data(sock.recv(65536))
    assert protocol.handshake_exc is None
    return sock, protocol


def _send_until_stalled(
    sock: socket.socket, protocol: ClientProtocol, message: bytes, attempts: int
) -> int:
    """Send `message` up to `attempts` times, until the server stops reading for half a second.

    Returns how many messages went out whole.
    """
    sock.setblocking(False)
    for count in range(attempts):
        protocol.send_text(message)
        pending = memoryview(b"".join(protocol.data_to_send()))
        while pending:
            _, writable, _ = select.select([], [sock], [], 0.5)
            if not writable:
                return count
            pending = pending[sock.send(pending) :]
    return attempts


def _read_until_close(sock: socket.socket, protocol: ClientProtocol) -> tuple[int, Close | None]:
    """Read what the server sent: the answers counted, then its close frame (None: none)."""
    sock.setblocking(True)
    sock.settimeout(10)
    answers = 0
    while data := sock.recv(1 << 20):
        protocol.receive_data(data)
        for event in protocol.events_received():
            if not isinstance(event, Frame):
                continue
            if event.opcode is Opcode.TEXT:
                answers += 1
            elif event.opcode is Opcode.CLOSE:
                return answers, Close.parse(event.data)
    return answers, None


def test_a_client_that_does_not_read_is_bounded_then_closed_with_1013(served: Served) -> None:
    """Send large requests and read nothing: the server stops reading, then closes the stream.

    Its kernel buffers may take most of what is sent (up to 32 MB here) before the client's
    sends block; past the deadline the server closes and drops the rest unread.
    """
    sock, protocol = _raw_stream(served)
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    message = json.dumps([record] * 400).encode()  # ~36 kB in, ~60 kB of answers out
    rss_before = _rss_bytes(served.process.process.pid)
    try:
        sent = _send_until_stalled(sock, protocol, message, 1000)
        grown = _rss_bytes(served.process.process.pid) - rss_before
        assert grown < 64 * 1024 * 1024, f"the server grew by {grown} bytes"
        # Past the slow-consumer deadline, the answers end with a close frame: 1013.
        time.sleep(SEND_TIMEOUT_S + 1.5)
        answers, close = _read_until_close(sock, protocol)
    finally:
        sock.close()
    assert close is not None
    assert close.code == 1013
    assert "slow consumer" in close.reason
    assert 1 <= answers < sent  # the server answered what it had read, within its window
    # The server serves the next stream as before.
    with served.stream() as ws:
        ws.send(json.dumps(record))
        assert json.loads(ws.recv(timeout=10))["prediction"] == 0
