"""KServe V1 codec: `{"instances": [...]}` or `{"inputs": ...}` in, `{"predictions": [...]}` out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.datatypes import as_array
from nstarx_jupyter.protocol.records import as_text, records_to_tensors
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
        return _columns(rows, signature)
    spec = signature.inputs[0]
    if spec.datatype == "BYTES":
        rows = [as_text(row) for row in rows]
    array = as_array(rows, spec.datatype, "instances")
    return bind_inputs(signature, {spec.name: array})


def _columns(rows: list[Any], signature: ModelSignature) -> dict[str, np.ndarray[Any, Any]]:
    """Rows of values in the model's column order, for a model taking one input per column."""
    specs = signature.inputs
    names = ", ".join(spec.name for spec in specs)
    if not all(len(spec.shape) == 1 for spec in specs):
        raise InvalidInputError(f"this model takes several inputs ({names}); send records")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(specs):
            raise InvalidInputError(
                f"instance {index}: send {len(specs)} values in this order: {names} (or records)"
            )
    tensors = {}
    for position, spec in enumerate(specs):
        values = [row[position] for row in rows]
        if spec.datatype == "BYTES":
            values = [as_text(value) for value in values]
        tensors[spec.name] = as_array(values, spec.datatype, spec.name)
    return bind_inputs(signature, tensors)


def encode_predictions(outputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    """Return `{"predictions": [...]}` from the first output (KServe V1 answers one list)."""
    first = next(iter(outputs.values()))
    return {"predictions": _plain(first)}


def _plain(array: np.ndarray[Any, Any]) -> list[Any]:
    values = array.tolist()
    if array.dtype.kind == "O":
        return [v.decode() if isinstance(v, bytes) else v for v in values]
    return list(values)
