"""The inference endpoints as a bare ASGI app: the hot path skips per-request framework objects.

`POST /v2/models/{name}[/versions/{v}]/infer`, `POST /v1/models/{name}:predict` and
`POST /v1/models/{name}/predict` are answered here; every other request goes to `fallback` (the
Starlette app with the metadata, repository and metrics routes) and every WebSocket to `stream`
(serving/stream.py). Measured in bench/: Starlette's routing, request and response objects cost
about a third of a small model's request time.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from nstarx_jupyter.errors import (
    HTTP_STATUS,
    ErrorKind,
    InvalidInputError,
    NstarxError,
    RateLimitedError,
)
from nstarx_jupyter.protocol import v1, v2
from nstarx_jupyter.security import ANONYMOUS, RefusedCaller
from nstarx_jupyter.serving.dataplane import Caller
from nstarx_jupyter.serving.edge import reply_at_once
from nstarx_jupyter.serving.http_errors import retry_after
from nstarx_jupyter.serving.records import is_records_body
from nstarx_jupyter.serving.request_body import (
    BODY_HELD,
    BODY_LIMITS,
    BodyBudget,
    read_body,
)
from nstarx_jupyter.serving.stream import stream_name

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, MutableMapping
    from contextlib import AbstractAsyncContextManager

    from starlette.applications import Starlette
    from starlette.routing import BaseRoute

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane, Served

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

__all__ = ["INFERENCE_PATHS", "InferenceApp", "route_table"]

log = logging.getLogger(__name__)

_JSON = [(b"content-type", b"application/json")]
_JSON_HEAD = b"content-type: application/json\r\n"
"""`_JSON` as header lines, for `reply_at_once`."""
_TRANSPORTS = {"v2": "v2-rest", "v1": "v1", "records": "rest"}
INFERENCE_PATHS = (
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
    "/v1/models/{name}:predict",
    "/v1/models/{name}/predict",
    "/v1/models/{name}/versions/{version}/predict",
)
"""The paths `_route` answers (POST only)."""
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class _Call:
    """What the audit log records of an inference call, filled in as the call goes."""

    __slots__ = ("held", "principal", "request_id", "version")

    def __init__(self) -> None:
        self.principal: Principal = ANONYMOUS
        self.version = ""
        self.request_id = ""
        self.held = 0  # bytes of the body counted in the server's budget

    def served(self, served: Served) -> None:
        self.version = served.model.settings.version
        self.request_id = served.request_id


class _Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes, status: int = 200, headers: list[tuple[bytes, bytes]] = _JSON):
        self.body, self.status, self.headers = body, status, headers


_UPGRADE = _Reply(
    orjson.dumps(
        {
            "error": "a stream is a WebSocket: open it with a WebSocket "
            "client (InferenceClient.stream), not a plain HTTP request"
        }
    ),
    426,
    [*_JSON, (b"upgrade", b"websocket")],
)
"""An HTTP request to a stream path (RFC 9110's 426: the client must switch protocols)."""


class InferenceApp:
    """Answers the inference endpoints over a `DataPlane`; hands everything else to `fallback`."""

    def __init__(
        self,
        dataplane: DataPlane,
        fallback: Starlette,
        max_body_bytes: int,
        budget: BodyBudget | None = None,
        stream: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
    ) -> None:
        self.dataplane = dataplane
        self.fallback = fallback
        self.stream = stream
        """The WebSocket streams (serving/stream.py): every `websocket` scope goes there."""
        self.max_body_bytes = max_body_bytes
        self.budget = budget or BodyBudget(max_body_bytes)
        self._limits = (max_body_bytes, self.budget)

    def route_table(self) -> list[tuple[str, str]]:
        """Every (method, path template) the app answers: the inference routes, then the rest."""
        return route_table(self.fallback.routes)

    def lifespan(self) -> AbstractAsyncContextManager[object]:
        """Return the start-up/shut-down context (what an ASGI server runs around serving)."""
        return self.fallback.router.lifespan_context(self.fallback)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route by splitting the path; no regular expressions on the hot path."""
        if self.dataplane.draining:
            send = _closing(send)
        route = _route(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            if scope["type"] == "websocket" and self.stream is not None:
                await self.stream(scope, receive, send)
                return
            if scope["type"] == "http" and stream_name(scope["path"]) is not None:
                await _send(send, _UPGRADE)  # a stream path asked without the upgrade
                return
            await self._fall_back(scope, receive, send)
            return
        kind, name, version = route
        if scope["method"] != "POST":
            reply = _Reply(orjson.dumps({"error": "Method Not Allowed"}), 405,
                           [*_JSON, (b"allow", b"POST")])  # fmt: skip
            await _send(send, reply)
            return
        started = time.perf_counter()
        call = _Call()
        try:
            reply = await self._answer(kind, name, version, scope, receive, call)
        except NstarxError as exc:
            reply = _error(exc)
        except Exception:  # request boundary: log the bug, answer 500
            log.exception("POST %s crashed", scope["path"])
            reply = _Reply(orjson.dumps({"error": "internal error"}), 500)
        finally:
            if call.held:
                self.budget.release(call.held)
        record = call.principal.record
        # keys without a limit: no cost; a 429 carries the limit's headers already (`_error`)
        if record is not None and record.rate_limit is not None and reply.status != 429:
            limit = self.dataplane.guard.rate_limit_headers(call.principal)
            reply.headers = [*reply.headers, *_encoded(limit)]
        await _send(send, reply)
        client = scope.get("client")
        self.dataplane.audit.call(
            call.principal, "infer" if kind == "v2" else "predict", _TRANSPORTS[kind], name,
            call.version or version or "", reply.status, started, call.request_id,
            client[0] if client else "",
        )  # fmt: skip

    async def _fall_back(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request to the Starlette routes, whose bodies are read under the limits."""
        scope[BODY_LIMITS] = self._limits
        try:
            await self.fallback(scope, receive, send)
        finally:
            held = scope.get(BODY_HELD)
            if held:
                self.budget.release(held)

    def _authorize(self, name: str, headers: list[tuple[bytes, bytes]], call: _Call) -> None:
        given = next((value for key, value in headers if key == b"authorization"), None)
        try:
            call.principal = self.dataplane.guard.require(
                given.decode("latin-1") if given is not None else None, "predict", name
            )
        except RefusedCaller as exc:  # a known key refused (403, 429): the audit names it
            call.principal = exc.principal
            raise

    def _caller(self, name: str, scope: Scope) -> Caller | None:
        """Headers and client address, for models whose routing reads them (built only then)."""
        if not self.dataplane.routes_by_caller(name):
            return None
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        client = scope.get("client")
        return Caller(headers, client[0] if client else None)

    async def _v2(
        self, name: str, version: str | None, scope: Scope, receive: Receive, call: _Call
    ) -> _Reply:
        headers = scope["headers"]
        with self.dataplane.counting_rejections(name, version, "v2-rest"):
            self._authorize(name, headers, call)
            body = await read_body(receive, headers, self.max_body_bytes, self.budget)
            call.held = len(body)
            length = _header_length(headers)
            doc = None if length is not None else v2.loads(body)
            records = length is None and is_records_body(doc, "v2")  # KServe's graph router's
            if not records:
                request = (v2.decode_request(body, length) if length is not None
                           else v2.request_from_doc(doc))  # fmt: skip
                if self.dataplane.pipelines.get(name) is not None and version is None:
                    answer = await self.dataplane.pipelines.infer(name, request)
                    return _Reply(orjson.dumps(answer, option=_NUMPY), 200)
        if records:
            return await self._rows(name, version, doc, scope, call)
        response, served = await self.dataplane.infer(
            name, version, request, "v2-rest", self._caller(name, scope)
        )
        call.served(served)
        content, json_length = v2.encode_response(response, request)
        if json_length is None:
            return _Reply(content, 200, _with(_JSON, served))
        return _Reply(content, 200, _with([
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(json_length).encode()),
        ], served))  # fmt: skip

    def _answer(
        self, kind: str, name: str, version: str | None, scope: Scope, receive: Receive,
        call: _Call,
    ) -> Awaitable[_Reply]:  # fmt: skip
        """The handler's answer for this path: a graph's name takes every inference path."""
        if version is None and self.dataplane.graphs.get(name) is not None:
            return self._graph(name, scope, receive, call)
        if kind == "v2":
            return self._v2(name, version, scope, receive, call)
        if kind == "v1":
            return self._v1(name, scope, receive, call)
        return self._records(name, version, scope, receive, call)

    async def _graph(self, name: str, scope: Scope, receive: Receive, call: _Call) -> _Reply:
        """An InferenceGraph: the body goes to its root node as it came, whatever the path."""
        with self.dataplane.counting_rejections(name, None, "graph"):
            self._authorize(name, scope["headers"], call)
            body = await read_body(receive, scope["headers"], self.max_body_bytes, self.budget)
            call.held = len(body)
        status, answer = await self.dataplane.graphs.route(name, body)
        return _Reply(answer, status)

    async def _v1(self, name: str, scope: Scope, receive: Receive, call: _Call) -> _Reply:
        with self.dataplane.counting_rejections(name, None, "v1"):
            self._authorize(name, scope["headers"], call)
            body = await read_body(receive, scope["headers"], self.max_body_bytes, self.budget)
            call.held = len(body)
            doc = v2.loads(body)
        if is_records_body(doc, "v1"):  # records, as KServe's graph router passes them on
            return await self._rows(name, None, doc, scope, call)
        served = await self.dataplane.predict(
            name, None, "v1", lambda signature: v1.decode_instances(doc, signature),
            caller=self._caller(name, scope),
        )  # fmt: skip
        call.served(served)
        body = orjson.dumps(v1.encode_predictions(served.outputs), option=_NUMPY)
        return _Reply(body, 200, _with(_JSON, served))

    async def _records(
        self, name: str, version: str | None, scope: Scope, receive: Receive, call: _Call
    ) -> _Reply:
        with self.dataplane.counting_rejections(name, version, "records"):
            self._authorize(name, scope["headers"], call)
            body = await read_body(receive, scope["headers"], self.max_body_bytes, self.budget)
            call.held = len(body)
            doc = v2.loads(body)
        return await self._rows(name, version, doc, scope, call)

    async def _rows(
        self, name: str, version: str | None, doc: Any, scope: Scope, call: _Call
    ) -> _Reply:
        """The product endpoint's answer to records, at whichever path they came."""
        caller = self._caller(name, scope)
        content, served = await self.dataplane.answer_records(name, version, doc, caller)
        if served is None:  # a pipeline
            return _Reply(content, 200)
        call.served(served)
        return _Reply(content, 200, _with(_JSON, served))


