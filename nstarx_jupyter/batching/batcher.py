"""Adaptive batching: concurrent requests share one predict call; each gets its own rows back.

A batch leaves when it holds `max_batch_size` rows or when its first request has waited
`max_latency_ms`, whichever comes first (KServe's `maxBatchSize`/`maxLatency`). Requests only
share a batch when their inputs have the same names, dtypes and trailing shapes and they ask for
the same outputs. When a batch of several requests fails, each request is retried alone so one
poisonous request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
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
    timer: asyncio.TimerHandle | None = None


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

    @property
    def pending(self) -> int:
        """Requests waiting for their batch to leave."""
        return sum(len(group.items) for group in self._groups.values())

    async def submit(self, inputs: Tensors, outputs: tuple[str, ...] | None = None) -> Tensors:
        """Queue `inputs` (batch first) and return exactly their rows of every output."""
        if self._closed:
            raise UnavailableError("the model is unloading", 1)
        rows = int(next(iter(inputs.values())).shape[0])
        key = _key(inputs, outputs)
        group = self._groups.get(key)
        if group is not None and group.rows + rows > self._max_rows:
            self._dispatch(key)
            group = None
        if group is None:
            group = self._groups[key] = _Group()
            loop = asyncio.get_running_loop()
            group.timer = loop.call_later(self._max_wait_s, self._dispatch, key)
        item = _Pending(inputs, rows, asyncio.get_running_loop().create_future())
        group.items.append(item)
        group.rows += rows
        if group.rows >= self._max_rows:
            self._dispatch(key)
        try:
            return await item.future
        except asyncio.CancelledError:
            if key in self._groups and item in self._groups[key].items:
                self._groups[key].items.remove(item)
                self._groups[key].rows -= rows
            raise

    def _dispatch(self, key: _Key) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        items = [item for item in group.items if not item.future.done()]
        if not items:
            return
        task = asyncio.get_running_loop().create_task(self._run(items, key[1]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[_Pending], outputs: tuple[str, ...] | None) -> None:
        inputs = {
            name: np.concatenate([item.inputs[name] for item in items]) for name in items[0].inputs
        }
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
        for key in list(self._groups):
            group = self._groups.pop(key)
            if group.timer is not None:
                group.timer.cancel()
            for item in group.items:
                _fail(item, UnavailableError("the model is unloading", 1))
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task


def _fail(item: _Pending, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)


def _key(inputs: Tensors, outputs: tuple[str, ...] | None) -> _Key:
    return (
        tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(inputs.items())),
        outputs,
    )
