"""Keras runtime: `.keras` files (Keras 3's own format), loaded with Keras' safe loader.

A `.keras` file is a zip of `config.json` (the architecture) and the weights: data, as long as no
layer carries Python bytecode. Keras' `safe_mode` refuses such layers (`Lambda` with a Python
function) at load; a file that holds one is a program, so it needs `trusted` like a pickle
(`runs_code_on_load` reads `config.json` without rebuilding anything), and only then may the
`safe_mode: false` option load it.

The signature is the options' `inputs`/`outputs` lists (`{"name", "datatype", "shape"}`, which
`deploy(keras_model, ..., input_example=x)` writes into `model-settings.json`), else the model's
own symbolic inputs and outputs. Inputs arrive in the signature's order; the model runs on the
`device` option's device (`nstarx_jupyter.runtimes.devices`) under the TensorFlow backend.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nstarx_jupyter.errors import InvalidInputError, ModelLoadError, NstarxError, require
from nstarx_jupyter.protocol.datatypes import datatype_named, numpy_dtype
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors, find_artifact
from nstarx_jupyter.runtimes.devices import tf_device, wanted_device

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["KerasRuntime"]

SUFFIX = ".keras"
_DIR_NAME = f"model{SUFFIX}"
_CODE_MARKERS = ('"class_name": "Lambda"', '"__lambda__"', '"class_name": "TFOpLambda"')


class KerasRuntime(Runtime):
    """Serves a `.keras` model."""

    runtime_name: ClassVar[str] = "keras"
    model: Any = None
    _signature: ModelSignature | None = None

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """Say whether `path` is a `.keras` file (or a folder holding `model.keras`)."""
        return _artifact(path) is not None

    @classmethod
    def runs_code_on_load(cls, path: Path) -> bool:
        """Whether a layer carries Python code (a `Lambda` layer's function)."""
        artifact = _artifact(path)
        if artifact is None:
            return False
        text = json.dumps(_config(artifact), sort_keys=True)
        return any(marker in text for marker in _CODE_MARKERS)

    def load(self) -> None:
        """Load the model with `safe_mode` (unless the trusted option says otherwise)."""
        artifact = _artifact(self.path) if self.path is not None else None
        if artifact is None:
            raise ModelLoadError(f"no Keras model ({SUFFIX}) at {self.path}")
        keras = require("keras", "tensorflow")
        tf = require("tensorflow", "tensorflow")
        self.device = tf_device(tf, wanted_device(self.options))
        safe = bool(self.options.get("safe_mode", True))
        try:
            with tf.device(self.device), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # NumPy 2's copy keyword
                model = keras.saving.load_model(str(artifact), compile=False, safe_mode=safe)
            signature = _signature(model, self.options)
        except NstarxError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load {artifact}: {exc}") from exc
        self.model, self._signature = model, signature
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Call the model on the inputs in the signature's order and name what it returns."""
        signature, wanted = self.signature_and_outputs(outputs)
        known = signature.output_names()
        tf = require("tensorflow", "tensorflow")
        arrays = self.ordered_inputs(signature, inputs)
        try:
            with tf.device(self.device):
                result = self.model(arrays[0] if len(arrays) == 1 else arrays, training=False)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as exc:
            raise InvalidInputError(f"the model rejected the input: {exc}") from exc
        values = list(result.values()) if isinstance(result, dict) else result
        values = values if isinstance(values, list | tuple) else [values]
        named = {
            name: np.asarray(value.numpy() if hasattr(value, "numpy") else value)
            for name, value in zip(known, values, strict=True)
        }
        return {name: named[name] for name in wanted}

    def metadata(self) -> ModelSignature:
        """Return the signature derived at load."""
        if self._signature is None:
            raise ModelLoadError("the Keras model is not loaded")
        return self._signature

    def unload(self) -> None:
        """Drop the model and its signature."""
        self._signature = None
        super().unload()


def _signature(model: Any, options: Mapping[str, Any]) -> ModelSignature:
    if "inputs" in options and "outputs" in options:
        inputs, outputs = _specs(options["inputs"]), _specs(options["outputs"])
    else:
        inputs = tuple(_symbolic(t.name, t) for t in model.inputs)
        names = [f"output-{i}" for i in range(len(model.outputs))]
        outputs = tuple(_symbolic(n, t) for n, t in zip(names, model.outputs, strict=True))
    labels = options.get("class_labels")
    return ModelSignature(platform="keras", inputs=inputs, outputs=outputs,
                          default_outputs=tuple(spec.name for spec in outputs),
                          class_labels=tuple(labels) if labels else None)  # fmt: skip


def _symbolic(name: str, tensor: Any) -> TensorSpec:
    datatype = datatype_named(str(tensor.dtype))
    if datatype is None:
        raise ModelLoadError(f"tensor '{name}' has dtype {tensor.dtype}, which has no V2 datatype")
    return TensorSpec(
        name, datatype, tuple(-1 if dim is None else int(dim) for dim in tensor.shape)
    )


def _specs(raw: Any) -> tuple[TensorSpec, ...]:
    try:
        specs = tuple(TensorSpec(str(item["name"]), item["datatype"], tuple(item["shape"]))
                      for item in raw)  # fmt: skip
        for spec in specs:
            numpy_dtype(spec.datatype)
    except (KeyError, TypeError, InvalidInputError) as exc:
        raise ModelLoadError(f"bad Keras signature {raw!r}: {exc}") from exc
    if not specs:
        raise ModelLoadError("the Keras signature needs at least one input and one output")
    return specs


def _config(artifact: Path) -> Any:
    try:
        with zipfile.ZipFile(artifact) as archive:
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{artifact} is not a .keras file: {exc}") from exc


def _is_keras(path: Path) -> bool:
    if path.suffix != SUFFIX or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "config.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _artifact(path: Path | None) -> Path | None:
    return find_artifact(path, (_DIR_NAME,), _is_keras)
