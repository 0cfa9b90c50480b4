"""A custom runtime with no artifact, loaded through the import-path form of `--model`."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors

if TYPE_CHECKING:
    from collections.abc import Sequence


class EchoRuntime(Runtime):
    """Returns its single input unchanged as `echo`; options `datatype` and `width` shape it."""

    runtime_name: ClassVar[str] = "echo"
    model: object | None = None

    def load(self) -> None:
        """Nothing to read: the "model" is a marker object, so tests can watch it being freed."""
        self.model = _Marker()
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Return the input as the `echo` output."""
        for name in outputs or ():
            if name != "echo":
                raise InvalidInputError(f"unknown output '{name}'; the model has echo")
        (x,) = inputs.values()
        return {"echo": x}

    def metadata(self) -> ModelSignature:
        """One input and one output of the configured datatype, any rows, `width` columns."""
        datatype = str(self.options.get("datatype", "FP32"))
        shape = (-1, int(self.options.get("width", -1)))
        return ModelSignature(
            platform="echo",
            inputs=(TensorSpec("input-0", datatype, shape),),
            outputs=(TensorSpec("echo", datatype, shape),),
            default_outputs=("echo",),
        )


class _Marker:
    """Stands for a model object (plain `object()` cannot be weakly referenced)."""
