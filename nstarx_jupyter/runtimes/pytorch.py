"""PyTorch runtime: TorchScript archives (`torch.jit.save`) and `torch.export` programs (`.pt2`).

A `torch.export` program carries its whole signature: inputs are named as `forward`'s arguments,
and every input's and output's dtype and shape come from the exported graph (a dynamic dimension,
such as a batch exported with `torch.export.Dim`, is -1). Outputs are named by the keys of a
returned dict, or `output-<i>` in the order `forward` returns them.

A TorchScript archive only carries `forward`'s argument names, so its signature comes from the
first of:

1. options `inputs` and `outputs`: lists of `{"name", "datatype", "shape"}` (V2 datatypes);
2. an `nstarx.json` file saved inside the archive (our own convention), holding the same
   `inputs`/`outputs` lists and optionally `feature_names` and `class_labels`::

       torch.jit.save(module, "model.pt", _extra_files={"nstarx.json": json.dumps(signature)})

3. option `example_input`: an array or nested list (one input), or a mapping of `forward`'s
   argument names to arrays; it is run once at load and its first dimension is the batch (-1).

Without any of them the archive cannot be described and `load` raises `ModelLoadError`.

`load` sets `torch.set_num_threads(options.get("num_threads", 1))` (process-wide: a server shares
its cores) and puts the module on the `device` option's device (a CUDA GPU when torch sees one,
see `nstarx_jupyter.runtimes.devices`); `predict` runs under `torch.inference_mode()` with the
inputs in `forward`'s order, moved to that device, and answers from the CPU.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nstarx_jupyter.errors import InvalidInputError, ModelLoadError, NstarxError, require
from nstarx_jupyter.protocol.datatypes import datatype_named, numpy_dtype
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors, find_artifact
from nstarx_jupyter.runtimes.devices import torch_device, wanted_device

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["PyTorchRuntime"]

SCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript")
EXPORT_SUFFIX = ".pt2"
SIGNATURE_FILE = "nstarx.json"
_DIR_NAMES = tuple(f"model{suffix}" for suffix in (*SCRIPT_SUFFIXES, EXPORT_SUFFIX))


class PyTorchRuntime(Runtime):
    """Serves a TorchScript module or a `torch.export` program (on a GPU when one answers)."""

    runtime_name: ClassVar[str] = "pytorch"
    module: Any = None
    _signature: ModelSignature | None = None

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """Say whether `path` is a TorchScript or `torch.export` archive (or a folder of one).

        The archive's zip entries decide, so a pickled `state_dict` saved as `.pt` is not claimed.
        """
        return _artifact(path) is not None

    @classmethod
    def runs_code_on_load(cls, path: Path) -> bool:
        """TorchScript and `torch.export` archives are programs (their pickles and code run)."""
        return True

    def load(self) -> None:
        """Load the archive and derive its signature (see the module docstring)."""
        artifact = _artifact(self.path) if self.path is not None else None
        if artifact is None:
            raise ModelLoadError(f"no TorchScript or torch.export archive at {self.path}")
        torch = require("torch", "torch")
        torch.set_num_threads(int(self.options.get("num_threads", 1)))
        device = torch_device(torch, wanted_device(self.options))
        try:
            if artifact.suffix == EXPORT_SUFFIX:
                program = torch.export.load(str(artifact))
                module, signature = program.module().to(device), _export_signature(program)
            else:
                with warnings.catch_warnings():  # TorchScript is deprecated, but users have it
                    warnings.filterwarnings("ignore", "`torch.jit", DeprecationWarning)
                    module = torch.jit.load(str(artifact), map_location=device)
                module.eval()
                signature = _script_signature(torch, module, artifact, self.options, device)
        except NstarxError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load {artifact}: {exc}") from exc
        self.module, self._signature, self.device = module, signature, device
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Call the module with the inputs in `forward`'s order and name what it returns."""
        signature, wanted = self.signature_and_outputs(outputs)
        known = signature.output_names()
        torch = require("torch", "torch")
        arrays = self.ordered_inputs(signature, inputs)
        try:
            with torch.inference_mode():
                result = self.module(*(_tensor(torch, a).to(self.device) for a in arrays))
        except (RuntimeError, ValueError, TypeError, AssertionError) as exc:  # export guards assert
            raise InvalidInputError(f"the model rejected the input: {exc}") from exc
        named = _name_outputs(torch, result, known)
        return {name: named[name] for name in wanted}

    def metadata(self) -> ModelSignature:
        """Return the signature derived at load."""
        if self._signature is None:
            raise ModelLoadError("the PyTorch model is not loaded")
        return self._signature

    def unload(self) -> None:
        """Drop the module and its signature."""
        self._signature = None
        super().unload()


def _export_signature(program: Any) -> ModelSignature:
    nodes = {node.name: node for node in program.graph.nodes}
    names = program.graph_signature.user_inputs
    inputs = tuple(_spec(name, nodes[name].meta["val"]) for name in names)
    values = [nodes[name].meta["val"] for name in program.graph_signature.user_outputs]
    out_spec = program.call_spec.out_spec
    if out_spec is not None and out_spec.type is dict:
        out_names = [str(key) for key in out_spec.context]
    else:
        out_names = [f"output-{i}" for i in range(len(values))]
    outputs = tuple(_spec(name, value) for name, value in zip(out_names, values, strict=True))
    return _signature(inputs, outputs, {})


