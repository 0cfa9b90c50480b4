"""One error tree for the package; each error has a kind that every transport maps to a status."""

from __future__ import annotations

import enum
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "GRPC_CODE",
    "HTTP_STATUS",
    "ConflictError",
    "DeadlineExceededError",
    "ErrorKind",
    "ForbiddenError",
    "InvalidInputError",
    "MissingExtraError",
    "ModelError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotFoundError",
    "NstarxError",
    "PayloadTooLargeError",
    "QueueFullError",
    "RateLimitedError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnsupportedError",
    "first_problem",
    "require",
]


class ErrorKind(enum.Enum):
    """What went wrong, independent of the transport that reports it."""

    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    CONFLICT = "CONFLICT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    INTERNAL = "INTERNAL"


HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_INPUT: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.PAYLOAD_TOO_LARGE: 413,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.DEADLINE_EXCEEDED: 504,
}
"""The HTTP status of each kind of error: the one table the REST server, the gRPC server's
audit records, the lab API and the clients read."""

GRPC_CODE: dict[ErrorKind, str] = {
    ErrorKind.INVALID_INPUT: "INVALID_ARGUMENT",
    ErrorKind.UNAUTHENTICATED: "UNAUTHENTICATED",
    ErrorKind.FORBIDDEN: "PERMISSION_DENIED",
    ErrorKind.NOT_FOUND: "NOT_FOUND",
    ErrorKind.CONFLICT: "ALREADY_EXISTS",
    ErrorKind.PAYLOAD_TOO_LARGE: "RESOURCE_EXHAUSTED",
    ErrorKind.RATE_LIMITED: "RESOURCE_EXHAUSTED",
    ErrorKind.INTERNAL: "INTERNAL",
    ErrorKind.UNAVAILABLE: "UNAVAILABLE",
    ErrorKind.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
}
"""The gRPC status code of each kind, by its `grpc.StatusCode` name (this module imports no
transport; the gRPC server looks the codes up once)."""


class NstarxError(Exception):
    """Root of every error this package raises on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(NstarxError):
    """Something named in the request does not exist."""

    kind = ErrorKind.NOT_FOUND


class ModelNotFoundError(NotFoundError):
    """No model (or no such version of it) is registered under that name."""

    def __init__(self, name: str, version: str | None = None) -> None:
        what = f"model '{name}'" if version is None else f"version '{version}' of model '{name}'"
        super().__init__(f"{what} not found")
        self.name = name
        self.version = version


class UnauthenticatedError(NstarxError):
    """No credential, or one that is not (or no longer) valid."""

    kind = ErrorKind.UNAUTHENTICATED


class ForbiddenError(NstarxError):
    """A valid credential that does not cover what was asked."""

    kind = ErrorKind.FORBIDDEN


class InvalidInputError(NstarxError):
    """The caller sent something malformed: bad JSON, wrong datatype or shape, unknown field."""

    kind = ErrorKind.INVALID_INPUT


class UnsupportedError(InvalidInputError):
    """What was asked cannot be expressed where it would run (a traffic rule KServe lacks, say).

    An `InvalidInputError` (the request is the thing to change), kept apart so a caller can tell
    "this backend cannot" from "this is malformed"; the message names the reason.
    """


class ConflictError(NstarxError):
    """The request clashes with the current state (a model that is already loading, say)."""

    kind = ErrorKind.CONFLICT


class UnavailableError(NstarxError):
    """The server cannot take the request right now; the caller may retry after `retry_after_s`."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFullError(UnavailableError):
    """A model's in-flight limit and its queue are both full."""


class RateLimitedError(NstarxError):
    """The caller's key used up its rate limit; waiting `retry_after_s` seconds succeeds."""

    kind = ErrorKind.RATE_LIMITED

    def __init__(
        self, message: str, retry_after_s: int, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = headers
        """Response headers that describe the limit (`RateLimit-Policy`, `RateLimit`)."""


class DeadlineExceededError(NstarxError):
    """The request did not finish within its deadline."""

    kind = ErrorKind.DEADLINE_EXCEEDED


class PayloadTooLargeError(NstarxError):
    """The request body is larger than the configured cap."""

    kind = ErrorKind.PAYLOAD_TOO_LARGE


class ModelError(NstarxError):
    """A model's `predict` crashed: the model's fault, not the caller's (a 500, logged)."""

    kind = ErrorKind.INTERNAL


class ModelLoadError(NstarxError):
    """A model file could not be loaded by its runtime."""

    kind = ErrorKind.INTERNAL


class MissingExtraError(NstarxError, ImportError):
    """An optional framework is not installed; the message is the exact install line."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is not installed; install it with: pip install 'nstarx-jupyter[{extra}]'"
        )
        self.module = module
        self.extra = extra


def require(module: str, extra: str) -> ModuleType:
    """Import an optional framework, or raise `MissingExtraError` with the `pip install` line."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the framework is there but one of its own dependencies is broken
        raise MissingExtraError(module.split(".")[0], extra) from exc


def first_problem(exc: Any, fallback: str) -> str:
    """A pydantic `ValidationError`'s first problem as `field.path: message`.

    `fallback` stands for the field when the problem is the whole document's.
    """
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or fallback
    return f"{where}: {first['msg']}"
