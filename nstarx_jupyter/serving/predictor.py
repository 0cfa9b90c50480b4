"""Run a runtime's synchronous predict without stalling the event loop; bound concurrency."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import QueueFullError

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

    import numpy as np

    from nstarx_jupyter.runtimes.base import Runtime, Tensors

__all__ = ["ConcurrencyLimiter", "Predictor"]

INLINE_BUDGET_S = 0.0005
"""Predictions expected to take less than this run on the event loop: a thread hop costs more."""


class Predictor:
    """Calls `runtime.predict` inline when it is known to be fast, in a worker thread otherwise.

    The expected duration is a running average of seconds per row, so a model that is quick for
    one row still goes to a thread for a large batch, and an unknown model starts in a thread.
    """

    def __init__(self, runtime: Runtime, executor: Executor | None) -> None:
        self.runtime = runtime
        self._executor = executor
        self._s_per_row: float | None = None

    async def __call__(self, inputs: Tensors, outputs: tuple[str, ...] | None) -> Tensors:
        """Predict, choosing inline or thread by the expected duration."""
        rows = _rows(inputs)
        expected = None if self._s_per_row is None else self._s_per_row * rows
        if expected is not None and expected < INLINE_BUDGET_S:
            return self._timed(inputs, outputs, rows)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, inputs, outputs, rows)

    def _timed(self, inputs: Tensors, outputs: tuple[str, ...] | None, rows: int) -> Tensors:
        # CPU time of this thread: waiting for the GIL behind other predictions must not make a
        # fast model look slow (it would then stay in the thread pool for good).
        start = time.thread_time()
        result = self.runtime.predict(inputs, outputs)
        per_row = (time.thread_time() - start) / rows
        previous = self._s_per_row
        self._s_per_row = per_row if previous is None else 0.8 * previous + 0.2 * per_row
        return result


def _rows(inputs: Tensors) -> int:
    first: np.ndarray[Any, Any] = next(iter(inputs.values()))
    return max(1, int(first.shape[0]) if first.ndim else 1)


class ConcurrencyLimiter:
    """KServe's `containerConcurrency`: at most `limit` requests at once, `max_queue` waiting."""

    def __init__(self, limit: int, max_queue: int, on_depth: Callable[[int], None]) -> None:
        self._semaphore = asyncio.Semaphore(limit)
        self._max_queue = max_queue
        self._waiting = 0
        self._on_depth = on_depth

    async def __aenter__(self) -> None:
        """Take a slot, waiting in the bounded queue; a full queue raises `QueueFullError`."""
        if not self._semaphore.locked():
            await self._semaphore.acquire()
            return
        if self._waiting >= self._max_queue:
            raise QueueFullError("the model's request queue is full; retry shortly", 1)
        self._waiting += 1
        self._on_depth(self._waiting)
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
            self._on_depth(self._waiting)

    async def __aexit__(self, *exc: object) -> None:
        """Free the slot."""
        self._semaphore.release()
