"""Transport-neutral inference request and response: what every codec decodes and encodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["InferInput", "InferOutput", "InferenceRequest", "InferenceResponse", "RequestedOutput"]


@dataclass(slots=True)
class InferInput:
    """One decoded input tensor; `data` already has `shape`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray[Any, Any]
    parameters: dict[str, Any] | None = None


@dataclass(slots=True)
class RequestedOutput:
    """An output the caller asked for; `binary` asks for the binary tensor data extension."""

    name: str
    binary: bool = False


@dataclass(slots=True)
class InferenceRequest:
    """A V2 inference request, whichever transport carried it."""

    inputs: list[InferInput]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[RequestedOutput] | None = None
    binary_output: bool = False
    """Every output in binary form (the request parameter `binary_data_output`)."""

    def tensors(self) -> dict[str, np.ndarray[Any, Any]]:
        """Return the inputs as name → array."""
        return {item.name: item.data for item in self.inputs}

    def output_names(self) -> tuple[str, ...] | None:
        """Return the requested output names, or None for the model's defaults."""
        return tuple(out.name for out in self.outputs) if self.outputs else None


@dataclass(slots=True)
class InferOutput:
    """One output tensor."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray[Any, Any]
    parameters: dict[str, Any] | None = None


@dataclass(slots=True)
class InferenceResponse:
    """A V2 inference response, before a transport encodes it."""

    model_name: str
    model_version: str | None
    outputs: list[InferOutput]
    id: str | None = None
    parameters: dict[str, Any] | None = field(default=None)
