"""ONNX runtime: `.onnx` graphs served by an onnxruntime `InferenceSession` on the CPU.

Inputs and outputs are the session's own, with ONNX element types mapped to V2 datatypes and
symbolic or unknown dimensions reported as -1. A `seq(map(key, float))` output (what skl2onnx's
ZipMap gives classifiers unless they are converted with `zipmap=False`) is answered as a 2-D FP32
array of probabilities, one column per map key in the map's order; it is declared with shape
`[-1, -1]` because the session does not say how many keys there are, and it is not among the
default outputs. Outputs of any other non-tensor type (sequences of tensors, optionals) are left
out of the signature. The option `default_outputs` (a list of output names) narrows what a request
that names no outputs gets: `deploy(optimize=True)` sets it to `["predict"]`, so the converted
scikit-learn model answers as the original did.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nstarx_jupyter.errors import ForbiddenError, InvalidInputError, ModelLoadError, require
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors, find_artifact
from nstarx_jupyter.runtimes.devices import onnx_providers, wanted_device

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ["ONNXRuntime"]

_DIR_NAME = "model.onnx"
_SEQ_MAP = "seq(map("
_DATATYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


class ONNXRuntime(Runtime):
    """Serves an ONNX graph with onnxruntime's CPU execution provider."""

    runtime_name: ClassVar[str] = "onnx"
    session: Any = None
    _signature: ModelSignature | None = None

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """Say whether `path` is an `.onnx` file or a folder holding `model.onnx`."""
        return _artifact(path) is not None

    @classmethod
    def check_artifact(cls, path: Path, options: Mapping[str, Any]) -> None:
        """Every tensor's data lies in the model's folder and holds the bytes its shape declares.

        Checked with the `onnx` package when it is installed (without it, onnxruntime makes
        the same checks when the session opens).
        """
        artifact = _artifact(path)
        if artifact is None:
            return
        try:
            import onnx
        except ImportError:
            return
        try:
            model = onnx.load(str(artifact), load_external_data=False)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ModelLoadError(f"cannot read {artifact}: {exc}") from exc
        for tensor in _tensors(model.graph):
            _check_tensor(onnx, tensor, artifact)

    def load(self) -> None:
        """Open an inference session on one intra-op thread unless the options say otherwise.

        Options `intra_op_num_threads` and `inter_op_num_threads` (both 1 by default: a server
        shares its cores between models and requests) tune the session; `device` picks its
        execution providers (`nstarx_jupyter.runtimes.devices`).
        """
        artifact = _artifact(self.path) if self.path is not None else None
        if artifact is None:
            raise ModelLoadError(
                f"no ONNX model (.onnx or a folder with {_DIR_NAME}) at {self.path}"
            )
        ort = require("onnxruntime", "onnx")
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = int(self.options.get("intra_op_num_threads", 1))
        session_options.inter_op_num_threads = int(self.options.get("inter_op_num_threads", 1))
        providers = onnx_providers(ort, wanted_device(self.options))
        try:
            session = ort.InferenceSession(str(artifact), session_options, providers=providers)
        except Exception as exc:  # onnxruntime raises a dozen unrelated pybind11 exception types
            raise ModelLoadError(f"cannot load {artifact}: {exc}") from exc
        self._signature = _signature(session, self.options)
        self.session = session
        self.device = session.get_providers()[0]  # what the session took, not what was asked
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Run the session for the requested outputs (every tensor output by default)."""
        signature = self.metadata()
        wanted = list(outputs or signature.default_outputs)
        known = signature.output_names()
        self.check_outputs(wanted, known)
        invalid = require("onnxruntime.capi.onnxruntime_pybind11_state", "onnx").InvalidArgument
        try:
            values = self.session.run(wanted, dict(inputs))
        except (invalid, ValueError, TypeError) as exc:
            raise InvalidInputError(f"the model rejected the input: {exc}") from exc
        return {name: _as_array(value) for name, value in zip(wanted, values, strict=True)}

    def metadata(self) -> ModelSignature:
        """Return the signature read from the session's inputs and outputs at load."""
        if self._signature is None:
            raise ModelLoadError("the ONNX model is not loaded")
        return self._signature

    def unload(self) -> None:
        """Close the session and forget its signature."""
        self._signature = None
        super().unload()


def _signature(session: Any, options: Any) -> ModelSignature:
    inputs = []
    for arg in session.get_inputs():
        if arg.type not in _DATATYPES:
            raise ModelLoadError(f"input '{arg.name}' has type {arg.type}, which is not a tensor")
        inputs.append(TensorSpec(arg.name, _DATATYPES[arg.type], _shape(arg.shape)))
    outputs = []
    for arg in session.get_outputs():
        if arg.type in _DATATYPES:
            outputs.append(TensorSpec(arg.name, _DATATYPES[arg.type], _shape(arg.shape)))
        elif arg.type.startswith(_SEQ_MAP):
            outputs.append(TensorSpec(arg.name, "FP32", (-1, -1)))
    tensors = tuple(arg.name for arg in session.get_outputs() if arg.type in _DATATYPES)
    wanted = options.get("default_outputs")
    if wanted:
        unknown = [name for name in wanted if name not in tensors]
        if unknown:
            raise ModelLoadError(f"default_outputs: the model has no tensor output {unknown[0]!r}")
        tensors = tuple(str(name) for name in wanted)
    names = options.get("feature_names")
    labels = options.get("class_labels")
    return ModelSignature(
        platform="onnx",
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        default_outputs=tensors,
        feature_names=tuple(names) if names else None,
        class_labels=tuple(labels) if labels else None,
    )


def _shape(dims: Sequence[Any]) -> tuple[int, ...]:
    return tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in dims)


def _as_array(value: Any) -> np.ndarray[Any, Any]:
    if isinstance(value, list) and (not value or isinstance(value[0], dict)):
        rows = [list(row.values()) for row in value]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    return np.asarray(value)


_EMBEDDED_MAX_BYTES = 2**31
"""Protobuf's limit: a tensor declaring more without external data cannot hold it."""


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def _check_tensor(onnx: Any, tensor: Any, artifact: Path) -> None:
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return  # strings and odd types: onnxruntime judges them
    declared = int(np.prod(tensor.dims, dtype=np.float64)) * itemsize
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        folder = artifact.parent.resolve()
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ForbiddenError(
                f"{artifact}: tensor '{tensor.name}' reads '{location}', outside the model's folder"
            )
        held = target.stat().st_size - int(entries.get("offset", 0)) if target.is_file() else 0
    elif tensor.raw_data:
        held = len(tensor.raw_data)
    else:
        held = declared if declared <= _EMBEDDED_MAX_BYTES else 0
    if declared > held:
        raise ModelLoadError(
            f"{artifact}: tensor '{tensor.name}' declares {declared} bytes but holds {held}"
        )


def _artifact(path: Path | None) -> Path | None:
    return find_artifact(path, (_DIR_NAME,), lambda file: file.suffix == ".onnx")
