"""Error kinds to HTTP statuses, and the `{"error": "..."}` body every REST error uses."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response

from nstarx_jupyter.errors import (
    HTTP_STATUS,
    ErrorKind,
    NstarxError,
    RateLimitedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = [
    "error_response",
    "handle_http_exception",
    "nstarx_error_response",
    "retry_after",
    "unexpected_error_response",
]

log = logging.getLogger(__name__)


def retry_after(exc: NstarxError) -> int | None:
    """Seconds after which a retry should succeed (503s and 429s that know it), else None."""
    if isinstance(exc, UnavailableError | RateLimitedError):
        return exc.retry_after_s
    return None


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Return a JSON error response."""
    return Response(
        orjson.dumps({"error": message}), status, headers, media_type="application/json"
    )


def nstarx_error_response(request: Request, exc: NstarxError) -> Response:
    """Map a domain error to its status; 503s carry `Retry-After` when the error knows it.

    429s carry `Retry-After` and the key's `RateLimit-Policy` and `RateLimit`.
    """
    headers = None
    wait = retry_after(exc)
    if wait is not None:
        headers = {"Retry-After": str(wait)}
        if isinstance(exc, RateLimitedError):
            headers.update(exc.headers)
    elif exc.kind is ErrorKind.UNAUTHENTICATED:
        headers = {"WWW-Authenticate": 'Bearer realm="nstarx"'}
    status = HTTP_STATUS[exc.kind]
    if status >= 500 and exc.kind is ErrorKind.INTERNAL:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(status, exc.message, headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Answer routing errors (unknown path, wrong method) in the same JSON shape."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def unexpected_error_response(request: Request, exc: Exception) -> Response:
    """Log a bug and answer 500 without leaking a traceback."""
    log.exception("%s %s crashed", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}")
