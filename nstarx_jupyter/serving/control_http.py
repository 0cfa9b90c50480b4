"""What every control route (`/nstarx/v1`) shares on HTTP: its caller check, audit and JSON.

`control_endpoint` is the wrapper every control route goes through: it checks the caller,
answers domain errors with their status and appends the call to the audit log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from nstarx_jupyter.errors import InvalidInputError, NstarxError
from nstarx_jupyter.security import ANONYMOUS, RefusedCaller
from nstarx_jupyter.serving.http_errors import (
    nstarx_error_response,
    unexpected_error_response,
)
from nstarx_jupyter.serving.request_body import read_request_body

if TYPE_CHECKING:
    from pydantic import BaseModel
    from starlette.requests import Request

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane

__all__ = [
    "PREFIX",
    "Handler",
    "control_endpoint",
    "json_body",
    "json_response",
    "model_response",
    "query_number",
]

PREFIX = "/nstarx/v1"
Handler = Callable[["Request", "Principal"], Awaitable[Response]]


def json_response(doc: Any, status: int = 200) -> Response:
    """A JSON response."""
    return Response(orjson.dumps(doc), status, media_type="application/json")


def model_response(
    answer: BaseModel, status: int = 200, *, exclude_defaults: bool = False
) -> Response:
    """A JSON response from an answer's model (`protocol.control`), as clients parse it."""
    doc = answer.model_dump_json(exclude_defaults=exclude_defaults)
    return Response(doc, status, media_type="application/json")


async def json_body(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request's JSON object (`{}` for an empty body if `empty_ok`), or `InvalidInputError`.

    The body is read under the server's limits: 413 over `--max-body-bytes`, 503 when the
    server holds too many bytes of bodies.
    """
    raw = await read_request_body(request)
    if empty_ok and not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInputError("the body must be a JSON object")
    return doc


def control_endpoint(
    dataplane: DataPlane, handler: Handler, action: str, audit_as: str
) -> Callable[[Request], Awaitable[Response]]:
    """A control route: the caller must be allowed `action` (on the `name` in the path, if any).

    The request's `Host` must name this server (`Guard.check_host`), else 403, audited.

    Changes (every method but GET) are written to the audit log and flushed to disk before the
    answer; reads are recorded too.
    """
    guard = dataplane.guard

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        principal = ANONYMOUS
        name = request.path_params.get("name", "")
        try:
            guard.check_host(request.headers.get("host"))  # before any credential is looked at
            principal = guard.require(request.headers.get("authorization"), action,
                                      name or None, control=True)  # fmt: skip
            response = await handler(request, principal)
        except NstarxError as exc:
            if isinstance(exc, RefusedCaller):  # a known key refused: the record names it
                principal = exc.principal
            response = nstarx_error_response(request, exc)
        except Exception as exc:  # noqa: BLE001 - request boundary: log it, answer a JSON 500
            response = unexpected_error_response(request, exc)
        method = request.method
        what = audit_as if method == "GET" else f"{audit_as}.{method.lower()}"
        client = request.client
        dataplane.audit.call(principal, what, "control", name, "", response.status_code, started,
                             client=client.host if client else "")  # fmt: skip
        if method != "GET":
            dataplane.audit.flush(durable=True)
        return response

    return endpoint


def query_number(query: Mapping[str, str], key: str, default: str | None = None) -> float:
    """The finite number in query parameter `key` (or `default`), or `InvalidInputError`."""
    raw = query.get(key, default)
    try:
        value = float(raw)  # type: ignore[arg-type]  # None: TypeError, answered below
    except (TypeError, ValueError):
        raise InvalidInputError(f"{key}: '{raw}' is not a number") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"{key}: '{raw}' is not a finite number")
    return value
