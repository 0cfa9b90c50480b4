"""The local backend's control calls when a pooled connection drops before the answer.

The server side is a plain socket on loopback that closes the first connection after reading its
request, with no answer ("Server disconnected without sending a response"), and answers later
ones: a safe call goes again once, a POST is not repeated (it may have landed).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING

import pytest

from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.local_server import ServerState
from nstarx_jupyter.errors import UnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class DropsFirst:
    """Reads each request; closes the first connection unanswered, answers `[]` on the others."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed by the test
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                self.requests.append(head.split(b"\r\n", 1)[0])
                if len(self.requests) > 1:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: 2\r\nconnection: close\r\n\r\n[]")  # fmt: skip

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not)
        self.listener.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


@pytest.fixture
def server() -> Iterator[DropsFirst]:
    dropping = DropsFirst()
    yield dropping
    dropping.close()


def backend_for(server: DropsFirst, tmp_path: Path) -> LocalBackend:
    backend = LocalBackend(tmp_path, timeout_s=10)
    backend._reached = ServerState(os.getpid(), f"http://127.0.0.1:{server.port}", "token")
    return backend


def test_a_safe_call_goes_again_once_when_the_connection_drops(
    server: DropsFirst, tmp_path: Path
) -> None:
    backend = backend_for(server, tmp_path)
    assert backend.list_keys() == []
    assert server.requests == [b"GET /nstarx/v1/keys HTTP/1.1"] * 2
    backend.close()


def test_a_post_is_not_repeated_it_may_have_landed(server: DropsFirst, tmp_path: Path) -> None:
    backend = backend_for(server, tmp_path)
    with pytest.raises(UnavailableError, match="did not answer"):
        backend.create_key("ci", ["predict:iris"])
    assert server.requests == [b"POST /nstarx/v1/keys HTTP/1.1"]
    backend.close()
