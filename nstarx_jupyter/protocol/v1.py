"""KServe V1 codec: `{"instances": [...]}` or `{"inputs": ...}` in, `{"predictions": [...]}` out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.datatypes import as_array
from nstarx_jupyter.protocol.records import records_to_tensors
from nstarx_jupyter.protocol.signature import ModelSignature, bind_inputs

if TYPE_CHECKING:
    import numpy as np

__all__ = ["decode_instances", "encode_predictions"]


def decode_instances(doc: Any, signature: ModelSignature) -> dict[str, np.ndarray[Any, Any]]:
    """Turn a V1 body into input tensors: rows of values, or records with named features."""
    if not isinstance(doc, dict):
        raise InvalidInputError("a V1 request is a JSON object with 'instances' or 'inputs'")
    rows = doc["instances"] if "instances" in doc else doc.get("inputs")
    if rows is None:
        raise InvalidInputError("a V1 request needs 'instances' (or 'inputs')")
    if not isinstance(rows, list) or not rows:
        raise InvalidInputError("'instances' must be a non-empty list")
    if all(isinstance(row, dict) for row in rows):
        return records_to_tensors(rows, signature)
    if len(signature.inputs) != 1:
        names = ", ".join(spec.name for spec in signature.inputs)
        raise InvalidInputError(f"this model takes several inputs ({names}); send records")
    spec = signature.inputs[0]
    array = as_array(rows, spec.datatype, "instances")
    return bind_inputs(signature, {spec.name: array})


def encode_predictions(outputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    """Return `{"predictions": [...]}` from the first output (KServe V1 answers one list)."""
    first = next(iter(outputs.values()))
    return {"predictions": _plain(first)}


def _plain(array: np.ndarray[Any, Any]) -> list[Any]:
    values = array.tolist()
    if array.dtype.kind == "O":
        return [v.decode() if isinstance(v, bytes) else v for v in values]
    return list(values)
