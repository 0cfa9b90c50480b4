"""Where a prediction runs: fast models on the event loop, slow or waiting ones in threads."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors
from nstarx_jupyter.serving.predictor import Predictor

if TYPE_CHECKING:
    from collections.abc import Sequence


class _Recording(Runtime):
    """Echoes its input after `sleep_s` of sleep, remembering the thread it ran on."""

    runtime_name: ClassVar[str] = "recording"

    def load(self) -> None:
        self.threads: list[int] = []

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        self.threads.append(threading.get_ident())
        time.sleep(float(self.options.get("sleep_s", 0)))
        return dict(inputs)

    def metadata(self) -> ModelSignature:
        spec = TensorSpec("x", "FP64", (-1, 1))
        return ModelSignature(platform="recording", inputs=(spec,), outputs=(spec,))


async def _where(sleep_s: float, calls: int) -> list[bool]:
    """For each call, whether it ran on the event loop's thread."""
    runtime = _Recording(options={"sleep_s": sleep_s})
    runtime.load()
    with ThreadPoolExecutor(2) as pool:
        predictor = Predictor(runtime, pool)
        for _ in range(calls):
            await predictor({"x": np.zeros((1, 1))}, None)
    loop_thread = threading.get_ident()
    return [ident == loop_thread for ident in runtime.threads]


def test_a_fast_model_moves_onto_the_loop_after_its_first_call() -> None:
    assert asyncio.run(_where(0.0, 4)) == [False, True, True, True]


def test_a_model_that_waits_never_runs_on_the_loop() -> None:
    # Sleeping uses no CPU: judged by CPU time alone it would look fast and stall the loop.
    assert asyncio.run(_where(0.03, 4)) == [False, False, False, False]


def test_a_slow_model_leaves_a_thread_for_the_others() -> None:
    """Eight 0.3 s calls of a waiting model (a shadow, say) must not queue another model."""

    async def run() -> list[str]:
        slow, other = _Recording(options={"sleep_s": 0.3}), _Recording()
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
            await call("other")
            await asyncio.gather(*calls)
        return done

    assert asyncio.run(run())[0] == "other"
