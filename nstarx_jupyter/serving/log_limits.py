"""Bounded log volume: whatever clients send, the server writes a bounded number of records.

A client can make the server log on every connection or request (malformed requests, accept
failures when file descriptors run out, crashing handlers); unbounded, that fills disks and
drowns what matters (168k tracebacks in 38 s were seen under slowloris). `RateLimitFilter` lets
through at most `per_key` records per `window_s` for each logger, level and message template
(the first line of the unformatted message, so records that differ only in their arguments count
as one kind), and at most `total` records per window in all; the rest are counted, and once the
window is over one line per kind says how many were suppressed.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["RateLimitFilter", "limit_log_rate"]

_SUMMARY = "nstarx.suppressed"
"""Marks the summary records the filter writes itself (they pass it)."""
_MAX_SUMMARIES = 20
"""Kinds of suppressed records named one by one after a window; the rest share one line."""
_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")
"""Loggers with handlers of their own (uvicorn's logging config), besides the root logger."""


class RateLimitFilter(logging.Filter):
    """A handler filter passing at most `per_key` records of a kind per window, `total` in all."""

    def __init__(
        self, handler: logging.Handler, per_key: int = 10, total: int = 100, window_s: float = 10.0
    ) -> None:
        super().__init__()
        self.handler = handler
        self.per_key = per_key
        self.total = total
        self.window_s = window_s
        self._lock = threading.Lock()
        self._window_ends = 0.0
        self._passed = 0
        self._counts: dict[tuple[str, int, str], int] = {}
        self._suppressed: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True to write the record; False when its kind, or all records, are over the limit."""
        if getattr(record, _SUMMARY, False):
            return True
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, record.levelno, template.partition("\n")[0][:200])
        with self._lock:
            now = time.monotonic()
            summary = self._roll(now) if now >= self._window_ends else None
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
            allowed = count <= self.per_key and self._passed < self.total
            if allowed:
                self._passed += 1
            else:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
        if summary:
            self._write(summary)
        return allowed

    def _roll(self, now: float) -> dict[tuple[str, int, str], int]:
        """Start a new window; return what the last one suppressed."""
        suppressed = self._suppressed
        self._window_ends = now + self.window_s
        self._passed = 0
        self._counts = {}
        self._suppressed = {}
        return suppressed

    def _write(self, suppressed: dict[tuple[str, int, str], int]) -> None:
        kinds = sorted(suppressed.items(), key=lambda item: -item[1])
        lines = [(name, level, f"suppressed {count} similar messages: {template}")
                 for (name, level, template), count in kinds[:_MAX_SUMMARIES]]  # fmt: skip
        if len(kinds) > _MAX_SUMMARIES:
            rest = sum(count for _, count in kinds[_MAX_SUMMARIES:])
            lines.append((__name__, logging.WARNING, f"suppressed {rest} messages of "
                          f"{len(kinds) - _MAX_SUMMARIES} other kinds"))  # fmt: skip
        for name, level, text in lines:
            record = logging.LogRecord(name, level, __file__, 0, "%s", (text,), None)
            setattr(record, _SUMMARY, True)
            self.handler.handle(record)


def limit_log_rate(per_key: int = 10, total: int = 100, window_s: float = 10.0) -> int:
    """Add a `RateLimitFilter` to the handlers of the root, uvicorn's and asyncio's loggers.

    Handlers that have one keep it; returns how many handlers got one.
    """
    handlers = list(logging.getLogger().handlers)
    for name in _LOGGERS:
        handlers += logging.getLogger(name).handlers
    added = 0
    for handler in dict.fromkeys(handlers):
        if not any(isinstance(f, RateLimitFilter) for f in handler.filters):
            handler.addFilter(RateLimitFilter(handler, per_key, total, window_s))
            added += 1
    return added
