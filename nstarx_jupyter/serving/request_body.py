"""Request bodies under the server's limits: a per-request cap (413) and a server-wide budget (503).

Every HTTP route reads its body here, the inference routes (`InferenceApp`) and the Starlette
routes behind it (`read_request_body`), so many slow or large uploads at once cannot take the
server's memory.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import DEFAULT_MAX_BODY_BYTES
from nstarx_jupyter.errors import InvalidInputError, PayloadTooLargeError, UnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from starlette.requests import Request

    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]

__all__ = ["BODY_HELD", "BODY_LIMITS", "BodyBudget", "read_body", "read_request_body"]


class BodyBudget:
    """The server-wide cap on bytes held by request bodies, from the first byte read to the answer.

    Each body is bounded by the per-request limit (413); this bounds their sum, so many slow or
    large uploads at once cannot take the server's memory: past it, 503 with `Retry-After`
    before more is read.
    """

    __slots__ = ("held_bytes", "limit_bytes")

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0

    def take(self, size: int) -> None:
        """Count `size` more bytes held, or raise `UnavailableError` when they do not fit."""
        if self.held_bytes + size > self.limit_bytes:
            raise UnavailableError(
                f"the server holds {self.held_bytes} bytes of request bodies and takes at most "
                f"{self.limit_bytes}; retry shortly", retry_after_s=1,
            )  # fmt: skip
        self.held_bytes += size

    def release(self, size: int) -> None:
        """Count `size` bytes no longer held."""
        self.held_bytes -= size


BODY_LIMITS = "nstarx.body_limits"
"""Where `InferenceApp` puts (per-request limit, budget) in the scope of the routes it hands on."""
BODY_HELD = "nstarx.body_held"
"""Bytes of the scope's request body counted in the budget, released when the request ends."""


async def read_body(
    receive: Receive, headers: list[tuple[bytes, bytes]], cap: int, budget: BodyBudget | None = None
) -> bytes:
    """Read a request body, refusing it with 413 before reading when it is over `cap` bytes.

    With a `budget`, the body's bytes are counted in it as they come (a declared length at
    once): the caller releases `len(body)` when the request is over. A body in many messages
    (chunked, or large) grows one buffer, never a list of chunks joined at the end.
    """
    declared = 0
    for key, value in headers:
        if key == b"content-length" and value.isdigit():
            declared = int(value)
            if declared > cap:
                raise PayloadTooLargeError(
                    f"request body of {declared} bytes is over the {cap}-byte limit"
                )
    taken = 0
    if budget is not None and declared:
        budget.take(declared)
        taken = declared
    try:
        message = await receive()
        body: bytes = message.get("body", b"")
        if message["type"] == "http.disconnect":
            raise InvalidInputError("the client went away before sending the body")
        if message.get("more_body"):
            return await _read_more(receive, body, cap, budget, taken)
    except BaseException:
        if taken:
            budget.release(taken)  # type: ignore[union-attr]
        raise
    if budget is not None and taken != len(body):  # one message, no declared length
        budget.release(taken - len(body))
    return body  # the common case: one message


async def _read_more(
    receive: Receive, first: bytes, cap: int, budget: BodyBudget | None, taken: int
) -> bytes:
    """Read the rest of a body that comes in many messages.

    On an error it releases what it took beyond `taken`, the declared length (which
    `read_body` releases).
    """
    # BytesIO grows one bytes object in place and getvalue() hands it over without a copy: the
    # peak is the body, not the chunks plus their join.
    buffer = io.BytesIO()
    buffer.write(first)
    size = len(first)
    declared = taken
    message: Message = {"more_body": True}
    try:
        while message.get("more_body"):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidInputError("the client went away before sending the whole body")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise PayloadTooLargeError(f"request body is over the {cap}-byte limit")
            if budget is not None and size > taken:
                budget.take(size - taken)
                taken = size
            buffer.write(chunk)
    except BaseException:
        if taken > declared:
            budget.release(taken - declared)  # type: ignore[union-attr]
        raise
    return buffer.getvalue()


async def read_request_body(request: Request) -> bytes:
    """Read a Starlette route's request body under the server's limits.

    413 over the per-request limit, 503 over the server-wide budget; the bytes counted in the
    budget are released when the request ends (`InferenceApp`).
    """
    scope = request.scope
    limits = scope.get(BODY_LIMITS)
    if limits is None:  # an app not behind `InferenceApp` (never in a server)
        return await read_body(request.receive, scope["headers"], DEFAULT_MAX_BODY_BYTES)
    cap, budget = limits
    body = await read_body(request.receive, scope["headers"], cap, budget)
    scope[BODY_HELD] = scope.get(BODY_HELD, 0) + len(body)
    return body
