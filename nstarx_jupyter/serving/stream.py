"""WebSocket streams: `/v2/models/{name}/stream`, one inference per message, answered in order.

A message is what the product endpoint takes (a record, a list of records, or
`{"instances": [[...], ...]}`), the same wrapped as `{"id": ID, "records": ...}` (answered as
`{"id": ID, "records": ANSWER}`), or a V2 inference request (its `id` comes back in the V2
answer). Each message goes through `DataPlane.predict` like a REST call, so the model's batcher
merges the messages of all streams and requests in flight; each gets its own audit record. A
message the server cannot answer gets `{"error": ..., "status": ...}` and the stream goes on.

Limits: the key is checked on the upgrade (401, 403, 404 refuse it) and again for each message;
at most `window` messages of a connection are unanswered (then the server stops reading it);
a message over the server's body limit closes the stream with 1009 (uvicorn's `ws_max_size`);
no message for `idle_s` seconds and nothing pending closes it with 1001; a client that leaves
its answers unread is closed with 1013 (`EdgeWebSocket`, serving/edge.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from nstarx_jupyter.errors import (
    HTTP_STATUS,
    ErrorKind,
    InvalidInputError,
    NotFoundError,
    NstarxError,
)
from nstarx_jupyter.protocol import v2
from nstarx_jupyter.protocol.records import rename_fields, tensors_to_records
from nstarx_jupyter.security import ANONYMOUS, RefusedCaller
from nstarx_jupyter.serving.dataplane import Caller
from nstarx_jupyter.serving.http_errors import retry_after
from nstarx_jupyter.serving.records import records_decoder

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane
    from nstarx_jupyter.serving.request_body import BodyBudget

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

__all__ = ["STREAM_PATH", "TRANSPORT", "StreamEndpoint", "records_decoder", "stream_name"]

log = logging.getLogger(__name__)

STREAM_PATH = "/v2/models/{name}/stream"
TRANSPORT = "ws"
"""The audit log's transport of stream messages (and the metrics' protocol label)."""
_IDLE = 1001
_ENVELOPE = frozenset({"id", "records"})
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def stream_name(path: str) -> str | None:
    """The model or pipeline name of a stream path, or None."""
    parts = path.split("/")
    if len(parts) == 5 and parts[1] == "v2" and parts[2] == "models" and parts[4] == "stream":
        return parts[3] or None
    return None


class StreamEndpoint:
    """The ASGI app of every `websocket` scope: streams to models, pipelines and graphs."""

    def __init__(self, dataplane: DataPlane, budget: BodyBudget, window: int, idle_s: float):
        if window < 1:
            raise InvalidInputError("the stream window is 1 message or more")
        if idle_s <= 0:
            raise InvalidInputError("the stream idle limit is more than 0 seconds")
        self.dataplane = dataplane
        self.budget = budget
        self.window = window
        self.idle_s = idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Accept the upgrade (or refuse it with an HTTP status) and serve the stream."""
        if (await receive())["type"] != "websocket.connect":
            return
        started = time.perf_counter()
        name = stream_name(scope["path"]) or ""
        headers = scope["headers"]
        given = next((value for key, value in headers if key == b"authorization"), None)
        authorization = given.decode("latin-1") if given is not None else None
        client = scope.get("client")
        stream = _Stream(self, name, authorization, client[0] if client else "", headers)
        try:
            if not name:
                raise NotFoundError(f"no stream at {scope['path']}: streams are at {STREAM_PATH}")
            stream.principal = stream.authorize()
            self._check_served(name)
        except NstarxError as exc:
            status = HTTP_STATUS[exc.kind]
            stream.audit("stream", "", status, started, "")
            await _refuse(send, exc, status)
            return
        await send({"type": "websocket.accept"})
        await stream.run(receive, send)

    def _check_served(self, name: str) -> None:
        dataplane = self.dataplane
        if dataplane.pipelines.get(name) is None and dataplane.graphs.get(name) is None:
            dataplane.repository.entry(name)  # ModelNotFoundError: 404


