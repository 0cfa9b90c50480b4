"""Custom runtimes used by the tests through the import-path form of `--model`."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors

if TYPE_CHECKING:
    from collections.abc import Sequence


class SlowRuntime(Runtime):
    """Holds the CPU (a busy loop, GIL held in bursts) for `delay_s`, then echoes its input."""

    runtime_name: ClassVar[str] = "slow"

    def load(self) -> None:
        """Nothing to load."""
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Spin for the configured delay, then return the input doubled."""
        until = time.perf_counter() + float(self.options.get("delay_s", 0.2))
        while time.perf_counter() < until:
            sum(range(1000))
        (x,) = inputs.values()
        return {"output-0": np.asarray(x) * 2}

    def metadata(self) -> ModelSignature:
        """One FP32 input of any row count and width 2."""
        return ModelSignature(
            platform="slow",
            inputs=(TensorSpec("input-0", "FP32", (-1, 2)),),
            outputs=(TensorSpec("output-0", "FP32", (-1, 2)),),
            default_outputs=("output-0",),
        )


class BrokenIrisRuntime(Runtime):
    """An iris-shaped model that fails (`mode: fail`) or answers after `delay_s` of sleep.

    Sleeping, not spinning: a slow dependency holds no CPU, so only routing decides what the
    callers of other variants see.
    """

    runtime_name: ClassVar[str] = "broken-iris"

    def load(self) -> None:
        """Nothing to load."""
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Raise, or sleep and answer class 0 for every row."""
        if self.options.get("mode", "fail") == "fail":
            raise RuntimeError("this model always fails")
        time.sleep(float(self.options.get("delay_s", 1.0)))
        (x,) = inputs.values()
        return {"predict": np.zeros(len(x), dtype=np.int64)}

    def metadata(self) -> ModelSignature:
        """Four FP64 features named like iris'; one INT64 class per row."""
        return ModelSignature(
            platform="broken-iris",
            inputs=(TensorSpec("input-0", "FP64", (-1, 4)),),
            outputs=(TensorSpec("predict", "INT64", (-1,)),),
            default_outputs=("predict",),
            feature_names=tuple(self.options.get("feature_names", ())) or None,
        )


class _Echo(Runtime):
    """An iris-shaped echo: four FP64 features in, the same rows out (`output-0`)."""

    runtime_name: ClassVar[str] = "echo"

    def load(self) -> None:
        """Nothing to load."""
        self.ready = True

    def metadata(self) -> ModelSignature:
        """Four FP64 features; the same rows back."""
        return ModelSignature(
            platform=self.runtime_name,
            inputs=(TensorSpec("input-0", "FP64", (-1, 4)),),
            outputs=(TensorSpec("output-0", "FP64", (-1, 4)),),
            default_outputs=("output-0",),
        )

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Return the input."""
        (x,) = inputs.values()
        return {"output-0": np.asarray(x, dtype=np.float64)}


class FastThenSlowRuntime(_Echo):
    """Echoes at once for `fast_calls` calls, then sleeps `sleep_s` in every call.

    A model that earns the fast path and then stalls: it must never run on the event loop.
    """

    runtime_name: ClassVar[str] = "fast-then-slow"
    calls = 0

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Echo, sleeping once the fast calls are used up."""
        self.calls += 1
        if self.calls > int(self.options.get("fast_calls", 20)):
            time.sleep(float(self.options.get("sleep_s", 30.0)))
        return super().predict(inputs, outputs)


class SpinningRuntime(_Echo):
    """Echoes, but a row whose first feature is negative holds the CPU for `spin_s` first.

    Pure Python, so the GIL is held but for the interpreter's switches.
    """

    runtime_name: ClassVar[str] = "spinning"

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Spin on a negative first feature, then echo."""
        (x,) = inputs.values()
        if float(np.asarray(x)[0, 0]) < 0:
            until = time.perf_counter() + float(self.options.get("spin_s", 30.0))
            while time.perf_counter() < until:
                sum(range(1000))
        return super().predict(inputs, outputs)


class AbortingRuntime(_Echo):
    """Echoes, but a row whose first feature is negative calls `os.abort()` (SIGABRT)."""

    runtime_name: ClassVar[str] = "aborting"

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Abort the process on a negative first feature, else echo."""
        (x,) = inputs.values()
        if float(np.asarray(x)[0, 0]) < 0:
            os.abort()
        return super().predict(inputs, outputs)


class LeakingRuntime(_Echo):
    """Keeps `leak_mb` more megabytes alive after every call (a leaking model)."""

    runtime_name: ClassVar[str] = "leaking"

    def load(self) -> None:
        """Start with nothing held."""
        self.held: list[bytearray] = []
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Leak, then echo; `pid` says which process answered."""
        chunk = bytearray(int(float(self.options.get("leak_mb", 50)) * 1024 * 1024))
        chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page: resident, not reserved
        self.held.append(chunk)
        result = super().predict(inputs, outputs)
        result["output-0"][:, 0] = os.getpid()
        return result


class CpuBurnRuntime(_Echo):
    """Echoes after using `burn_s` seconds of CPU (its thread's: preemption does not count)."""

    runtime_name: ClassVar[str] = "cpu-burn"

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Spin until this thread has run for `burn_s` seconds of CPU, then echo."""
        until = time.thread_time() + float(self.options.get("burn_s", 0.02))
        while time.thread_time() < until:
            sum(range(200))
        return super().predict(inputs, outputs)
