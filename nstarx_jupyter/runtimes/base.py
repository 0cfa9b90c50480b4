"""The `Runtime` extension point: what every framework adapter (and a user's own) implements."""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

    from nstarx_jupyter.protocol.signature import ModelSignature

__all__ = ["Runtime", "Tensors", "find_artifact"]

Tensors = dict[str, np.ndarray[Any, Any]]
"""Named arrays, batch first."""


class Runtime(ABC):
    """Loads one model artifact and predicts with it.

    Subclass it for a custom runtime: implement `load`, `predict` and `metadata`, and override
    `unload` when dropping references is not enough. `predict` is synchronous and may be slow; the
    server runs it off the event loop when it is. Inputs arrive already checked against `metadata()`
    (names, datatypes, shapes), batch first; outputs must be batch first too.
    """

    runtime_name: ClassVar[str] = "custom"
    """The name used in `NAME=runtime:PATH` and reported as the model's platform."""

    def __init__(self, path: Path | None = None, *, options: Mapping[str, Any] | None = None):
        self.path = path
        self.options: Mapping[str, Any] = dict(options or {})
        self.ready = False
        self.device = "cpu"
        """Where the loaded model computes, as its framework names it (`cuda:0`, `/GPU:0`,
        `CUDAExecutionProvider`...); set by runtimes that choose (`runtimes.devices`)."""

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """Say whether `path` looks like an artifact of this runtime's framework."""
        return False

    @classmethod
    def runs_code_on_load(cls, path: Path) -> bool:
        """Say whether loading `path` may run code the file carries (a pickle, a program).

        Such files load only when trusted (`ModelSettings.trusted`); the default is False, for
        formats that hold data only.
        """
        return False

    @classmethod
    def check_artifact(cls, path: Path, options: Mapping[str, Any]) -> None:
        """Raise when `path` would be refused at load, found without deserialising it.

        The control API calls it before a deployment is accepted, so a model that loads on
        first use is refused at once too; the default checks nothing.
        """
        return

    @abstractmethod
    def load(self) -> None:
        """Load the artifact at `self.path`; raise `ModelLoadError` when it cannot be loaded."""

    @abstractmethod
    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Return the requested outputs (the signature's defaults when `outputs` is None)."""

    @abstractmethod
    def metadata(self) -> ModelSignature:
        """Describe the loaded model's inputs and outputs, derived from the model itself."""

    @staticmethod
    def check_outputs(wanted: Sequence[str], known: Sequence[str]) -> None:
        """Raise `InvalidInputError` naming the first requested output the model does not have."""
        for name in wanted:
            if name not in known:
                raise InvalidInputError(
                    f"unknown output '{name}'; the model has {', '.join(known)}"
                )

    def signature_and_outputs(
        self, outputs: Sequence[str] | None
    ) -> tuple[ModelSignature, tuple[str, ...]]:
        """The model's signature and the outputs to compute: those asked for, else its defaults."""
        signature = self.metadata()
        wanted = tuple(outputs or signature.default_outputs)
        self.check_outputs(wanted, signature.output_names())
        return signature, wanted

    @staticmethod
    def ordered_inputs(signature: ModelSignature, inputs: Tensors) -> list[Any]:
        """The input arrays in the signature's order (one input whatever its name)."""
        if len(signature.inputs) == 1 and len(inputs) == 1:
            return list(inputs.values())
        return [inputs[spec.name] for spec in signature.inputs]

    def rows_independent(self) -> bool:
        """Whether each output row depends only on its own input row, for the loaded model.

        When True, concurrent requests may share one `predict` call (the server's default no-wait
        batching). The default is False; built-in tabular runtimes say True when they can tell.
        """
        return False

    def unload(self) -> None:
        """Release the model; the default drops every attribute holding it and collects garbage."""
        self.ready = False
        for attr in ("model", "session", "booster", "module"):
            if hasattr(self, attr):
                setattr(self, attr, None)
        gc.collect()


def find_artifact(
    path: Path | None, names: Iterable[str], accept: Callable[[Path], bool]
) -> Path | None:
    """Return `path` when `accept` takes it, or the one accepted file among `names` in a folder.

    A folder holding several accepted candidates is ambiguous and yields None.
    """
    if path is None:
        return None
    if path.is_file():
        return path if accept(path) else None
    if path.is_dir():
        found = [path / name for name in names if (path / name).is_file() and accept(path / name)]
        if len(found) == 1:
            return found[0]
    return None
