"""A real HTTP receiver on a loopback port for sink tests: keeps what it is sent, fails on cue."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "Receiver"]


@dataclass
class Received:
    """One POST: its headers (lower-case names) and JSON body."""

    headers: dict[str, str]
    body: Any
    status: int


@dataclass
class Receiver:
    """`http.server` in a thread: answers `fail_status` to the first `fail_first` POSTs (all of
    them when `fail_first` is negative), waits `delay_s` before each answer."""

    fail_first: int = 0
    fail_status: int = 503
    delay_s: float = 0.0
    posts: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver._lock:
                    seen = len(receiver.posts)
                    failing = receiver.fail_first < 0 or seen < receiver.fail_first
                    status = receiver.fail_status if failing else 200
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.posts.append(Received(headers, json.loads(raw or b"null"), status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # `shutdown` is seen at the loop's next poll (0.5 s by default): each test would wait it
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        """Where to send."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def accepted(self) -> list[Received]:
        """The POSTs answered 200."""
        with self._lock:
            return [post for post in self.posts if post.status == 200]

    def records(self) -> list[dict[str, Any]]:
        """The records of every accepted `nstarx` batch, in arrival order."""
        return [record for post in self.accepted() for record in post.body["records"]]

    def wait_for(self, count: int, timeout_s: float = 20.0, *, accepted: bool = True) -> None:
        """Wait until `count` POSTs (accepted ones, unless told otherwise) have arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                seen = len(self.posts) if not accepted else sum(p.status == 200 for p in self.posts)
            if seen >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"{count} POSTs expected within {timeout_s} s, got {seen}")

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
