"""The HTTP edge: read deadlines, a connection cap that keeps health answering, the fd limit.

uvicorn has no deadline for reading a request's headers or body, so a client that connects and
sends nothing (or one byte a second) holds its connection, and a file descriptor, for ever. The
edge is a thin subclass of uvicorn's httptools protocol, not a second server: every connection
carries one `deadline` (a float), set when it connects, when its headers are complete and when a
response ends; one timer per server sweeps the connections twice a second and closes those past
their deadline. The hot path pays a few attribute writes and two dict operations per request, no
timer per request or per byte.

A connection is *waiting* while the server waits on the client: for the headers or the body of a
request, or for the next request on an idle keep-alive connection. Over `max_connections`, the
oldest waiting connections are dropped to admit a new one, so a flood of slow connections cannot
lock out a health probe; connections whose request the server is working on are never dropped.

A connection upgraded to a WebSocket leaves the waiting books for good (the stream app keeps its
own idle limit) but keeps its place under the cap until it closes; the WebSocket protocol adds a
slow-consumer deadline: a send that finds the write buffer full for `ws_send_timeout_s` closes
the stream with 1013 instead of holding its answers for ever.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

if TYPE_CHECKING:
    from asyncio import TimerHandle

    from uvicorn._types import ASGISendEvent

__all__ = [
    "ACCEPT_BATCH",
    "EdgeLimits",
    "EdgeProtocol",
    "EdgeWebSocket",
    "connection_cap",
    "edge_protocol",
    "raise_fd_limit",
    "reply_at_once",
]

log = logging.getLogger(__name__)

ACCEPT_BATCH = 128
"""Connections asyncio accepts per loop turn (uvicorn's `backlog`): the file descriptors a burst
can take before the cap is checked, so the cap leaves at least that many free."""
_RESERVED_FDS = 128
"""File descriptors kept for everything but HTTP connections: model files, gRPC, logs, pipes."""
_SWEEP_S = 0.5
"""How often deadlines are checked: a deadline fires up to this late."""
_LINGER_S = 2.0
"""After an answer given before the body was read (413, 503), how long the rest of the body is
read and dropped, so the client gets to read the answer instead of a reset connection."""
_INF = float("inf")
MAX_HEAD_BYTES = 64 * 1024
"""A request line and headers longer than this get 431 (httptools itself keeps any length)."""


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What the edge enforces on every HTTP connection."""

    header_timeout_s: float = 10.0
    """A request's headers must be complete this long after the connection opens (or, on a
    keep-alive connection, after the idle keep-alive timeout ends)."""
    body_timeout_s: float = 30.0
    """A request's body must be complete this long after its headers (time during which the
    server itself paused reading does not count)."""
    keep_alive_s: float = 75.0
    """uvicorn's keep-alive timeout: an idle connection may wait this long for its next request."""
    max_connections: int = 4096
    """HTTP connections at once; beyond it, the oldest waiting connections are dropped."""
    ws_send_timeout_s: float = 30.0
    """A WebSocket answer that cannot be written this long (the client does not read and the
    write buffer stays full) closes the stream with 1013."""


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # an unlimited hard limit may exceed fs.nr_open
            log.debug("file descriptor limit stays at %d (hard %d): %s", soft, hard, exc)
            return soft
        log.debug("file descriptor limit raised from %d to its hard limit %d", soft, hard)
        return hard
    log.debug("file descriptor limit: %d (already the hard limit)", soft)
    return soft


def connection_cap(max_connections: int, fd_limit: int) -> int:
    """The connection cap: `max_connections`, lowered to stay clear of the fd limit.

    Accepting past the fd limit fails with EMFILE, and asyncio then stops accepting for a second
    (health probes included); the cap keeps a burst's worth of descriptors and a reserve free.
    """
    room = fd_limit - ACCEPT_BATCH - _RESERVED_FDS
    cap = max(1, min(max_connections, room))
    if cap < max_connections:
        log.info(
            "at most %d connections (not %d): the file descriptor limit is %d",
            cap, max_connections, fd_limit,
        )  # fmt: skip
    return cap


class _Edge:
    """Per-server state: the waiting connections in the order they began waiting, the sweep."""

    def __init__(self, limits: EdgeLimits, cap: int) -> None:
        self.limits = limits
        self.cap = cap
        self.body_s = limits.body_timeout_s
        # an idle keep-alive connection may wait keep_alive_s for its next request, which then
        # has the header deadline
        self.idle_s = limits.keep_alive_s + limits.header_timeout_s
        self.waiting: OrderedDict[EdgeProtocol, None] = OrderedDict()
        self.open = 0  # connections admitted and neither lost nor dropped
        self.sweeper: TimerHandle | None = None
        self.dropped = 0

    def admit(self, protocol: EdgeProtocol) -> None:
        loop = protocol.loop
        protocol.deadline = loop.time() + self.limits.header_timeout_s
        self.waiting[protocol] = None
        self.open += 1
        while self.open > self.cap and self.waiting:
            oldest = next(iter(self.waiting))
            oldest.drop()
        if self.sweeper is None:
            self.sweeper = loop.call_later(_SWEEP_S, self.sweep, loop)

    def drop_noted(self) -> None:
        self.open -= 1
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning(
                "%d connections dropped so far: over the cap of %d connections, the oldest "
                "that had not sent a whole request went first", self.dropped, self.cap,
            )  # fmt: skip

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = [protocol for protocol in self.waiting if protocol.deadline <= now]
        for protocol in late:
            protocol.deadline_passed(now)
        self.sweeper = loop.call_later(_SWEEP_S, self.sweep, loop) if self.open > 0 else None


_TIMEOUT_BODY = orjson.dumps({"error": "the request was not received in time"})
_TIMEOUT = b"".join([
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n",
    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_TIMEOUT_BODY), _TIMEOUT_BODY,
])  # fmt: skip


