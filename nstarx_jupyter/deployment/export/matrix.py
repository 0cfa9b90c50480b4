"""What the framework converters export: a model taking one matrix (rows, features)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstarx_jupyter.errors import UnsupportedError

if TYPE_CHECKING:
    from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec

__all__ = ["matrix_input"]


def matrix_input(signature: ModelSignature) -> TensorSpec:
    """The signature's one input, or UnsupportedError naming every input it has instead."""
    if len(signature.inputs) != 1 or len(signature.inputs[0].shape) != 2:
        raise UnsupportedError(
            "only models taking one matrix (rows, features) are exported; this one takes "
            + ", ".join(f"{s.name} {list(s.shape)}" for s in signature.inputs)
        )
    return signature.inputs[0]
