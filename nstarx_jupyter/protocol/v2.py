"""Open Inference Protocol (V2) REST codec, with the binary tensor data extension."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.datatypes import as_array, numpy_dtype
from nstarx_jupyter.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    InferInput,
    RequestedOutput,
)

__all__ = ["HEADER_LENGTH", "decode_request", "encode_response", "loads", "request_from_doc"]

HEADER_LENGTH = "inference-header-content-length"
"""Header giving the JSON part's length when binary tensor data follows it."""

_LENGTH = struct.Struct("<I")

MAX_DIMS = 64
"""The most dimensions a tensor may declare (NumPy's own limit)."""


def loads(body: bytes) -> Any:
    """Parse JSON, turning a syntax error into a 400 with the parser's message."""
    if not body:
        raise InvalidInputError("request body is empty; expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"malformed JSON: {exc}") from None


def decode_request(body: bytes, header_length: int | None = None) -> InferenceRequest:
    """Decode a V2 infer request; `header_length` splits JSON from binary tensor data."""
    binary = b""
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise InvalidInputError(f"{HEADER_LENGTH} {header_length} does not fit the body")
        body, binary = body[:header_length], body[header_length:]
    return request_from_doc(loads(body), binary)


def request_from_doc(doc: Any, binary: bytes = b"") -> InferenceRequest:
    """Decode a V2 infer request already parsed from JSON (`binary`: the tensor data after it)."""
    if not isinstance(doc, dict):
        raise InvalidInputError("an inference request is a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError("'inputs' must be a non-empty list of tensors")
    reader = _BinaryReader(binary)
    inputs = [_decode_input(item, reader) for item in raw_inputs]
    if reader.remaining:
        raise InvalidInputError(f"{reader.remaining} bytes of binary data were not claimed")
    parameters = _optional_object(doc, "parameters")
    return InferenceRequest(
        inputs=inputs,
        id=_optional_str(doc, "id"),
        parameters=parameters,
        outputs=_decode_outputs(doc.get("outputs")),
        binary_output=bool(parameters and parameters.get("binary_data_output")),
    )


def _decode_input(item: Any, reader: _BinaryReader) -> InferInput:
    if not isinstance(item, dict):
        raise InvalidInputError("each input is an object with name, shape, datatype and data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError("an input has no 'name'")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInputError(f"input '{name}' has no 'datatype'")
    shape = _shape(item.get("shape"), name)
    parameters = _optional_object(item, "parameters", f"input '{name}'")
    size = (parameters or {}).get("binary_data_size")
    if size is not None:
        array = reader.read(name, datatype, shape, size)
    elif "data" not in item:
        raise InvalidInputError(f"input '{name}' has no 'data'")
    else:
        array = as_array(item["data"], datatype, name)
    return InferInput(name, datatype, shape, _shaped(array, shape, name), parameters)


def _shaped(array: np.ndarray[Any, Any], shape: tuple[int, ...], name: str) -> np.ndarray[Any, Any]:
    """`array` in `shape`, which must hold exactly its values (the REST and gRPC codecs)."""
    count = math.prod(shape)
    if array.size != count:
        raise InvalidInputError(
            f"input '{name}' has {array.size} values but shape {list(shape)} needs {count}"
        )
    try:
        return array.reshape(shape)
    except ValueError:  # no values, but a dimension beyond what an array can address
        raise InvalidInputError(f"input '{name}': shape {list(shape)} is too large") from None


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in value
    ):
        raise InvalidInputError(f"input '{name}' needs 'shape', a list of non-negative integers")
    if len(value) > MAX_DIMS:  # before math.prod, which is slow on many huge dimensions
        raise InvalidInputError(f"input '{name}' has more than {MAX_DIMS} dimensions")
    return tuple(value)


def _decode_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInputError("'outputs' must be a list")
    outputs = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInputError("each requested output is an object with a 'name'")
        parameters = _optional_object(item, "parameters", f"output '{item['name']}'") or {}
        outputs.append(RequestedOutput(item["name"], bool(parameters.get("binary_data"))))
    return outputs


def _optional_object(
    doc: dict[str, Any], key: str, where: str = "request"
) -> dict[str, Any] | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, dict):
        raise InvalidInputError(f"{where}: '{key}' must be an object")
    return value


def _optional_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"'{key}' must be a string")
    return value


class _BinaryReader:
    """Hands out consecutive slices of the binary part to inputs that declare `binary_data_size`."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._offset = 0

    @property
    def remaining(self) -> int:
        return len(self._view) - self._offset

    def read(
        self, name: str, datatype: str, shape: tuple[int, ...], size: Any
    ) -> np.ndarray[Any, Any]:
        if not isinstance(size, int) or size < 0 or size > self.remaining:
            raise InvalidInputError(
                f"input '{name}': binary_data_size {size} does not fit the body"
            )
        chunk = self._view[self._offset : self._offset + size]
        self._offset += size
        dtype = numpy_dtype(datatype)
        if dtype.kind == "O":
            return _unpack_bytes(bytes(chunk), name, math.prod(shape))
        if size % dtype.itemsize:
            raise InvalidInputError(
                f"input '{name}': {size} bytes is not a whole number of {datatype}"
            )
        return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)


def _unpack_bytes(chunk: bytes, name: str, count: int | None = None) -> np.ndarray[Any, Any]:
    """The length-prefixed BYTES elements of `chunk`; more than `count` of them is a mistake.

    Stopping at `count` bounds the work: 64 MB of empty elements would be 16 million turns of
    this loop, seconds on the event loop, for a tensor whose shape may declare one.
    """
    items: list[bytes] = []
    offset = 0
    while offset < len(chunk):
        if len(items) == count:
            raise InvalidInputError(f"input '{name}' has more BYTES elements than its shape holds")
        if offset + 4 > len(chunk):
            raise InvalidInputError(f"input '{name}': truncated BYTES element")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 4
        if offset + length > len(chunk):
            raise InvalidInputError(f"input '{name}': truncated BYTES element")
        items.append(chunk[offset : offset + length])
        offset += length
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def encode_response(
    response: InferenceResponse, request: InferenceRequest
) -> tuple[bytes, int | None]:
    """Encode a response; returns the body and, when binary data follows, the JSON part's length."""
    binary_names = _binary_outputs(request)
    chunks: list[bytes] = []
    outputs = []
    for out in response.outputs:
        doc: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.shape)}
        if out.name in binary_names or request.binary_output:
            raw = _pack(out.data)
            chunks.append(raw)
            doc["parameters"] = {**(out.parameters or {}), "binary_data_size": len(raw)}
        else:
            if out.parameters:
                doc["parameters"] = out.parameters
            doc["data"] = _json_data(out.data)
        outputs.append(doc)
    body: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        body["model_version"] = response.model_version
    if response.id is not None:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    body["outputs"] = outputs
    head = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)


def _binary_outputs(request: InferenceRequest) -> set[str]:
    return {out.name for out in request.outputs or () if out.binary}


def _json_data(array: np.ndarray[Any, Any]) -> Any:
    flat = array.reshape(-1)
    if flat.dtype.kind in "OSU":
        return [item.decode() if isinstance(item, bytes) else str(item) for item in flat.tolist()]
    if flat.dtype == np.float16:
        return flat.astype(np.float32)
    return np.ascontiguousarray(flat)


def _pack(array: np.ndarray[Any, Any]) -> bytes:
    flat = array.reshape(-1)
    if flat.dtype.kind in "OSU":
        parts = []
        for item in flat.tolist():
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts += [_LENGTH.pack(len(raw)), raw]
        return b"".join(parts)
    return np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("<")).tobytes()
