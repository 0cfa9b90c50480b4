"""Fallbacks: when a variant's failure is answered by the plan's fallback variant instead.

A fallback answers for the variant's own failures (it is down, crashed or too slow), never for the
caller's mistakes, which would fail there too; those also say nothing about the variant, so they
stay out of its error rate in the request log.
"""

from __future__ import annotations

from nstarx_jupyter.errors import ErrorKind, NstarxError

__all__ = ["CALLER_MISTAKES", "FALLBACK_ON", "fallback_reason"]

FALLBACK_ON = (ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL, ErrorKind.DEADLINE_EXCEEDED)
"""Failures a fallback variant answers for; a client's mistake would fail there too."""
CALLER_MISTAKES = (ErrorKind.INVALID_INPUT, ErrorKind.NOT_FOUND, ErrorKind.UNAUTHENTICATED,
                   ErrorKind.FORBIDDEN, ErrorKind.PAYLOAD_TOO_LARGE)  # fmt: skip
"""Failures that say nothing about the variant: kept out of its error rate."""


def fallback_reason(exc: BaseException) -> str | None:
    """Why the fallback answers after `exc` (`timeout`, `unavailable`, ...), or None: re-raise.

    `exc` is what the chosen variant raised, or the `TimeoutError` of the plan's fallback timeout.
    """
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, NstarxError) and exc.kind in FALLBACK_ON:
        return exc.kind.value.lower()
    return None
