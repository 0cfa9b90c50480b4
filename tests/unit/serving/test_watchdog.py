"""The watchdog answers at the deadline with one timer; admission refuses past its bound."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from nstarx_jupyter.errors import QueueFullError
from nstarx_jupyter.serving.watchdog import Admission, Watchdog


async def _watched(watchdog: Watchdog, work_s: float) -> tuple[str, float]:
    """Sleep `work_s` under the watchdog; say whether it finished or expired, and when."""
    started = time.perf_counter()
    watch = watchdog.watch()
    assert watch is not None
    try:
        await asyncio.sleep(work_s)
    except asyncio.CancelledError:
        if not watch.expired:
            raise
        watch.task.uncancel()
        return "expired", time.perf_counter() - started
    finally:
        watch.done = True
    return "finished", time.perf_counter() - started


def test_requests_past_the_deadline_are_cancelled_at_it_and_the_others_are_not() -> None:
    async def run() -> list[tuple[str, float]]:
        watchdog = Watchdog(0.2)
        return await asyncio.gather(*(_watched(watchdog, work_s)
                                      for work_s in (0.05, 1.0, 0.1, 1.0)))  # fmt: skip

    results = asyncio.run(run())
    assert [outcome for outcome, _ in results] == ["finished", "expired", "finished", "expired"]
    for outcome, seconds in results:
        if outcome == "expired":  # cancelled mid-sleep: at the deadline, before the 1 s of work
            assert seconds >= 0.2


def test_answered_requests_behind_a_slow_one_do_not_pile_up() -> None:
    async def run() -> int:
        watchdog = Watchdog(60)
        slow = asyncio.create_task(_watched(watchdog, 10))
        await asyncio.sleep(0)
        for _ in range(10_000):
            await _watched(watchdog, 0)
        held = len(watchdog._queue)
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow
        watchdog.close()
        return held

    assert asyncio.run(run()) <= 2048


def test_admission_refuses_past_its_bound_with_retry_after() -> None:
    admission = Admission(2)
    admission.enter()
    admission.enter()
    with pytest.raises(QueueFullError) as refused:
        admission.enter()
    assert refused.value.retry_after_s == 1
    admission.leave()
    admission.enter()
