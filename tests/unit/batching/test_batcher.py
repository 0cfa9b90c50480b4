"""Adaptive batching: every caller gets exactly its own rows, whatever arrives when."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nstarx_jupyter.batching import AdaptiveBatcher
from nstarx_jupyter.errors import InvalidInputError, NstarxError, UnavailableError

Tensors = dict[str, np.ndarray[Any, Any]]
POISON = -1.0


class EchoModel:
    """Returns each row's id times two; fails any batch holding a poison row."""

    def __init__(self) -> None:
        self.batches: list[list[float]] = []

    async def __call__(self, inputs: Tensors, outputs: tuple[str, ...] | None) -> Tensors:
        ids = inputs["x"][:, 0]
        self.batches.append(ids.tolist())
        await asyncio.sleep(0.001)
        if (ids == POISON).any():
            raise InvalidInputError("poison")
        return {"y": inputs["x"] * 2}


requests_strategy = st.lists(
    st.tuples(st.integers(1, 4), st.floats(0, 0.004), st.sampled_from(["ok", "cancel", "poison"])),
    min_size=1,
    max_size=24,
)


@settings(max_examples=40, deadline=None)
@given(requests_strategy, st.integers(1, 8), st.just(0.0) | st.floats(0.5, 3))
def test_each_request_gets_exactly_its_own_rows(
    plan: list[tuple[int, float, str]], max_batch_size: int, max_latency_ms: float
) -> None:
    asyncio.run(_run_plan(plan, max_batch_size, max_latency_ms))


async def _run_plan(plan: list[tuple[int, float, str]], size: int, latency_ms: float) -> None:
    model = EchoModel()
    batcher = AdaptiveBatcher(model, max_batch_size=size, max_latency_ms=latency_ms)
    next_id = 0

    async def one(rows: int, delay: float, kind: str, first_id: int) -> Tensors:
        await asyncio.sleep(delay)
        ids = np.arange(first_id, first_id + rows, dtype=float)
        if kind == "poison":
            ids[0] = POISON
        return await batcher.submit({"x": np.stack([ids, ids], axis=1)})

    tasks = []
    for rows, delay, _kind in plan:
        tasks.append(asyncio.create_task(one(rows, delay, _kind, next_id)))
        next_id += rows
    for task, (_, delay, kind) in zip(tasks, plan, strict=True):
        if kind == "cancel":
            await asyncio.sleep(delay / 2)
            task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    first = 0
    for result, (rows, _, kind) in zip(results, plan, strict=True):
        ids = np.arange(first, first + rows, dtype=float)
        first += rows
        if kind == "cancel":
            continue  # cancelled at some point, or finished before the cancel arrived
        if kind == "poison":
            assert isinstance(result, InvalidInputError)
            continue
        assert isinstance(result, dict), result
        np.testing.assert_array_equal(result["y"], np.stack([ids, ids], axis=1) * 2)
    _check_batch_sizes(model.batches, plan, size)
    await batcher.close()


async def test_concurrent_requests_share_batches() -> None:
    model = EchoModel()
    batcher = AdaptiveBatcher(model, max_batch_size=32, max_latency_ms=50)
    rows = [np.full((1, 2), i, dtype=float) for i in range(32)]
    results = await asyncio.gather(*(batcher.submit({"x": r}) for r in rows))
    assert [r["y"][0, 0] for r in results] == [2.0 * i for i in range(32)]
    assert len(model.batches) == 1  # 32 rows fill one batch before the 50 ms are up


async def test_with_no_wait_a_batch_holds_what_arrived_in_the_same_turn() -> None:
    model = EchoModel()
    batcher = AdaptiveBatcher(model, max_batch_size=32, max_latency_ms=0)
    started = asyncio.get_running_loop().time()
    together = await asyncio.gather(*(batcher.submit({"x": np.full((1, 2), i)}) for i in range(8)))
    assert [r["y"][0, 0] for r in together] == [2.0 * i for i in range(8)]
    assert model.batches == [[float(i) for i in range(8)]]  # one batch, nobody waited for more
    alone = await batcher.submit({"x": np.full((1, 2), 9.0)})
    assert alone["y"][0, 0] == 18.0
    assert model.batches[-1] == [9.0]
    assert asyncio.get_running_loop().time() - started < 0.5  # no timer stood in the way


