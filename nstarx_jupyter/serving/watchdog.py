"""Per-model deadlines and admission: a 504 at the deadline, a 503 past the request bound."""

from __future__ import annotations

import asyncio
from collections import deque

from nstarx_jupyter.errors import QueueFullError

__all__ = ["Admission", "Watch", "Watchdog"]

COMPACT_AT = 1024
"""Watched requests kept before the answered ones behind a pending one are dropped."""


class Watch:
    """One request under a `Watchdog`: its task, its deadline, whether it ended or expired."""

    __slots__ = ("deadline", "done", "expired", "task")

    def __init__(self, task: asyncio.Task[object], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.done = False
        """Set by the request when it leaves the watched block (answered or failed)."""
        self.expired = False
        """Set by the watchdog when it cancelled the request at its deadline."""


class Watchdog:
    """Cancels one model's requests at their deadline, with one timer for all of them.

    Every request of a model has the same timeout, so deadlines come in order: a queue and one
    timer armed at the oldest pending deadline cost less per request than a timer each
    (`asyncio.timeout` costs about 5 us a request, 4 % of the 7,000 req/s fast path). The
    cancelled request turns the cancellation into a 504 (`Watch.expired`); the event loop is
    never blocked by a model call, so the timer fires on time.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._queue: deque[Watch] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._compact_at = COMPACT_AT

    def watch(self) -> Watch | None:
        """Start watching the current task (None outside a task: nothing can be cancelled)."""
        task = asyncio.current_task()
        if task is None:
            return None
        loop = task.get_loop()
        watch = Watch(task, loop.time() + self.timeout_s)
        queue = self._queue
        while queue and queue[0].done:  # answered requests leave from the front
            queue.popleft()
        queue.append(watch)
        if len(queue) > self._compact_at:  # a slow request at the front holds answered ones
            self._queue = queue = deque(entry for entry in queue if not entry.done)
            self._compact_at = max(COMPACT_AT, 2 * len(queue))
        if self._timer is None:
            self._timer = loop.call_at(watch.deadline, self._fire, loop)
        return watch

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        queue = self._queue
        while queue:
            watch = queue[0]
            if not watch.done and watch.deadline > now:
                break
            queue.popleft()
            if not watch.done:
                watch.expired = True
                watch.task.cancel()
        if queue:
            self._timer = loop.call_at(queue[0].deadline, self._fire, loop)

    def close(self) -> None:
        """Stop the timer (the model is unloading)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Admission:
    """A bound on one model's requests in flight and queued; past it `QueueFullError` (503)."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def enter(self) -> None:
        """Count a request in, or refuse it when the model already holds `limit`."""
        if self.held >= self.limit:
            raise QueueFullError("the model has too many requests in flight; retry shortly", 1)
        self.held += 1

    def leave(self) -> None:
        """Count a request out."""
        self.held -= 1