def _script_signature(
    torch: Any, module: Any, artifact: Path, options: Mapping[str, Any], device: str = "cpu"
) -> ModelSignature:
    arg_names = [arg.name for arg in module.forward.schema.arguments][1:]  # [0] is self
    declared = dict(options) if "inputs" in options else _saved_signature(artifact)
    if declared is not None:
        inputs = _specs(declared.get("inputs"), "inputs")
        outputs = _specs(declared.get("outputs"), "outputs")
        return _signature(inputs, outputs, declared)
    example = options.get("example_input")
    if example is None:
        raise ModelLoadError(
            f"{artifact} is a TorchScript archive, which does not record input dtypes or shapes: "
            "give the model an example_input option, inputs/outputs options, or save the "
            f"archive with a {SIGNATURE_FILE} extra file (see nstarx_jupyter.runtimes.pytorch)"
        )
    if isinstance(example, Mapping):
        tensors = [torch.as_tensor(np.asarray(example[name])) for name in arg_names]
    else:
        tensors, arg_names = [torch.as_tensor(example)], arg_names[:1]
    with torch.inference_mode():
        result = module(*(tensor.to(device) for tensor in tensors))
    inputs = tuple(_spec(n, t, batched=True) for n, t in zip(arg_names, tensors, strict=True))
    named = _name_outputs(torch, result, ())
    outputs = tuple(_spec(name, array, batched=True) for name, array in named.items())
    return _signature(inputs, outputs, options)


def _signature(
    inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], extra: Mapping[str, Any]
) -> ModelSignature:
    names, labels = extra.get("feature_names"), extra.get("class_labels")
    return ModelSignature(
        platform="pytorch",
        inputs=inputs,
        outputs=outputs,
        default_outputs=tuple(spec.name for spec in outputs),
        feature_names=tuple(names) if names else None,
        class_labels=tuple(labels) if labels else None,
    )


def _saved_signature(artifact: Path) -> dict[str, Any] | None:
    with zipfile.ZipFile(artifact) as archive:
        entry = next((n for n in archive.namelist() if n.endswith(f"/extra/{SIGNATURE_FILE}")), "")
        if not entry:
            return None
        try:
            saved = json.loads(archive.read(entry))
        except ValueError as exc:
            raise ModelLoadError(f"{artifact}: {SIGNATURE_FILE} is not JSON: {exc}") from exc
    if not isinstance(saved, dict):
        raise ModelLoadError(f"{artifact}: {SIGNATURE_FILE} must hold an object")
    return saved


def _specs(raw: Any, what: str) -> tuple[TensorSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ModelLoadError(f"the TorchScript signature needs a non-empty list of {what}")
    specs = []
    for item in raw:
        if isinstance(item, TensorSpec):
            specs.append(item)
            continue
        try:
            numpy_dtype(item["datatype"])
            specs.append(TensorSpec(str(item["name"]), item["datatype"], tuple(item["shape"])))
        except (KeyError, TypeError, InvalidInputError) as exc:
            raise ModelLoadError(f"bad entry in the signature's {what}: {item!r} ({exc})") from exc
    return tuple(specs)


def _spec(name: str, value: Any, *, batched: bool = False) -> TensorSpec:
    """Describe a (fake) tensor or an array: symbolic sizes are -1, and so is a `batched` first."""
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in value.shape)
    if batched and shape:
        shape = (-1, *shape[1:])
    return TensorSpec(name, _datatype(value.dtype), shape)


def _datatype(dtype: Any) -> str:
    datatype = datatype_named(str(dtype).removeprefix("torch."))
    if datatype is None:
        raise ModelLoadError(f"tensors of dtype {dtype} have no V2 datatype")
    return datatype


def _tensor(torch: Any, array: np.ndarray[Any, Any]) -> Any:
    # torch.from_numpy shares memory and warns on read-only arrays (request buffers often are).
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _name_outputs(torch: Any, result: Any, names: Sequence[str]) -> Tensors:
    """Name a module's outputs: a dict by its keys, a tensor or a tuple by `names` or position."""
    if isinstance(result, Mapping):
        pairs = [(str(key), value) for key, value in result.items()]
    else:
        values = list(result) if isinstance(result, tuple | list) else [result]
        if len(names) != len(values):
            names = [f"output-{i}" for i in range(len(values))]
        pairs = list(zip(names, values, strict=True))
    named: Tensors = {}
    for name, value in pairs:
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"output '{name}' is a {type(value).__name__}, not a tensor")
        named[name] = value.detach().cpu().numpy()
    return named


def _artifact(path: Path | None) -> Path | None:
    return find_artifact(path, _DIR_NAMES, _is_torch_archive)


def _is_torch_archive(path: Path) -> bool:
    """Look for TorchScript's `code/` and `constants.pkl`, or a `.pt2` archive's format record.

    `.pt2` archives of older releases hold `serialized_exported_program.json` at the root instead.
    """
    if path.suffix not in (*SCRIPT_SUFFIXES, EXPORT_SUFFIX) or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    entries = {*names, *(name.partition("/")[2] for name in names)}  # with and without the root
    if path.suffix == EXPORT_SUFFIX:
        return any(e in ("archive_format", "serialized_exported_program.json") for e in entries)
    return any(e == "constants.pkl" or e.startswith("code/") for e in entries)