async def test_with_no_wait_requests_already_queued_on_the_loop_join_the_batch() -> None:
    """Callers whose turn comes right after the batch was due still make it (one turn)."""
    model = EchoModel()
    batcher = AdaptiveBatcher(model, max_batch_size=32, max_latency_ms=0)

    async def one_turn_later(i: float) -> Tensors:
        await asyncio.sleep(0)  # queued behind the batch's departure, as a request just read is
        return await batcher.submit({"x": np.full((1, 2), i)})

    results = await asyncio.gather(
        batcher.submit({"x": np.full((1, 2), 0.0)}),
        batcher.submit({"x": np.full((1, 2), 1.0)}),
        one_turn_later(2.0),
        one_turn_later(3.0),
    )
    assert [r["y"][0, 0] for r in results] == [0.0, 2.0, 4.0, 6.0]
    assert model.batches == [[0.0, 1.0, 2.0, 3.0]]
    await batcher.close()


async def test_with_no_wait_a_busy_loop_delays_a_batch_by_one_turn_only() -> None:
    """Something always runnable on the loop must not hold a batch back for good."""
    model = EchoModel()
    batcher = AdaptiveBatcher(model, max_batch_size=32, max_latency_ms=0)
    stop = False

    async def spin() -> None:
        while not stop:  # noqa: ASYNC110 - busy on purpose: the loop always has work queued
            await asyncio.sleep(0)

    spinner = asyncio.create_task(spin())
    try:
        async with asyncio.timeout(2):
            results = await asyncio.gather(
                *(batcher.submit({"x": np.full((1, 2), float(i))}) for i in range(3))
            )
    finally:
        stop = True
        await spinner
    assert [r["y"][0, 0] for r in results] == [0.0, 2.0, 4.0]
    assert model.batches == [[0.0, 1.0, 2.0]]
    await batcher.close()


async def test_incompatible_requests_go_to_separate_batches() -> None:
    model = EchoModel()
    batcher = AdaptiveBatcher(model, max_batch_size=8, max_latency_ms=5)
    await asyncio.gather(
        batcher.submit({"x": np.zeros((1, 2))}),
        batcher.submit({"x": np.zeros((1, 3))}),
        batcher.submit({"x": np.zeros((1, 2), dtype=np.float32)}),
    )
    assert len(model.batches) == 3


async def test_wrong_row_count_from_the_model_fails_the_batch() -> None:
    async def broken(inputs: Tensors, outputs: tuple[str, ...] | None) -> Tensors:
        return {"y": np.zeros(1)}

    batcher = AdaptiveBatcher(broken, max_batch_size=4, max_latency_ms=1)
    with pytest.raises(NstarxError, match="one row per input row"):
        await batcher.submit({"x": np.zeros((3, 2))})


async def test_close_fails_waiting_requests() -> None:
    batcher = AdaptiveBatcher(EchoModel(), max_batch_size=8, max_latency_ms=10_000)
    waiting = asyncio.create_task(batcher.submit({"x": np.zeros((1, 2))}))
    await asyncio.sleep(0)
    await batcher.close()
    with pytest.raises(UnavailableError):
        await waiting


def _check_batch_sizes(
    batches: list[list[float]], plan: list[tuple[int, float, str]], size: int
) -> None:
    """A batch never exceeds the limit unless it is one request larger than the limit."""
    owner: dict[float, int] = {}
    first = 0
    for index, (rows, _, _) in enumerate(plan):
        owner.update({float(i): index for i in range(first, first + rows)})
        first += rows
    for batch in batches:
        assert len(batch) <= size or len({owner.get(i, -1) for i in batch if i != POISON}) == 1


async def test_with_no_wait_requests_gather_while_the_model_is_busy() -> None:
    """A slow model serves, in its next call, every request that arrived during the last one."""
    model = EchoModel()
    batcher = AdaptiveBatcher(model, max_batch_size=32, max_latency_ms=0)
    first = asyncio.create_task(batcher.submit({"x": np.full((1, 2), 0.0)}))
    for _ in range(10):  # a few turns, until the lone request is predicting (it sleeps 1 ms)
        if model.batches:
            break
        await asyncio.sleep(0)
    assert model.batches == [[0.0]]
    later = []
    for i in range(1, 6):
        later.append(asyncio.create_task(batcher.submit({"x": np.full((1, 2), float(i))})))
        await asyncio.sleep(0)  # one at a time, in separate turns
    results = await asyncio.gather(first, *later)
    assert [r["y"][0, 0] for r in results] == [2.0 * i for i in range(6)]
    assert model.batches == [[0.0], [1.0, 2.0, 3.0, 4.0, 5.0]]
    await batcher.close()
