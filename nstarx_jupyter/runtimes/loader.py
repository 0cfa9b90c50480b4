"""Pick the runtime for an artifact (by file type, or by name) and create it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError, ModelLoadError
from nstarx_jupyter.runtimes.base import Runtime

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["RUNTIMES", "create_runtime", "infer_runtime", "runtime_class"]

RUNTIMES: dict[str, str] = {
    "sklearn": "nstarx_jupyter.runtimes.sklearn:SklearnRuntime",
    "xgboost": "nstarx_jupyter.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "nstarx_jupyter.runtimes.lightgbm:LightGBMRuntime",
    "onnx": "nstarx_jupyter.runtimes.onnx:ONNXRuntime",
    "pytorch": "nstarx_jupyter.runtimes.pytorch:PyTorchRuntime",
    "tensorflow": "nstarx_jupyter.runtimes.tensorflow:TensorFlowRuntime",
    "keras": "nstarx_jupyter.runtimes.keras:KerasRuntime",
}
"""Built-in runtimes by name, in the order artifacts are tried against them."""


def runtime_class(name: str) -> type[Runtime]:
    """Resolve a built-in runtime name or an import path (`pkg.module.Class` or `pkg.module:Class`).

    Raises:
        InvalidInputError: neither a built-in runtime nor an importable `Runtime` subclass.
    """
    target = RUNTIMES.get(name, name)
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise InvalidInputError(
            f"unknown runtime '{name}'; use one of {', '.join(RUNTIMES)} or an import path "
            "such as 'mypackage.runtimes.MyRuntime'"
        )
    try:
        module = importlib.import_module(module_name)
    except (ImportError, TypeError, ValueError) as exc:  # "../x" is a TypeError, "" a ValueError
        raise InvalidInputError(f"cannot import runtime '{name}': {exc}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise InvalidInputError(f"runtime '{name}' is not a subclass of nstarx_jupyter.Runtime")
    return cls


def infer_runtime(path: Path) -> str:
    """Name the built-in runtime whose framework wrote the artifact at `path`.

    Raises:
        ModelLoadError: the path does not exist or no runtime recognises it.
    """
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist")
    for name in RUNTIMES:
        if runtime_class(name).can_load(path):
            return name
    raise ModelLoadError(
        f"cannot tell which framework wrote {path}; name it as NAME=RUNTIME:PATH with one of "
        f"{', '.join(RUNTIMES)}"
    )


def create_runtime(
    path: Path | None, runtime: str | None = None, options: Mapping[str, Any] | None = None
) -> Runtime:
    """Create (not load) the runtime for `path`, inferring it from the file when not named."""
    if runtime is None:
        if path is None:
            raise InvalidInputError("a model needs a path, a runtime, or both")
        runtime = infer_runtime(path)
    return runtime_class(runtime)(path, options=options)
