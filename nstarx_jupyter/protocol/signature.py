"""What a model takes and returns: named, typed, shaped tensors, and how a request binds to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.datatypes import numpy_dtype

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

__all__ = ["ModelSignature", "TensorSpec", "bind_inputs"]

_NUMERIC_KINDS = "biuf"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named tensor; `-1` in `shape` is a variable dimension (the batch, usually)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the V2 metadata form `{"name", "datatype", "shape"}`."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """A model's inputs and outputs, derived from the loaded model.

    `feature_names` names the columns of a single 2-D input (used by the records endpoint);
    `class_labels` are a classifier's labels in `predict_proba` column order.
    """

    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    default_outputs: tuple[str, ...] = ()
    feature_names: tuple[str, ...] | None = None
    class_labels: tuple[Any, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec | None:
        """Return the input spec called `name`, if any."""
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output_names(self) -> tuple[str, ...]:
        """Return every output's name."""
        return tuple(spec.name for spec in self.outputs)


def bind_inputs(
    signature: ModelSignature, inputs: Mapping[str, np.ndarray[Any, Any]]
) -> dict[str, np.ndarray[Any, Any]]:
    """Match request tensors to the model's inputs, casting numbers and checking shapes.

    A model with one input takes one tensor of any name (as KServe's and MLServer's runtimes do);
    otherwise every input must be present under its own name.

    Raises:
        InvalidInputError: an input is missing or unknown, or its datatype or shape does not fit.
    """
    if len(signature.inputs) == 1 and len(inputs) == 1:
        spec = signature.inputs[0]
        (array,) = inputs.values()
        return {spec.name: _fit(spec, array)}
    if not inputs:
        raise InvalidInputError("request has no inputs")
    expected = {spec.name for spec in signature.inputs}
    unknown = sorted(set(inputs) - expected)
    if unknown:
        raise InvalidInputError(
            f"unknown input '{unknown[0]}'; the model takes {', '.join(sorted(expected))}"
        )
    missing = [spec.name for spec in signature.inputs if spec.name not in inputs]
    if missing:
        raise InvalidInputError(f"missing input '{missing[0]}'")
    return {spec.name: _fit(spec, inputs[spec.name]) for spec in signature.inputs}


def _fit(spec: TensorSpec, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    want = numpy_dtype(spec.datatype)
    if array.dtype != want:
        got_numeric = array.dtype.kind in _NUMERIC_KINDS
        if got_numeric != (want.kind in _NUMERIC_KINDS):
            got = _name(array)
            raise InvalidInputError(
                f"input '{spec.name}' has datatype {got}; the model expects {spec.datatype}"
            )
        array = array.astype(want, copy=False)
    if len(spec.shape) == 1 and array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)  # one column sent as [N, 1], as pandas codecs do
    if len(spec.shape) != array.ndim or any(
        dim not in (-1, got) for dim, got in zip(spec.shape, array.shape, strict=True)
    ):
        raise InvalidInputError(
            f"input '{spec.name}' has shape {list(array.shape)}; the model expects "
            f"{list(spec.shape)} (-1 is any size)"
        )
    return array


def _name(array: np.ndarray[Any, Any]) -> str:
    return "BYTES" if array.dtype.kind in "OSU" else str(array.dtype).upper()
