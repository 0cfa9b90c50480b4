"""Fitted PyTorch modules and Keras models, made servable with a signature from `input_example`.

`deploy(module, "name", input_example=x)` cannot stage a `torch.nn.Module` or a `keras.Model` as
it stages a scikit-learn model: neither framework's object carries the dtypes and shapes a server
must check requests against, and pickling them would make a file that runs code on load. So:

- a PyTorch module is exported to ONNX (`torch.onnx.export`, run on `input_example`, with a
  dynamic batch dimension; inputs named as `forward`'s arguments, outputs `output` or the keys of
  a returned dict): data only, served by the ONNX runtime, registered with MLflow's ONNX flavour
  and deployable to KServe like any ONNX model;
- a Keras model is saved as `.keras` in a staging folder, beside a `model-settings.json` holding
  the signature `input_example` gives (inputs, outputs, batch -1), and served by the Keras
  runtime with Keras' safe loader (no `trusted` needed unless a layer carries Python code).
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import json
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from nstarx_jupyter.config import atomic_write, nstarx_home
from nstarx_jupyter.errors import InvalidInputError, require
from nstarx_jupyter.protocol.datatypes import datatype_named

__all__ = ["example_options", "is_keras_model", "is_torch_module", "keras_folder", "servable",
           "torch_to_onnx"]  # fmt: skip

_SCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript")


def _defined_in(model: Any, package: str) -> bool:
    return any(cls.__module__.partition(".")[0] == package for cls in type(model).__mro__)


def is_torch_module(model: Any) -> bool:
    """Whether `model` is a `torch.nn.Module` (told without importing torch)."""
    return _defined_in(model, "torch") and hasattr(model, "state_dict") and callable(model)


def is_keras_model(model: Any) -> bool:
    """Whether `model` is a Keras model (told without importing Keras)."""
    return _defined_in(model, "keras") and hasattr(model, "save") and callable(model)


def servable(model: Any, name: str, input_example: Any) -> tuple[Any, Any]:
    """A PyTorch module as ONNX, a Keras model as its staged folder; other objects unchanged.

    Returns the model (or folder) to deploy and the example to register with it.

    Raises:
        InvalidInputError: a PyTorch or Keras model without `input_example`, or one that the
            example does not run through.
    """
    torch_module, keras_model = is_torch_module(model), is_keras_model(model)
    if not (torch_module or keras_model):
        return model, input_example
    framework = "PyTorch module" if torch_module else "Keras model"
    if input_example is None:
        raise InvalidInputError(
            f"deploy: a {framework} needs input_example= (an array or tensor of a few rows, or "
            "a tuple or dict of them): it fixes the inputs' names, dtypes and shapes"
        )
    if torch_module:
        return torch_to_onnx(model, input_example), None
    return keras_folder(model, name, input_example), None


def example_options(model_or_uri: Any, input_example: Any) -> dict[str, Any]:
    """A TorchScript file named with `input_example`: its runtime's `example_input` option.

    A TorchScript archive records no dtypes or shapes; the PyTorch runtime derives them by
    running the example once at load (so no hand-written `model-settings.json` is needed).
    """
    if input_example is None or not isinstance(model_or_uri, str | Path):
        return {}
    path = Path(model_or_uri).expanduser()
    scripts = [path] if path.is_file() else [path / f"model{s}" for s in _SCRIPT_SUFFIXES]
    if not any(p.suffix in _SCRIPT_SUFFIXES and p.is_file() for p in scripts):
        return {}
    if isinstance(input_example, dict):
        return {"example_input": {str(k): _numpy(v).tolist() for k, v in input_example.items()}}
    return {"example_input": _numpy(input_example).tolist()}


def torch_to_onnx(module: Any, example: Any) -> Any:
    """`module` exported to an ONNX `ModelProto`, traced on `example` with a dynamic batch."""
    torch = require("torch", "torch")
    onnx = require("onnx", "onnx")
    args, kwargs, names = _torch_example(torch, module, example)
    with torch.inference_mode():
        result = module(*args, **kwargs)
    outputs = [str(key) for key in result] if isinstance(result, dict) else (
        ["output"] if isinstance(result, torch.Tensor) else
        [f"output-{i}" for i in range(len(result))])  # fmt: skip
    batch = {name: {0: "batch"} for name in [*names, *outputs]}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the TorchScript-based exporter warns it is legacy
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (*args, kwargs) if kwargs else tuple(args), buffer,
                              input_names=names, output_names=outputs, dynamic_axes=batch,
                              dynamo=_has_onnxscript())  # fmt: skip
    except Exception as exc:  # the exporters raise many types for an unsupported operator
        raise InvalidInputError(
            f"deploy: the PyTorch module could not be exported to ONNX ({exc}); save it with "
            "torch.export.save(...) as model.pt2 and deploy that file"
        ) from exc
    return onnx.load_from_string(buffer.getvalue())


def _has_onnxscript() -> bool:
    """Whether torch's dynamo exporter can run (it needs onnxscript); found, not imported."""
    return importlib.util.find_spec("onnxscript") is not None