class _Stream:
    """One connection: a reader that starts each message's answer, a writer that sends them."""

    def __init__(
        self,
        endpoint: StreamEndpoint,
        name: str,
        authorization: str | None,
        client: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.endpoint = endpoint
        self.dataplane = endpoint.dataplane
        self.name = name
        self.authorization = authorization
        self.client = client
        self.headers = headers
        self.principal: Principal = ANONYMOUS
        self.slots = asyncio.Semaphore(endpoint.window)
        self.answers: asyncio.Queue[asyncio.Task[str]] = asyncio.Queue()
        self.unanswered = 0

    def authorize(self) -> Principal:
        """Check the upgrade's key for a call of this model (a refused key names itself)."""
        try:
            return self.dataplane.guard.require(self.authorization, "predict", self.name)
        except RefusedCaller as exc:
            self.principal = exc.principal
            raise

    def audit(
        self, action: str, version: str, status: int, started: float, request_id: str
    ) -> None:
        """Record one message (or the refused upgrade) in the audit log."""
        self.dataplane.audit.call(self.principal, action, TRANSPORT, self.name, version, status,
                                  started, request_id, self.client)  # fmt: skip

    async def run(self, receive: Receive, send: Send) -> None:
        """Serve until the client goes, the stream idles or a send fails; then stop the rest."""
        reader = asyncio.create_task(self._read(receive, send))
        writer = asyncio.create_task(self._write(send))
        try:
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            writer.cancel()
            while not self.answers.empty():
                self.answers.get_nowait().cancel()
            for task in (reader, writer):
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task

    async def _read(self, receive: Receive, send: Send) -> None:
        while True:
            await self.slots.acquire()  # the window: at `window` unanswered, stop reading
            message = await self._next(receive, send)
            if message is None or message["type"] != "websocket.receive":
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text") or ""
            self.unanswered += 1
            self.answers.put_nowait(asyncio.create_task(self._answer(data)))

    async def _next(self, receive: Receive, send: Send) -> Message | None:
        """The next message; None once the stream was closed for idling."""
        idle_s = self.endpoint.idle_s
        while True:
            try:
                async with asyncio.timeout(idle_s):
                    return await receive()
            except TimeoutError:
                if self.unanswered:  # answers still due: the client waits on the server
                    continue
            reason = f"idle: no message for {idle_s:g} s"
            await send({"type": "websocket.close", "code": _IDLE, "reason": reason})
            return None

    async def _write(self, send: Send) -> None:
        while True:
            task = await self.answers.get()
            text = await task
            await send({"type": "websocket.send", "text": text})
            self.unanswered -= 1
            self.slots.release()

    async def _answer(self, data: str | bytes) -> str:
        """One message's answer (JSON text); its audit record."""
        started = time.perf_counter()
        call = _Message()
        try:
            answer = await self._run(data, call)
            status = 200
        except _GraphError as exc:
            status = exc.status
            answer = _error(exc.message, status, call.id)
        except NstarxError as exc:
            status = HTTP_STATUS[exc.kind]
            if exc.kind is ErrorKind.INTERNAL:
                log.error("stream message failed: %s", exc.message)
            answer = _error(exc.message, status, call.id)
        except Exception:  # message boundary: log the bug, answer 500, keep the stream
            log.exception("a message of the stream to %s crashed", self.name)
            status = 500
            answer = _error("internal error", status, call.id)
        self.audit(call.action, call.version, status, started, call.request_id)
        return answer

    async def _run(self, data: str | bytes, call: _Message) -> str:
        dataplane, name, budget = self.dataplane, self.name, self.endpoint.budget
        with dataplane.counting_rejections(name, None, TRANSPORT):
            self.principal = self.authorize()
            budget.take(len(data))
        try:
            if dataplane.graphs.get(name) is not None:
                status, answer = await dataplane.graphs.route(
                    name, data.encode() if isinstance(data, str) else data
                )
                if status >= 400:
                    raise _GraphError(status, answer)
                return answer.decode()
            return await self._call(data, call)
        finally:
            budget.release(len(data))

    async def _call(self, data: str | bytes, call: _Message) -> str:
        """Decode the message (a V2 request, records, records in an envelope) and predict."""
        dataplane, name = self.dataplane, self.name
        pipeline = dataplane.pipelines.get(name) is not None
        request = None
        with dataplane.counting_rejections(name, None, TRANSPORT):
            doc = v2.loads(data)  # type: ignore[arg-type]  # orjson reads str too
            if isinstance(doc, dict) and isinstance(doc.get("inputs"), list):  # V2
                call.action, call.id = "infer", doc.get("id")
                request = v2.request_from_doc(doc)
                if request.binary_output or any(out.binary for out in request.outputs or ()):
                    raise InvalidInputError("a stream answers in JSON: ask for no binary outputs")
                if pipeline:
                    answer = await dataplane.pipelines.infer(name, request, TRANSPORT)
                    return orjson.dumps(answer, option=_NUMPY).decode()
            else:
                if isinstance(doc, dict) and "records" in doc and doc.keys() <= _ENVELOPE:
                    call.id, call.envelope, doc = doc.get("id"), True, doc["records"]
                if pipeline:
                    return call.dumps((await dataplane.pipelines.run(name, doc, TRANSPORT)).output)
                decode, single = records_decoder(doc)
        if request is not None:
            response, served = await dataplane.infer(name, None, request, TRANSPORT,
                                                     self._caller())  # fmt: skip
            call.version, call.request_id = served.model.settings.version, served.request_id
            return v2.encode_response(response, request)[0].decode()
        served = await dataplane.predict(name, None, TRANSPORT, decode, all_outputs=True,
                                         caller=self._caller())  # fmt: skip
        call.version, call.request_id = served.model.settings.version, served.request_id
        rows = rename_fields(tensors_to_records(served.outputs, served.model.signature),
                             served.model.settings.output_names)  # fmt: skip
        return call.dumps(rows[0] if single else rows)

    def _caller(self) -> Caller | None:
        """The upgrade's headers and client address, for models whose routing reads them."""
        if not self.dataplane.routes_by_caller(self.name):
            return None
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in self.headers}
        return Caller(headers, self.client or None)