def route_table(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    """Every (method, path template) answered: the inference routes, then those of `routes`."""
    table = [("POST", path) for path in INFERENCE_PATHS]
    for route in routes:
        if not getattr(route, "include_in_schema", True):  # a catch-all, not an operation
            continue
        methods = sorted(getattr(route, "methods", None) or ())
        table += [(method, route.path) for method in methods if method != "HEAD"]  # type: ignore[attr-defined]
    return table


def _with(headers: list[tuple[bytes, bytes]], served: Served) -> list[tuple[bytes, bytes]]:
    """`headers` plus the routing headers of a model under a traffic plan."""
    if served.variant is None:
        return headers
    return [*headers, *((k.encode(), v.encode("latin-1")) for k, v in served.headers())]


def _route(path: str) -> tuple[str, str, str | None] | None:
    """Match an inference path: (kind, model name, version) or None."""
    parts = path.split("/")
    n = len(parts)
    if n < 4 or parts[2] != "models":
        return None
    if parts[1] == "v2":
        if n == 5 and parts[4] == "infer":
            return "v2", parts[3], None
        if n == 7 and parts[4] == "versions" and parts[6] == "infer":
            return "v2", parts[3], parts[5]
    elif parts[1] == "v1":
        if n == 4 and parts[3].endswith(":predict"):
            return "v1", parts[3].removesuffix(":predict"), None
        if n == 5 and parts[4] == "predict":
            return "records", parts[3], None
        if n == 7 and parts[4] == "versions" and parts[6] == "predict":
            return "records", parts[3], parts[5]
    return None


def _closing(send: Send) -> Send:
    """`send` with `Connection: close` on the response, for the drain before the server stops.

    Clients reconnect for their next request (and see readiness change) instead of keeping a
    connection the server is about to close.
    """

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing


async def _send(send: Send, reply: _Reply) -> None:
    # the common reply (JSON, no extra headers) goes out in one write on an edge connection
    if reply.headers is _JSON and reply_at_once(send, reply.status, _JSON_HEAD, reply.body):
        return
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
    await send({"type": "http.response.body", "body": reply.body})


def _encoded(headers: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    return [(key.encode(), value.encode()) for key, value in headers]


def _header_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"inference-header-content-length":
            if not value.isdigit():
                raise InvalidInputError(f"{v2.HEADER_LENGTH} must be an integer")
            return int(value)
    return None


def _error(exc: NstarxError) -> _Reply:
    headers = _JSON
    wait = retry_after(exc)
    if wait is not None:
        headers = [*_JSON, (b"retry-after", str(wait).encode())]
        if isinstance(exc, RateLimitedError):
            headers += _encoded(exc.headers)
    elif exc.kind is ErrorKind.UNAUTHENTICATED:
        headers = [*_JSON, (b"www-authenticate", b'Bearer realm="nstarx"')]
    if exc.kind is ErrorKind.INTERNAL:
        log.error("inference failed: %s", exc.message)
    return _Reply(orjson.dumps({"error": exc.message}), HTTP_STATUS[exc.kind], headers)
