"""Custom runtimes used by the tests through the import-path form of `--model`."""

from __future__ import annotations

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