class _Message:
    """What the audit record and the answer of one message need, filled in as it goes."""

    __slots__ = ("action", "envelope", "id", "request_id", "version")

    def __init__(self) -> None:
        self.action = "predict"
        self.id: Any = None
        self.envelope = False
        self.version = ""
        self.request_id = ""

    def dumps(self, answer: Any) -> str:
        """The answer of records: as it is, or in the envelope they came in."""
        if self.envelope:
            answer = {"id": self.id, "records": answer}
        return orjson.dumps(answer, option=_NUMPY).decode()


class _GraphError(NstarxError):
    """A graph's error answer, passed on with its status."""

    def __init__(self, status: int, answer: bytes) -> None:
        try:
            doc = orjson.loads(answer)
            message = doc["error"] if isinstance(doc, dict) and "error" in doc else str(doc)
        except orjson.JSONDecodeError:
            message = answer.decode(errors="replace")
        super().__init__(str(message))
        self.status = status


def _error(message: str, status: int, id_: Any) -> str:
    doc: dict[str, Any] = {"error": message, "status": status}
    if id_ is not None:
        doc["id"] = id_
    return orjson.dumps(doc).decode()


async def _refuse(send: Send, exc: NstarxError, status: int) -> None:
    """Refuse the upgrade with an HTTP answer (ASGI's WebSocket denial response)."""
    headers = [(b"content-type", b"application/json")]
    wait = retry_after(exc)
    if wait is not None:
        headers.append((b"retry-after", str(wait).encode()))
    elif exc.kind is ErrorKind.UNAUTHENTICATED:
        headers.append((b"www-authenticate", b'Bearer realm="nstarx"'))
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send(
        {"type": "websocket.http.response.body", "body": orjson.dumps({"error": exc.message})}
    )