def _torch_example(
    torch: Any, module: Any, example: Any
) -> tuple[list[Any], dict[str, Any], list[str]]:
    """Positional and keyword tensors from `example`, on the module's device and float dtype."""
    parameter = next(iter(module.parameters()), None)
    device = parameter.device if parameter is not None else "cpu"
    floating = parameter.dtype if parameter is not None else torch.float32

    def tensor(value: Any) -> Any:
        made = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        return (made.to(floating) if made.is_floating_point() else made).to(device)

    params = [name for name, p in inspect.signature(module.forward).parameters.items()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip
    if isinstance(example, dict):
        kwargs = {str(key): tensor(value) for key, value in example.items()}
        return [], kwargs, list(kwargs)
    values = list(example) if isinstance(example, tuple) else [example]
    names = params[: len(values)] if len(params) >= len(values) else [
        f"input-{i}" for i in range(len(values))]  # fmt: skip
    return [tensor(value) for value in values], {}, names


def keras_folder(model: Any, name: str, example: Any) -> Path:
    """Save `model` as `model.keras` with its signature in a fresh staging folder; returns it."""
    inputs = {str(k): np.asarray(v) for k, v in example.items()} if isinstance(example, dict) \
        else {"input": np.asarray(example)}  # fmt: skip
    arrays = list(inputs.values())
    try:
        result = model(arrays[0] if len(arrays) == 1 else arrays, training=False)
    except Exception as exc:
        raise InvalidInputError(
            f"deploy: the Keras model did not run on input_example: {exc}"
        ) from exc
    named = (dict(result) if isinstance(result, dict) else
             {f"output-{i}": v for i, v in enumerate(result)} if isinstance(result, list | tuple)
             else {"output": result})  # fmt: skip
    symbolic = getattr(model, "inputs", None) or []
    if not isinstance(example, dict) and len(symbolic) == 1:  # its Input's name and dtype
        array = arrays[0].astype(str(symbolic[0].dtype), copy=False)
        inputs = {str(getattr(symbolic[0], "name", None) or "input"): array}
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder = nstarx_home() / "staging" / name / stem
    folder.mkdir(parents=True)
    with warnings.catch_warnings():  # TensorFlow's variables warn on NumPy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        model.save(folder / "model.keras")
    signature = {"inputs": [_spec(k, v) for k, v in inputs.items()],
                 "outputs": [_spec(k, _numpy(v)) for k, v in named.items()]}  # fmt: skip
    atomic_write(folder / "model-settings.json",
                 json.dumps({"runtime": "keras", "options": signature}))  # fmt: skip
    return folder


def _numpy(value: Any) -> np.ndarray[Any, Any]:
    """A framework tensor as an array (`.numpy()` where it has one: no copy-keyword warning)."""
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _spec(name: str, array: np.ndarray[Any, Any]) -> dict[str, Any]:
    datatype = datatype_named(str(array.dtype))
    if datatype is None:
        raise InvalidInputError(f"input_example: '{name}' has dtype {array.dtype}, no V2 datatype")
    shape = [-1, *array.shape[1:]] if array.ndim else []
    return {"name": name, "datatype": datatype, "shape": shape}