_TOO_LARGE_BODY = orjson.dumps({"error": f"request headers over {MAX_HEAD_BYTES} bytes"})
_HEAD_TOO_LARGE = b"".join([
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n",
    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_TOO_LARGE_BODY), _TOO_LARGE_BODY,
])  # fmt: skip


# uvicorn's per-request callbacks, called directly (`super()` builds an object per call, and
# these run three times a request).
_data_received = HttpToolsProtocol.data_received
_on_headers_complete = HttpToolsProtocol.on_headers_complete
_on_message_complete = HttpToolsProtocol.on_message_complete


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines and a place in the connection cap.

    Made per server by `edge_protocol`, which sets `edge`.
    """

    edge: ClassVar[_Edge]
    websocket: ClassVar[type[EdgeWebSocket]]
    deadline: float = _INF
    """When the server stops waiting for the client (loop time); infinite while it works."""
    lingering: bool = False
    dropped: bool = False
    reading_head = True
    """Between requests or in a request's headers: what arrives counts towards MAX_HEAD_BYTES."""
    head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline and take a place under the cap."""
        super().connection_made(transport)
        self.edge.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Leave the cap's books (a dropped connection left them when it was dropped)."""
        edge = self.edge
        edge.waiting.pop(self, None)
        if not self.dropped:
            edge.open -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse the request; after an early answer, read the rest of the body and drop it."""
        if self.lingering:
            return
        _data_received(self, data)
        if self.reading_head:  # still in the headers after parsing this: count it
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.edge.waiting.pop(self, None)
                self.transport.write(_HEAD_TOO_LARGE)
                self.transport.close()

    def on_headers_complete(self) -> None:
        """Headers in: the body deadline starts."""
        _on_headers_complete(self)
        self.deadline = self.loop.time() + self.edge.body_s
        self.reading_head = False
        self.head_bytes = 0

    def on_message_complete(self) -> None:
        """The whole request is in: the server works on it, the client cannot stall it now."""
        _on_message_complete(self)
        self.deadline = _INF
        self.edge.waiting.pop(self, None)

    def on_response_complete(self) -> None:
        """Answered: start a pipelined request, or wait for the next one (or linger).

        uvicorn's own version arms a keep-alive timer per response and cancels it when the next
        request comes; here the edge's deadline does that job (an idle connection is closed at
        it, without a 408 since it sent nothing), so no timer is made per request.
        """
        self.server_state.total_requests += 1
        transport = self.transport
        if transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # the next request is already in: the server works on it
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        edge = self.edge
        if self.cycle.more_body:  # answered before the body was read (413, 503): linger
            self.lingering = True
            self.deadline = self.loop.time() + _LINGER_S
            if transport.can_write_eof():
                transport.write_eof()
        else:
            self.deadline = self.loop.time() + edge.idle_s
            self.reading_head = True
        edge.waiting[self] = None

    def handle_websocket_upgrade(self) -> None:
        """Hand the connection to the WebSocket protocol: out of the waiting books, no deadline.

        It keeps its place under the cap: `EdgeWebSocket` gives it up when the stream closes.
        """
        self.edge.waiting.pop(self, None)
        self.deadline = _INF
        self.reading_head = False
        super().handle_websocket_upgrade()

    def drop(self) -> None:
        """Close at once to make room under the cap (no answer: the client sent no request)."""
        self.edge.waiting.pop(self, None)
        self.dropped = True
        self.edge.drop_noted()
        self._stop_the_request()
        self.transport.abort()

    def deadline_passed(self, now: float) -> None:
        """Answer 408 and close, unless it is the server that stopped reading."""
        if self.flow.read_paused and not self.lingering:
            self.deadline = now + _SWEEP_S  # the app has not read what came: not the client's fault
            return
        self.edge.waiting.pop(self, None)
        transport = self.transport
        if self.lingering:
            transport.abort()
            return
        if self.cycle is None or not self.cycle.response_started:
            transport.write(_TIMEOUT)
        self._stop_the_request()
        transport.close()

    def _stop_the_request(self) -> None:
        """Make the app's request (if it is reading its body) see a disconnect.

        Its answer then goes nowhere, instead of onto the wire after a 408.
        """
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()


_SLOW_CONSUMER = 1013
"""The close code of a stream whose client does not read its answers (Try Again Later)."""


class EdgeWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with the edge's books and a slow-consumer deadline.

    Made per server by `edge_protocol` (its `websocket`), which sets `edge`.
    """

    edge: ClassVar[_Edge]

    def connection_lost(self, exc: Exception | None) -> None:
        """Give up the connection's place under the cap (taken when it connected over HTTP)."""
        self.edge.open -= 1
        super().connection_lost(exc)

    async def send(self, message: ASGISendEvent) -> None:
        """Send, or close the stream with 1013 when the client has not read for too long."""
        if not self.writable.is_set() and not self.disconnected:
            try:
                async with asyncio.timeout(self.edge.limits.ws_send_timeout_s):
                    await self.writable.wait()
            except TimeoutError:
                self._close_slow_consumer()
                raise ClientDisconnected from None
        await super().send(message)

    def _close_slow_consumer(self) -> None:
        """Queue a close frame behind the unread answers; abort if it is not answered in time.

        `transport.close()` would wait for the client to read the buffer: it may never do so.
        """
        seconds = self.edge.limits.ws_send_timeout_s
        reason = f"slow consumer: answers unread for {seconds:g} s"
        log.info("closing a WebSocket stream: %s", reason)
        if self.close_sent or self.transport.is_closing():
            self.transport.abort()
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": _SLOW_CONSUMER,
                               "reason": reason})  # fmt: skip
        self.conn.send_close(_SLOW_CONSUMER, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:  # read the client's close frame when it comes
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)


