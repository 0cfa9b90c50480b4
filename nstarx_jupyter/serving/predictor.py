"""Run a runtime's synchronous predict without stalling the event loop; bound concurrency."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
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
WAITING_THREADS = 8
"""Threads of a model that waits (they hold no CPU): its concurrent predictions at most."""
WAITING_S = 0.02
"""A prediction this much longer in wall time than in CPU time waited (sleep, I/O): such a model
never runs on the event loop, however little CPU it uses."""


class Predictor:
    """Calls `runtime.predict` inline when it is known to be fast, in a worker thread otherwise.

    The expected duration is a running average of CPU seconds per row, so a model that is quick
    for one row still goes to a thread for a large batch, and an unknown model starts in a thread.
    A model seen waiting (sleeping, calling out) stays in threads for good.
    """

    def __init__(self, runtime: Runtime, executor: Executor | None, threads: int = 1) -> None:
        self.runtime = runtime
        self._executor = executor
        self._s_per_row: float | None = None
        self.waits = False
        """Seen spending wall time without CPU time: it would stall the event loop."""
        self._slots = asyncio.Semaphore(max(1, threads - 1))
        """This model's share of the shared pool: all its threads but one, so one slow or
        waiting model (a shadow, say) cannot queue every other model's predictions behind it."""
        self._own: ThreadPoolExecutor | None = None

    async def __call__(self, inputs: Tensors, outputs: tuple[str, ...] | None) -> Tensors:
        """Predict, choosing inline or thread by the expected duration."""
        rows = _rows(inputs)
        expected = None if self._s_per_row is None else self._s_per_row * rows
        if expected is not None and expected < INLINE_BUDGET_S and not self.waits:
            return self._timed(inputs, outputs, rows)
        loop = asyncio.get_running_loop()
        if self.waits:  # no CPU needed, so threads of its own, outside the shared pool
            if self._own is None:
                self._own = ThreadPoolExecutor(WAITING_THREADS, "nstarx-wait")
            return await loop.run_in_executor(self._own, self._timed, inputs, outputs, rows)
        async with self._slots:
            return await loop.run_in_executor(self._executor, self._timed, inputs, outputs, rows)

    def close(self) -> None:
        """Let the threads of a waiting model go (the model is unloading)."""
        if self._own is not None:
            self._own.shutdown(wait=False)

    def _timed(self, inputs: Tensors, outputs: tuple[str, ...] | None, rows: int) -> Tensors:
        # CPU time of this thread: waiting for the GIL behind other predictions must not make a
        # fast model look slow (it would then stay in the thread pool for good).
        start, wall = time.thread_time(), time.perf_counter()
        result = self.runtime.predict(inputs, outputs)
        cpu = time.thread_time() - start
        if time.perf_counter() - wall - cpu > WAITING_S:
            self.waits = True
        per_row = cpu / rows
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
