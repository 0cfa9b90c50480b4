"""TensorFlow runtime: SavedModel folders, served through one of their signatures.

The signature is `serving_default` unless the `signature` option names another (a SavedModel with a
single signature of another name is served through that one). Inputs and outputs are the
signature's own (sorted by name, as TensorFlow flattens them): names, dtypes and shapes from its
`TensorSpec`s, with unknown dimensions as -1.
A Keras model is served once exported as a SavedModel (`model.export(path)`); `.keras` files
are the Keras runtime's (`nstarx_jupyter.runtimes.keras`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nstarx_jupyter.errors import InvalidInputError, ModelLoadError, require
from nstarx_jupyter.protocol.datatypes import datatype_named
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors
from nstarx_jupyter.runtimes.devices import tf_device, wanted_device

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["TensorFlowRuntime"]

SAVED_MODEL_FILE = "saved_model.pb"
DEFAULT_SIGNATURE = "serving_default"


class TensorFlowRuntime(Runtime):
    """Serves a SavedModel's signature function."""

    runtime_name: ClassVar[str] = "tensorflow"
    model: Any = None
    _function: Any = None
    _signature: ModelSignature | None = None

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """Say whether `path` is a SavedModel folder (it holds `saved_model.pb`)."""
        return path.is_dir() and (path / SAVED_MODEL_FILE).is_file()

    @classmethod
    def runs_code_on_load(cls, path: Path) -> bool:
        """A SavedModel is a program: its graph may read and write files when it runs."""
        return True

    def load(self) -> None:
        """Load the SavedModel and read its signature's inputs and outputs.

        TensorFlow's thread pools are set to `options["intra_op_num_threads"]` and
        `options["inter_op_num_threads"]` (1 by default: a server shares its cores) when this is
        the first model of the process; TensorFlow fixes them once it has started. The model
        loads and runs on the `device` option's device (`nstarx_jupyter.runtimes.devices`).
        """
        if self.path is None or not self.can_load(self.path):
            raise ModelLoadError(f"no SavedModel ({SAVED_MODEL_FILE}) at {self.path}")
        tf = require("tensorflow", "tensorflow")
        _limit_threads(tf, self.options)
        self.device = tf_device(tf, wanted_device(self.options))
        try:
            with tf.device(self.device):
                model = tf.saved_model.load(str(self.path))
        except (OSError, ValueError, tf.errors.OpError) as exc:
            raise ModelLoadError(f"cannot load {self.path}: {exc}") from exc
        function = _signature_function(model, self.options.get("signature"), self.path)
        self._signature = _signature(function, self.options)
        self.model, self._function = model, function
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Call the signature function with the inputs by name; it computes every output."""
        signature, wanted = self.signature_and_outputs(outputs)
        tf = require("tensorflow", "tensorflow")
        if len(signature.inputs) == 1 and len(inputs) == 1:
            feed = {signature.inputs[0].name: next(iter(inputs.values()))}
        else:
            feed = dict(inputs)
        try:
            with tf.device(self.device):
                result = self._function(**{n: tf.constant(v) for n, v in feed.items()})
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as exc:
            raise InvalidInputError(f"the model rejected the input: {_first_line(exc)}") from exc
        return {name: np.asarray(result[name].numpy()) for name in wanted}

    def served_function(self) -> Any:
        """The SavedModel's signature function this runtime calls (exporters trace it)."""
        if self._function is None:
            raise ModelLoadError("the TensorFlow model is not loaded")
        return self._function

    def metadata(self) -> ModelSignature:
        """Return the signature read at load."""
        if self._signature is None:
            raise ModelLoadError("the TensorFlow model is not loaded")
        return self._signature

    def unload(self) -> None:
        """Drop the SavedModel, its signature function and its signature."""
        self._function = None
        self._signature = None
        super().unload()


def _limit_threads(tf: Any, options: Mapping[str, Any]) -> None:
    threading = tf.config.threading
    with contextlib.suppress(RuntimeError):  # raised once TensorFlow has started its pools
        threading.set_intra_op_parallelism_threads(int(options.get("intra_op_num_threads", 1)))
        threading.set_inter_op_parallelism_threads(int(options.get("inter_op_num_threads", 1)))


def _signature_function(model: Any, name: str | None, path: Path) -> Any:
    signatures = dict(model.signatures)
    if name is None:
        name = DEFAULT_SIGNATURE
        if name not in signatures and len(signatures) == 1:
            name = next(iter(signatures))
    if name not in signatures:
        have = ", ".join(signatures) or "none"
        raise ModelLoadError(f"{path} has no signature '{name}' (it has: {have})")
    return signatures[name]


def _signature(function: Any, options: Mapping[str, Any]) -> ModelSignature:
    args, kwargs = function.structured_input_signature
    if args:
        raise ModelLoadError("the signature takes positional inputs; serving needs named ones")
    # A SavedModel keeps these as protobuf maps, whose order varies between processes: sort them.
    inputs = tuple(_spec(name, kwargs[name]) for name in sorted(kwargs))
    structured = function.structured_outputs
    if not isinstance(structured, dict):
        raise ModelLoadError("the signature does not return a dict of named outputs")
    outputs = tuple(_spec(name, structured[name]) for name in sorted(structured))
    names, labels = options.get("feature_names"), options.get("class_labels")
    return ModelSignature(
        platform="tensorflow",
        inputs=inputs,
        outputs=outputs,
        default_outputs=tuple(spec.name for spec in outputs),
        feature_names=tuple(names) if names else None,
        class_labels=tuple(labels) if labels else None,
    )


def _spec(name: str, spec: Any) -> TensorSpec:
    dtype = spec.dtype.name
    datatype = datatype_named(dtype)
    if datatype is None:
        raise ModelLoadError(f"tensor '{name}' has dtype {dtype}, which has no V2 datatype")
    dims = spec.shape.as_list() if spec.shape.rank is not None else None
    if dims is None:
        raise ModelLoadError(f"tensor '{name}' has an unknown rank")
    return TensorSpec(name, datatype, tuple(-1 if dim is None else dim for dim in dims))


def _first_line(exc: BaseException) -> str:
    """TensorFlow's graph errors run to many lines of node names; keep the informative ones."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    noise = ("Graph execution", "Detected at", "<stack traces")
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [type(exc).__name__])[0].strip()