def reply_at_once(send: object, status: int, head: bytes, body: bytes) -> bool:
    """Write a whole response (`head`: its own header lines) in one write, if `send` allows.

    `send` must be the ASGI send of an edge request that has not started its answer; then the
    status line, uvicorn's default headers (date, server), `head`, the length and the body go
    out as one write: one system call and one segment instead of uvicorn's two, and no header
    checks (`head` is the caller's own constant). Returns False, having done nothing, for any
    other `send` (a wrapped one, a test transport's): the caller sends through ASGI.
    """
    cycle = getattr(send, "__self__", None)
    if (
        type(cycle) is not RequestResponseCycle
        or cycle.response_started
        or cycle.disconnected
        or cycle.flow.write_paused
    ):
        return False
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    keep_alive = cycle.keep_alive
    parts = [STATUS_LINE[status]]
    for name, value in cycle.default_headers:
        parts += (name, b": ", value, b"\r\n")
    parts += (head, b"content-length: %d\r\n" % len(body),
              b"\r\n" if keep_alive else b"connection: close\r\n\r\n", body)  # fmt: skip
    transport = cycle.transport
    transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()
    if not keep_alive:
        transport.close()
    cycle.on_response()
    return True


def edge_protocol(limits: EdgeLimits, cap: int) -> type[EdgeProtocol]:
    """A protocol class for one server (uvicorn's `http=`), with its own connection books.

    Its `websocket` attribute is the matching WebSocket protocol class (uvicorn's `ws=`).
    """
    edge = _Edge(limits, cap)
    websocket = type("EdgeWebSocket", (EdgeWebSocket,), {"edge": edge})
    return type("EdgeProtocol", (EdgeProtocol,), {"edge": edge, "websocket": websocket})
