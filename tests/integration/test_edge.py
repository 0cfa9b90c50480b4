"""The HTTP edge against a real `nstarx serve`: read deadlines, the connection cap, body memory,
the body limit on the control API and bounded logs."""

from __future__ import annotations

import json
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration

FD_LIMIT = 1024
SLOW_CONNECTIONS = 1200
HEALTH_P99_S = 0.5
"""A health probe's p99 under the slow connections: a blocked server is seconds."""

# A slowloris client: SLOW_CONNECTIONS connections that send a request's headers a byte a
# second, each reconnecting as soon as the server closes it, until killed.
_SLOWLORIS = """
import asyncio, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, count = int(sys.argv[1]), int(sys.argv[2])
HEAD = b"GET /v2/health/live HTTP/1.1\\r\\nHost: x\\r\\n" + b"X-a: b\\r\\n" * 1000
opened = 0

async def slow():
    global opened
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        opened += 1
        if opened == count:
            print("open", flush=True)
        try:
            for byte in HEAD:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)
        except OSError:
            pass
        writer.close()
        await asyncio.sleep(0.5)

async def main():
    await asyncio.gather(*(slow() for _ in range(count)))

asyncio.run(main())
"""


def _low_fd_limit() -> None:
    """In the server's child process: at most FD_LIMIT file descriptors, soft and hard."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture
def low_fd_server(iris_path: Path) -> Iterator[ServerProcess]:
    server = start_server("--model", f"iris={iris_path}", preexec_fn=_low_fd_limit)
    yield server
    server.stop()


def _probe(port: int) -> float | None:
    """One health probe on a new connection: its latency in seconds, None if it failed."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                answer += chunk
    except OSError:
        return None
    if not answer.startswith(b"HTTP/1.1 200"):
        return None
    return time.perf_counter() - started


