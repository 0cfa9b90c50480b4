"""Adaptive batching: concurrent requests share one predict call; each gets its own rows back.

A batch leaves when it holds `max_batch_size` rows or when its first request has waited
`max_latency_ms`, whichever comes first (KServe's `maxBatchSize`/`maxLatency`). With
`max_latency_ms=0` nothing waits for a timer: while the model is free, a batch holds the requests
that arrived in the same event-loop turn (what a busy server reads from several connections at
once), plus those already queued on the loop when it leaves, and a lone request predicts at
once; while the model is busy with a batch, new requests gather and leave together the moment
it is free. Batching then costs no latency when the server is idle, and a slow model serves as
many rows per call as arrived during the previous one.
Requests only share a batch when their inputs have the same names, dtypes and trailing shapes
and they ask for the same outputs. When a batch of several requests fails, each request is
retried alone so one poisonous request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nstarx_jupyter.errors import NstarxError, UnavailableError

__all__ = ["AdaptiveBatcher", "PredictFn"]

Tensors = dict[str, np.ndarray[Any, Any]]
PredictFn = Callable[[Tensors, tuple[str, ...] | None], Awaitable[Tensors]]
_Key = tuple[tuple[tuple[str, str, tuple[int, ...]], ...], tuple[str, ...] | None]


@dataclass(slots=True)
class _Pending:
    inputs: Tensors
    rows: int
    future: asyncio.Future[Tensors]


@dataclass(slots=True)
class _Group:
    items: list[_Pending] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.Handle | None = None


class AdaptiveBatcher:
    """Collects concurrent requests into batches for one model."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int,
        max_latency_ms: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._max_rows = max(1, max_batch_size)
        self._max_wait_s = max_latency_ms / 1000
        self._on_batch = on_batch
        self._groups: dict[_Key, _Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # no-wait mode: full batches waiting for the model, and whether it is busy
        self._full: deque[tuple[_Key, _Group]] = deque()
        self._busy = False
        self._draining = False

    @property
    def pending(self) -> int:
        """Requests waiting for their batch to leave."""
        groups = [*self._groups.values(), *(group for _, group in self._full)]
        return sum(len(group.items) for group in groups)

    async def submit(self, inputs: Tensors, outputs: tuple[str, ...] | None = None) -> Tensors:
        """Queue `inputs` (batch first) and return exactly their rows of every output."""
        if self._closed:
            raise UnavailableError("the model is unloading", 1)
        rows = int(next(iter(inputs.values())).shape[0])
        key = _key(inputs, outputs)
        loop = asyncio.get_running_loop()
        if self._max_wait_s == 0:
            return await self._submit_no_wait(inputs, outputs, rows, key, loop)
        group = self._group_for(key, rows, loop)
        item = _Pending(inputs, rows, loop.create_future())
        group.items.append(item)
        group.rows += rows
        if group.rows >= self._max_rows:
            self._seal(key)
        try:
            return await item.future
        except asyncio.CancelledError:
            if key in self._groups and item in self._groups[key].items:
                self._groups[key].items.remove(item)
                self._groups[key].rows -= rows
            raise

    def _group_for(self, key: _Key, rows: int, loop: asyncio.AbstractEventLoop) -> _Group:
        """The open batch `rows` more rows can join, opened (with its way of leaving) if need be."""
        group = self._groups.get(key)
        if group is not None and group.rows + rows > self._max_rows:
            self._seal(key)
            group = None
        if group is None:
            group = self._groups[key] = _Group()
            group.timer = loop.call_later(self._max_wait_s, self._dispatch, key)
        return group

    def _seal(self, key: _Key) -> None:
        """Close the batch under `key` to newcomers: it leaves now."""
        self._dispatch(key)

    async def _submit_no_wait(
        self,
        inputs: Tensors,
        outputs: tuple[str, ...] | None,
        rows: int,
        key: _Key,
        loop: asyncio.AbstractEventLoop,
    ) -> Tensors:
        """No timer: predict now when alone and free, else join the batch that leaves next."""
        idle = not self._busy and not self._groups and not self._full
        if idle and not _others_runnable(loop):
            self._busy = True  # one caller at a time: predict now, unbatched
            try:
                if self._on_batch is not None:
                    self._on_batch(rows)
                return await self._predict(inputs, outputs)
            finally:
                self._busy = False
                self._kick()
        group = self._groups.get(key)
        if group is not None and group.rows + rows > self._max_rows:
            self._full.append((key, self._groups.pop(key)))
            group = None
        if group is None:
            group = self._groups[key] = _Group()
        item = _Pending(inputs, rows, loop.create_future())
        group.items.append(item)
        group.rows += rows
        if group.rows >= self._max_rows:
            self._full.append((key, self._groups.pop(key)))
        self._kick()
        try:
            return await item.future
        except asyncio.CancelledError:
            if item in group.items:
                group.items.remove(item)
                group.rows -= rows
            raise

    def _kick(self) -> None:
        """Start running waiting batches unless the model is busy (they leave when it is free).

        The drain's first step runs next turn, so what arrives in this turn joins the batch.
        """
        if not self._busy and not self._draining and (self._groups or self._full):
            self._draining = True
            self._spawn(self._drain())

    async def _drain(self) -> None:
        """Run waiting batches one after the other.

        Each takes what gathered while the one before it ran, and what was already queued to
        run on the loop when it was about to leave.
        """
        loop = asyncio.get_running_loop()
        waited = False
        try:
            while not self._closed and (self._full or self._groups):
                if not waited and not self._full and _others_runnable(loop):
                    # Requests already read from their sockets wait behind this step in the
                    # loop's queue: let them run first, and join, for one turn per batch.
                    # Without it, concurrent callers settle into half-size cohorts that
                    # alternate (8 clients: 4 rows a batch; with it, 8; bench/README.md).
                    waited = True
                    await asyncio.sleep(0)
                    continue
                waited = False
                if self._full:
                    key, group = self._full.popleft()
                else:
                    key = next(iter(self._groups))
                    group = self._groups.pop(key)
                items = [item for item in group.items if not item.future.done()]
                if not items:
                    continue
                self._busy = True
                try:
                    await self._run(items, key[1])
                finally:
                    self._busy = False
        finally:
            self._draining = False

    def _dispatch(self, key: _Key) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        self._spawn(self._flush(key, group))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task that `close` can wait for."""
        self._tasks.add(asyncio.get_running_loop().create_task(self._tracked(work)))

    async def _tracked(self, work: Coroutine[Any, Any, None]) -> None:
        # Forgotten from inside, not by a done-callback: a callback is one more item in the
        # loop's ready queue, which would make the next lone request look like company.
        try:
            await work
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)

    async def _flush(self, key: _Key, group: _Group) -> None:
        """Run a timed batch: what joined it and is still waiting."""
        if self._groups.get(key) is group:
            del self._groups[key]
        items = [item for item in group.items if not item.future.done()]
        if items:
            await self._run(items, key[1])

    async def _run(self, items: list[_Pending], outputs: tuple[str, ...] | None) -> None:
        if len(items) == 1:
            inputs = items[0].inputs  # nothing to stack, nothing to split
        else:
            inputs = {name: np.concatenate([item.inputs[name] for item in items])
                      for name in items[0].inputs}  # fmt: skip
        total = sum(item.rows for item in items)
        if self._on_batch is not None:
            self._on_batch(total)
        try:
            result = await self._predict(inputs, outputs)
        except Exception as exc:  # noqa: BLE001 - handed to the callers, or retried one by one
            if len(items) == 1:
                _fail(items[0], exc)
            else:
                await asyncio.gather(*(self._run([item], outputs) for item in items))
            return
        bad = [name for name, array in result.items() if array.shape[:1] != (total,)]
        if bad:
            error = NstarxError(f"output '{bad[0]}' does not have one row per input row")
            for item in items:
                _fail(item, error)
            return
        start = 0
        for item in items:
            stop = start + item.rows
            if not item.future.done():
                item.future.set_result({name: array[start:stop] for name, array in result.items()})
            start = stop

    async def close(self) -> None:
        """Fail waiting requests with `UnavailableError` and wait for batches in flight."""
        self._closed = True
        waiting = [*self._groups.values(), *(group for _, group in self._full)]
        self._groups.clear()
        self._full.clear()
        for group in waiting:
            if group.timer is not None:
                group.timer.cancel()
            for item in group.items:
                _fail(item, UnavailableError("the model is unloading", 1))
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task


def _others_runnable(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether other callbacks (other requests' tasks, most likely) run in this loop turn.

    Reads the ready queue of asyncio's own loop (`_ready`, there since Python 3.4); a loop
    without one is assumed busy, which only costs a turn of waiting.
    """
    ready = getattr(loop, "_ready", None)
    return ready is None or len(ready) > 0


def _fail(item: _Pending, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)


def _key(inputs: Tensors, outputs: tuple[str, ...] | None) -> _Key:
    return (
        tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(inputs.items())),
        outputs,
    )
