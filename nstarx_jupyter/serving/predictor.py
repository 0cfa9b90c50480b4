"""Run a runtime's synchronous predict without stalling the event loop; bound concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import QueueFullError, UnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor, Future

    import numpy as np

    from nstarx_jupyter.runtimes.base import Runtime, Tensors
    from nstarx_jupyter.serving.metrics import ModelUsage

__all__ = ["ConcurrencyLimiter", "Predictor"]

log = logging.getLogger(__name__)

try:
    import resource

    _RUSAGE_THREAD: int | None = resource.RUSAGE_THREAD
except (ImportError, AttributeError):  # Windows, macOS: no per-thread usage
    _RUSAGE_THREAD = None

INLINE_BUDGET_S = 0.0005
"""Predictions expected to take less than this run on the event loop: a thread hop costs more."""
INLINE_OVERRUN_S = 10 * INLINE_BUDGET_S
"""An inline call that uses more CPU than this, or waits (wall time beyond CPU time) this long,
is a strike: a model must not earn the fast path and then abuse it. A strike puts the model on
probation: its next `PROBATION_CALLS` calls run in threads, where a model that sleeps shows it
(`WAITING_S`) and stays there for good; `INLINE_STRIKES` strikes send it to threads for good.
Not at once: a garbage collection during the call, the server's other threads holding the GIL
(a model loading) and the kernel preempting the server look the same, and must not take a fast
model off the fast path."""
INLINE_GROSS_S = 0.1
"""CPU in one inline call past which the model goes to threads for good at once."""
INLINE_STRIKES = 3
"""Inline calls that waited past `INLINE_OVERRUN_S` before the model goes to threads for good."""
PROBATION_CALLS = 8
"""Calls that run in threads after a strike."""
FORGIVE_AFTER = 200
"""Clean inline calls that wipe out one strike (such waits are rare and far apart)."""
WAITING_THREADS = 8
"""Threads of a model that waits (they hold no CPU): its concurrent predictions at most."""
WAITING_S = 0.02
"""A prediction this much longer in wall time than in CPU time waited (sleep, I/O): such a model
never runs on the event loop, however little CPU it uses."""
DEFAULT_TIMEOUT_S = 60.0
"""A model's deadline when its settings give none."""