def test_health_probes_get_through_1200_slow_connections_at_an_fd_limit_of_1024(
    low_fd_server: ServerProcess,
) -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < SLOW_CONNECTIONS + 100:
        pytest.skip("the slowloris client needs more file descriptors than this machine allows")
    port = int(low_fd_server.url.rsplit(":", 1)[1])
    attack = subprocess.Popen(
        [sys.executable, "-c", _SLOWLORIS, str(port), str(SLOW_CONNECTIONS)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert attack.stdout is not None
        assert attack.stdout.readline() == "open\n"  # every slow connection opened once
        time.sleep(1.0)
        lines_before = len(low_fd_server.output)
        latencies: list[float | None] = [None] * 200  # a probe not made in 40 s failed
        give_up = time.monotonic() + 40
        for i in range(len(latencies)):
            if time.monotonic() > give_up:
                break
            latencies[i] = _probe(port)
            time.sleep(0.04)
    finally:
        attack.kill()
        attack.wait()
        if attack.stdout is not None:
            attack.stdout.close()
    answered = sorted(latency for latency in latencies if latency is not None)
    print(
        f"health: {len(answered)} of {len(latencies)} answered, "
        f"p99 {answered[int(0.99 * len(answered)) - 1] * 1000:.1f} ms"
        if answered
        else "none"
    )
    assert len(answered) >= 0.99 * len(latencies), f"{len(answered)} of {len(latencies)}"
    p99 = answered[int(0.99 * len(answered)) - 1]
    # Issue 17 found 40 % of probes failing and a 5 s p99 here. On an idle machine the p99 is a
    # few ms; with the suite's other worker and other work on the 2 cores it reached 112 ms
    # once: the bound tells a blocked server from a busy machine, bench/ measures latency.
    assert p99 < HEALTH_P99_S, f"health p99 {p99 * 1000:.0f} ms"
    # what the server wrote meanwhile is bounded (no line per connection or per failed accept)
    logged = low_fd_server.output[lines_before:]
    assert len(logged) < 50, "".join(logged[-20:])


@pytest.fixture
def quick_deadlines(iris_path: Path) -> Iterator[ServerProcess]:
    server = start_server("--model", f"iris={iris_path}", "--header-timeout-s", "1",
                          "--body-timeout-s", "1")  # fmt: skip
    yield server
    server.stop()


def _answer_within(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    started = time.monotonic()
    sock.settimeout(limit_s)
    try:
        return sock.recv(4096), time.monotonic() - started
    except TimeoutError:
        return b"", time.monotonic() - started


def _port(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def test_a_connection_that_sends_nothing_gets_408_at_the_header_deadline(
    quick_deadlines: ServerProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", _port(quick_deadlines))) as sock:
        answer, waited_s = _answer_within(sock, 5)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 < waited_s < 2.0


def test_headers_sent_byte_by_byte_get_408_at_the_header_deadline(
    quick_deadlines: ServerProcess,
) -> None:
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n"
    with socket.create_connection(("127.0.0.1", _port(quick_deadlines))) as sock:
        started = time.monotonic()
        closed = False
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)  # each byte within the keep-alive timeout, the whole over the deadline
        answer, _ = _answer_within(sock, 5)
        waited_s = time.monotonic() - started
    assert closed or answer.startswith(b"HTTP/1.1 408"), answer
    assert waited_s < 3.0


def test_a_body_that_does_not_arrive_gets_408_at_the_body_deadline(
    quick_deadlines: ServerProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", _port(quick_deadlines))) as sock:
        sock.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\n\r\n{")  # fmt: skip
        answer, waited_s = _answer_within(sock, 5)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert waited_s < 2.0
    # the server kept serving meanwhile, and a keep-alive client between requests is not timed out
    with httpx.Client() as client:
        assert client.get(f"{quick_deadlines.url}/v2/health/live").status_code == 200
        time.sleep(1.6)
        assert client.get(f"{quick_deadlines.url}/v2/health/live").status_code == 200


def _rss_mib(pid: int, field: str = "VmRSS") -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{field}:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


def _upload(url: str, size_mib: int, into: list[object]) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(size_mib):
            yield b"x" * (1 << 20)

    try:
        into.append(httpx.post(url, content=chunks(), timeout=60).status_code)
    except httpx.HTTPError as exc:  # the server may close before the whole body is sent
        into.append(type(exc).__name__)


def test_ten_chunked_100_mb_uploads_at_once_grow_rss_by_less_than_100_mb(
    iris_path: Path,
) -> None:
    server = start_server("--model", f"iris={iris_path}")
    try:
        pid = server.process.pid
        url = f"{server.url}/v2/models/iris/infer"
        httpx.post(url, json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                          "data": [5.1, 3.5, 1.4, 0.2]}]})  # fmt: skip
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
        before = _rss_mib(pid)
        statuses: list[object] = []
        uploads = [threading.Thread(target=_upload, args=(url, 100, statuses)) for _ in range(10)]
        for upload in uploads:
            upload.start()
        for upload in uploads:
            upload.join()
        peak = _rss_mib(pid, "VmHWM")
        time.sleep(2)
        after = _rss_mib(pid)
        print(f"RSS {before:.0f} MiB, peak {peak:.0f} MiB, after {after:.0f} MiB: {statuses}")
        assert peak - before < 100, f"RSS {before:.0f} -> peak {peak:.0f} MiB"
        # each is refused: over the 64 MiB limit (413) or over the bytes held at once (503)
        assert set(statuses) <= {413, 503, "WriteError", "RemoteProtocolError"}, statuses
        assert 503 in statuses
        assert after - before < 30, f"RSS {before:.0f} -> {after:.0f} MiB after the uploads"
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    finally:
        server.stop()


def test_control_and_pipeline_routes_answer_413_over_max_body_bytes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start_server("--state-dir", str(state), "--max-body-bytes", "100000", auth=True)
    try:
        token = json.loads((state / "state.json").read_text())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        big = json.dumps({"storage_uri": "/nowhere/model.joblib", "pad": "x" * 200_000})
        api = f"{server.url}/nstarx/v1"

        def chunked() -> Iterator[bytes]:
            yield big.encode()

        for method, path in [("PUT", "/deployments/big"), ("PUT", "/pipelines/big"),
                             ("POST", "/keys"), ("PUT", "/access/big")]:  # fmt: skip
            for content in (big.encode(), chunked()):
                response = httpx.request(method, api + path, content=content, headers=headers,
                                         timeout=30)  # fmt: skip
                assert response.status_code == 413, (method, path, response.text)
                assert "100000-byte limit" in response.json()["error"]
    finally:
        server.stop()


def test_a_burst_of_malformed_requests_logs_a_bounded_number_of_lines(iris_path: Path) -> None:
    server = start_server("--model", f"iris={iris_path}")
    try:
        before = len(server.output)
        port = _port(server)
        for _ in range(1000):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                sock.settimeout(5)
                sock.recv(4096)
        time.sleep(0.5)
        logged = server.output[before:]
        assert len(logged) < 30, f"{len(logged)} lines: " + "".join(logged[-5:])
    finally:
        server.stop()


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def test_over_max_connections_the_oldest_waiting_ones_are_dropped_and_health_answers(
    iris_path: Path,
) -> None:
    server = start_server("--model", f"iris={iris_path}", "--max-connections", "20")
    idle = [socket.create_connection(("127.0.0.1", _port(server))) for _ in range(60)]
    try:
        time.sleep(0.5)
        for _ in range(10):
            assert _probe(_port(server)) is not None
        for sock in idle:
            sock.settimeout(0.5)
        # the first 40 connections made room for the later ones; the last stay open
        assert all(_closed(sock) for sock in idle[:40])
        with pytest.raises(TimeoutError):
            idle[-1].recv(10)
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_request_headers_over_64_kib_get_431_without_waiting_for_their_end(
    quick_deadlines: ServerProcess,
) -> None:
    pad = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    with socket.create_connection(("127.0.0.1", _port(quick_deadlines))) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + pad * 200)
        answer, waited_s = _answer_within(sock, 5)
    assert answer.startswith(b"HTTP/1.1 431"), answer
    assert waited_s < 0.9  # at once, not at the header deadline
