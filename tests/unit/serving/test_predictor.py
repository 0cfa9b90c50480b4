"""Where a prediction runs: fast library models on the event loop, everything else in threads."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from nstarx_jupyter.errors import UnavailableError
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors
from nstarx_jupyter.runtimes.sklearn import SklearnRuntime
from nstarx_jupyter.serving import predictor as predictor_module
from nstarx_jupyter.serving.predictor import PROBATION_CALLS, Predictor

if TYPE_CHECKING:
    from collections.abc import Sequence


class _Recording(Runtime):
    """Echoes its input after `sleep_s` of sleep (or once its `release` event is set),
    remembering the thread it ran on."""

    runtime_name: ClassVar[str] = "recording"

    def load(self) -> None:
        self.threads: list[int] = []
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        self.threads.append(threading.get_ident())
        release = self.options.get("release")
        if isinstance(release, threading.Event):
            release.wait(30)
        time.sleep(float(self.options.get("sleep_s", 0)))
        return dict(inputs)

    def metadata(self) -> ModelSignature:
        spec = TensorSpec("x", "FP64", (-1, 1))
        return ModelSignature(platform="recording", inputs=(spec,), outputs=(spec,))


@pytest.fixture(autouse=True)
def _roomy_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget a loaded 2-core CI machine keeps: iris takes 0.1-0.6 ms of CPU there."""
    monkeypatch.setattr(predictor_module, "INLINE_BUDGET_S", 0.002)
    monkeypatch.setattr(predictor_module, "INLINE_OVERRUN_S", 0.005)
    monkeypatch.setattr(predictor_module, "INLINE_GROSS_S", 0.006)


def _iris_runtime(delays_s: list[float] | None = None) -> tuple[SklearnRuntime, list[int]]:
    """A built-in scikit-learn runtime on iris whose estimator records its thread.

    `delays_s` (consumed one per call) makes a call sleep (a negative one: burn that much CPU):
    library code that was fast and then is not, as a pickle that patched its own estimator
    could be.
    """
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    threads: list[int] = []
    predict = model.predict
    for _ in range(3):  # first calls pay for imports and caches, not what is measured here
        predict(x[:1])

    def recording(rows: Any) -> Any:
        threads.append(threading.get_ident())
        delay_s = delays_s.pop(0) if delays_s else 0.0
        if delay_s > 0:
            time.sleep(delay_s)
        cpu_until = time.thread_time() - delay_s
        while time.thread_time() < cpu_until:  # a negative delay: that much CPU, not sleep
            pass
        return predict(rows)

    model.predict = recording
    runtime = SklearnRuntime()
    runtime.model = model
    return runtime, threads


async def _where(runtime: Runtime, threads: list[int], calls: int, width: int = 1) -> list[bool]:
    """For each call, whether it ran on the event loop's thread."""
    with ThreadPoolExecutor(2) as pool:
        predictor = Predictor(runtime, pool)
        for _ in range(calls):
            await predictor({"x": np.zeros((1, width))}, None)
    loop_thread = threading.get_ident()
    return [ident == loop_thread for ident in threads]


def test_a_fast_library_model_moves_onto_the_loop_after_its_first_call() -> None:
    runtime, threads = _iris_runtime()
    assert asyncio.run(_where(runtime, threads, 4, width=4)) == [False, True, True, True]


def test_a_custom_runtime_never_runs_on_the_loop_however_fast() -> None:
    # A user's predict may do anything (sleep, call out): only library code earns the loop.
    runtime = _Recording()
    runtime.load()
    assert asyncio.run(_where(runtime, runtime.threads, 4)) == [False] * 4


def test_a_model_that_waits_never_runs_on_the_loop() -> None:
    # Sleeping uses no CPU: judged by CPU time alone it would look fast and stall the loop.
    runtime = _Recording(options={"sleep_s": 0.03})
    runtime.load()
    assert asyncio.run(_where(runtime, runtime.threads, 4)) == [False] * 4


def test_an_inline_call_that_overruns_sends_the_model_to_threads_for_good() -> None:
    # Fast twice (thread, then inline), then three inline calls hold the loop 8 ms each, each
    # after the probation in threads the one before earned: never inline again.
    probation = [0.0] * PROBATION_CALLS
    runtime, threads = _iris_runtime([0.0, 0.0, 0.008, *probation, 0.008, *probation, 0.008])
    calls = 3 * (1 + PROBATION_CALLS) + 10
    where = asyncio.run(_where(runtime, threads, calls, width=4))
    inline_at = [index for index, inline in enumerate(where) if inline]
    assert inline_at[:2] == [1, 2]  # the first overrun is call 2
    assert inline_at[-1] == 2 + 2 * (1 + PROBATION_CALLS)  # the third: in threads from there on


def test_one_inline_call_that_burns_cpu_sends_the_model_to_threads_at_once() -> None:
    runtime, threads = _iris_runtime([0.0, 0.0, -0.007])  # negative: spin 7 ms of CPU
    where = asyncio.run(_where(runtime, threads, 30, width=4))
    assert where == [False, True, True] + [False] * 27


def test_a_pipeline_with_a_function_transformer_never_runs_on_the_loop() -> None:
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(FunctionTransformer(np.abs), LogisticRegression(max_iter=500))
    runtime = SklearnRuntime()
    runtime.model = model.fit(x, y)
    assert not Predictor(runtime, None).inline


def test_a_thread_past_its_deadline_keeps_its_slot_and_the_model_sheds_with_503() -> None:
    """The caller gives up at the deadline; the thread runs on; new calls are refused, not piled."""

    async def run() -> tuple[type[BaseException], int, bool]:
        runtime = _Recording(options={"sleep_s": 0.4})
        runtime.load()
        with ThreadPoolExecutor(2) as pool:
            predictor = Predictor(runtime, pool, 2, timeout_s=0.1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(predictor({"x": np.zeros((1, 1))}, None), 0.15)
            await asyncio.sleep(0.05)  # past the deadline, the thread still sleeping
            try:
                await predictor({"x": np.zeros((1, 1))}, None)
            except UnavailableError as exc:
                refused: type[BaseException] = type(exc)
                retry_s = exc.retry_after_s or 0
            await asyncio.sleep(0.4)  # the thread ends: its slot comes back
            answered = bool(await predictor({"x": np.zeros((1, 1))}, None))
        return refused, retry_s, answered

    refused, retry_s, answered = asyncio.run(run())
    assert refused is UnavailableError
    assert retry_s >= 1
    assert answered


def test_a_slow_model_leaves_a_thread_for_the_others() -> None:
    """Eight calls of a waiting model (a shadow, say) must not queue another model.

    The slow calls wait until the other model has answered (or 30 s): queued behind them, the
    other call would time out instead.
    """
    release = threading.Event()

    async def run() -> list[str]:
        slow, other = _Recording(options={"release": release}), _Recording()
        slow.load()
        other.load()
        done: list[str] = []
        with ThreadPoolExecutor(2) as pool:
            predictors = {"slow": Predictor(slow, pool, 2), "other": Predictor(other, pool, 2)}

            async def call(name: str) -> None:
                await predictors[name]({"x": np.zeros((1, 1))}, None)
                done.append(name)

            calls = [asyncio.create_task(call("slow")) for _ in range(8)]
            await asyncio.sleep(0.01)  # the slow calls hold or wait for their threads
            try:
                await asyncio.wait_for(call("other"), 10)
            finally:
                release.set()
            await asyncio.gather(*calls)
        return done

    assert asyncio.run(run()) == ["other"] + ["slow"] * 8