class Predictor:
    """Calls `runtime.predict` inline when it is known to be fast, in a worker thread otherwise.

    Known to be fast means three things: the model is made only of library code that cannot
    block (`Runtime.rows_independent`: scikit-learn, XGBoost, LightGBM estimators; never a
    user's runtime, a FunctionTransformer, PyTorch, TensorFlow or ONNX), its running average of
    seconds per row says the call fits `INLINE_BUDGET_S`, and no inline call of it ever overran
    `INLINE_OVERRUN_S`. Everything else runs in a thread of the model's own pool (`executor`
    when given), all the server's predict threads but one: a thread stuck in one model cannot
    take a thread from another. A thread holds one of the model's slots until it really ends,
    also after its request got its 504: when every slot is held by a call past the deadline, new
    requests get 503 instead of piling up. A model seen waiting (sleeping, calling out) moves to
    `WAITING_THREADS` threads for good.
    """

    def __init__(
        self,
        runtime: Runtime,
        executor: Executor | None,
        threads: int = 1,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        usage: ModelUsage | None = None,
    ) -> None:
        self.runtime = runtime
        self.usage = usage
        """Where the CPU seconds of each predict call are added (`/metrics`, cost)."""
        self._executor = executor
        self._s_per_row: float | None = None
        self.inline = _library_only(runtime)
        """May run on the event loop: library code only, and no inline call overran yet."""
        self.waits = False
        """Seen spending wall time without CPU time: it would stall the event loop."""
        self._shared = max(1, threads - 1)
        self._slots = asyncio.Semaphore(self._shared)
        """This model's share of threads: all the server's predict threads but one, so one slow
        or waiting model (a shadow, say) cannot queue every other model's predictions behind it."""
        self._own_slots = asyncio.Semaphore(WAITING_THREADS)
        self._own: ThreadPoolExecutor | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._timeout_s = timeout_s
        self._strikes = 0
        self._clean = 0
        self._probation = 0
        self._running: dict[int, float] = {}
        """Calls handed to a thread and not yet ended, by id: when each started."""
        self._calls = 0

    async def __call__(self, inputs: Tensors, outputs: tuple[str, ...] | None) -> Tensors:
        """Predict, choosing inline or thread by what is known of the model."""
        rows = _rows(inputs)
        per_row = self._s_per_row
        if self.inline and per_row is not None and per_row * rows < INLINE_BUDGET_S:
            if not self._probation:
                return self._inline(inputs, outputs, rows)
            self._probation -= 1
        if self.waits:  # no CPU needed, so more threads, outside the model's share
            if self._own is None:
                self._own = ThreadPoolExecutor(WAITING_THREADS, "nstarx-wait")
            return await self._threaded(self._own, self._own_slots, WAITING_THREADS, inputs,
                                        outputs, rows)  # fmt: skip
        if self._executor is None:
            self._executor = self._pool = ThreadPoolExecutor(self._shared, "nstarx-predict")
        return await self._threaded(self._executor, self._slots, self._shared, inputs, outputs,
                                    rows)  # fmt: skip

    @property
    def stuck(self) -> int:
        """Calls still running in a thread past the model's deadline."""
        if not self._running:
            return 0
        since = time.monotonic() - self._timeout_s
        return sum(started < since for started in self._running.values())

    def close(self) -> None:
        """Let the model's threads go (the model is unloading)."""
        for pool in (self._own, self._pool):
            if pool is not None:
                pool.shutdown(wait=False)

    async def _threaded(
        self,
        executor: Executor,
        slots: asyncio.Semaphore,
        capacity: int,
        inputs: Tensors,
        outputs: tuple[str, ...] | None,
        rows: int,
    ) -> Tensors:
        if self.stuck >= capacity:
            wait_s = max(1, min(60, math.ceil(self._timeout_s)))
            raise UnavailableError(
                f"every thread of the model is stuck in a call past its {self._timeout_s:g} s "
                "deadline; retry later", wait_s
            )  # fmt: skip
        await slots.acquire()
        loop = asyncio.get_running_loop()
        try:
            future = executor.submit(self._timed, inputs, outputs, rows)
        except BaseException:
            slots.release()
            raise
        self._calls += 1
        key = self._calls
        self._running[key] = time.monotonic()
        # The slot comes back when the thread ends (or the call is cancelled before it starts),
        # not when the caller stops waiting: a call past its deadline keeps its thread busy.
        future.add_done_callback(functools.partial(self._ended, loop, slots, key))
        return await asyncio.wrap_future(future, loop=loop)

    def _ended(
        self, loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore, key: int, _: Future[Any]
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for the slot
            loop.call_soon_threadsafe(self._release, slots, key)

    def _release(self, slots: asyncio.Semaphore, key: int) -> None:
        self._running.pop(key, None)
        slots.release()

    def _inline(self, inputs: Tensors, outputs: tuple[str, ...] | None, rows: int) -> Tensors:
        start, wall = _thread_usage(), time.perf_counter()
        result = self.runtime.predict(inputs, outputs)
        end = _thread_usage()
        cpu = end[0] - start[0]
        # Waiting counts only when the thread gave up the CPU itself (sleep, I/O, a lock, the
        # GIL): the kernel preempting or throttling the server (a CPU limit) is not the model.
        waited = time.perf_counter() - wall - cpu if end[1] != start[1] else 0.0
        if cpu > INLINE_OVERRUN_S or waited > INLINE_OVERRUN_S:
            self._overran(cpu, waited)
        elif self._strikes:
            self._clean += 1
            if self._clean >= FORGIVE_AFTER:
                self._strikes, self._clean = self._strikes - 1, 0
        self._learn(cpu / rows)
        if self.usage is not None:
            self.usage.add(cpu)
        return result

    def _overran(self, cpu: float, waited: float) -> None:
        """Judge an inline call that held the event loop too long (see `INLINE_OVERRUN_S`)."""
        self._strikes += 1
        self._clean = 0
        self._probation = PROBATION_CALLS
        if cpu > INLINE_GROSS_S or self._strikes >= INLINE_STRIKES:
            self.inline = False
            log.warning("a call to %s held the event loop %.1f ms: it runs in threads from now "
                        "on", type(self.runtime).__name__, (cpu + waited) * 1000)  # fmt: skip

    def _timed(self, inputs: Tensors, outputs: tuple[str, ...] | None, rows: int) -> Tensors:
        # CPU time of this thread: waiting for the GIL behind other predictions must not make a
        # fast model look slow (it would then stay in the thread pool for good).
        start, wall = time.thread_time(), time.perf_counter()
        result = self.runtime.predict(inputs, outputs)
        cpu = time.thread_time() - start
        if time.perf_counter() - wall - cpu > WAITING_S:
            self.waits = True
        self._learn(cpu / rows)
        if self.usage is not None:
            self.usage.add(cpu)
        return result

    def _learn(self, per_row: float) -> None:
        previous = self._s_per_row
        self._s_per_row = per_row if previous is None else 0.8 * previous + 0.2 * per_row


def _thread_usage() -> tuple[float, int]:
    """CPU seconds of this thread and how often it gave up the CPU itself.

    CPU from `thread_time` (getrusage's is sampled at clock ticks, far too coarse here).
    """
    if _RUSAGE_THREAD is None:  # no per-thread counts (not Linux): every wait looks voluntary
        return time.thread_time(), -1 - time.perf_counter_ns()
    return time.thread_time(), resource.getrusage(_RUSAGE_THREAD).ru_nvcsw


BUILT_IN_RUNTIMES = "nstarx_jupyter.runtimes."
"""Where the runtimes that may run inline live: a user's `Runtime` subclass never does."""


def _library_only(runtime: Runtime) -> bool:
    """Whether the runtime is built in and its model is made of library code only.

    `rows_independent` is that test for the tabular runtimes (scikit-learn, XGBoost, LightGBM;
    a FunctionTransformer or a user's estimator fails it); the others say False.
    """
    return type(runtime).__module__.startswith(BUILT_IN_RUNTIMES) and runtime.rows_independent()


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
