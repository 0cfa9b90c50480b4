"""V2 gRPC codec: `ModelInferRequest`/`ModelInferResponse` to and from the neutral dataclasses."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from google.protobuf.message import DecodeError

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.datatypes import datatype_of, numpy_dtype
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    InferInput,
    RequestedOutput,
)
from nstarx_jupyter.protocol.v2 import MAX_DIMS, _pack, _shaped, _unpack_bytes

if TYPE_CHECKING:
    from google.protobuf.message import Message

__all__ = ["decode_infer_request", "encode_infer_response", "parameters_to_dict", "parse_message"]

_M = TypeVar("_M", bound="Message")

# The typed `contents` field that carries each datatype.
_FIELD = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


def parameters_to_dict(params: Any) -> dict[str, Any] | None:
    """Turn a protobuf map of `InferParameter` into plain values (None when empty).

    Raises:
        InvalidInputError: a parameter holds no bool, int64 or string value (none was set, or
            one of a kind this protocol does not define, which the parser kept as unknown).
    """
    if not params:
        return None
    out: dict[str, Any] = {}
    for key, value in params.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInputError(
                f"parameter '{key[:64]}' has no value of a known type (bool, int64 or string)"
            )
        out[key] = getattr(value, choice)
    return out


def parse_message(message: type[_M], data: bytes) -> _M:
    """Parse `data` as a `message`; bytes that are not one are the caller's mistake.

    Raises:
        InvalidInputError: `data` does not parse (truncated, a field of the wrong wire type, a
            string that is not UTF-8, nesting too deep...).
    """
    try:
        return message.FromString(data)
    except DecodeError:
        raise InvalidInputError(
            f"the request is not a valid {message.DESCRIPTOR.name} message"
        ) from None


def decode_infer_request(message: pb.ModelInferRequest) -> InferenceRequest:
    """Decode typed or raw contents; sizes must match the declared shapes."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise InvalidInputError("raw_input_contents must hold one entry per input")
    inputs = [_decode_input(item, raw[i] if raw else None) for i, item in enumerate(message.inputs)]
    if not inputs:
        raise InvalidInputError("request has no inputs")
    params = parameters_to_dict(message.parameters)
    outputs = [RequestedOutput(out.name) for out in message.outputs] or None
    return InferenceRequest(inputs, message.id or None, params, outputs)


def _decode_input(item: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> InferInput:
    name, datatype = item.name, item.datatype
    if len(item.shape) > MAX_DIMS:
        raise InvalidInputError(f"input '{name}' has more than {MAX_DIMS} dimensions")
    shape = tuple(item.shape)
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"input '{name}' has a negative dimension")
    dtype = numpy_dtype(datatype)
    if raw is not None:
        if item.HasField("contents"):
            raise InvalidInputError(f"input '{name}' has both contents and raw contents")
        if dtype.kind == "O":
            array = _unpack_bytes(raw, name, math.prod(shape))
        elif len(raw) % dtype.itemsize:
            raise InvalidInputError(f"input '{name}': raw size is not a whole number of {datatype}")
        else:
            array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
    else:
        field = _FIELD.get(datatype)
        if field is None:
            raise InvalidInputError(f"input '{name}': {datatype} needs raw_input_contents")
        values = getattr(item.contents, field)
        if dtype.kind == "O":
            array = np.empty(len(values), dtype=object)
            array[:] = list(values)
        else:
            try:
                array = np.asarray(values, dtype=dtype)
            except OverflowError:  # 300 in uint_contents for UINT8: the field is wider
                raise InvalidInputError(
                    f"input '{name}': a value is out of range for {datatype}"
                ) from None
    return InferInput(name, datatype, shape, _shaped(array, shape, name),
                      parameters_to_dict(item.parameters))  # fmt: skip


def encode_infer_response(response: InferenceResponse, raw: bool) -> pb.ModelInferResponse:
    """Encode outputs as raw contents (when the request used raw) or typed contents."""
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version or "",
        id=response.id or "",
    )
    for out in response.outputs:
        tensor = message.outputs.add(name=out.name, datatype=out.datatype, shape=list(out.shape))
        if raw:
            message.raw_output_contents.append(_pack(out.data))
            continue
        flat = out.data.reshape(-1)
        field = _FIELD.get(datatype_of(out.data))
        if field is None:  # FP16 has no typed field
            message.raw_output_contents.append(_pack(out.data))
            continue
        values = flat.tolist()
        if field == "bytes_contents":
            values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
        getattr(tensor.contents, field).extend(values)
    if message.raw_output_contents and len(message.raw_output_contents) != len(message.outputs):
        return encode_infer_response(response, raw=True)  # raw is all or nothing
    return message
