"""V2 gRPC in process: the codec round-trips every tensor (the RPCs on a real server:
tests/integration/test_grpc_server_calls.py)."""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.protocol.grpc.codec import (
    decode_infer_request,
    encode_infer_response,
    parse_message,
)
from nstarx_jupyter.protocol.inference import InferenceResponse, InferOutput
from tests.unit.protocol.test_v2_codec import _assert_same, tensors

if TYPE_CHECKING:
    pass


def _as_request(response: pb.ModelInferResponse) -> pb.ModelInferRequest:
    """What a client sends when it echoes a response's tensors back as inputs."""
    request = pb.ModelInferRequest(model_name="echo", id=response.id)
    for out in response.outputs:
        item = request.inputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        if out.HasField("contents"):
            item.contents.CopyFrom(out.contents)
    request.raw_input_contents.extend(response.raw_output_contents)
    return request


@settings(max_examples=150, deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=3), st.booleans())
def test_any_tensor_round_trips_typed_and_raw(
    items: list[tuple[str, np.ndarray[Any, Any]]], raw: bool
) -> None:
    outputs = [
        InferOutput(f"t{i}", datatype, array.shape, array)
        for i, (datatype, array) in enumerate(items)
    ]
    encoded = encode_infer_response(InferenceResponse("echo", "1", outputs, id="r-1"), raw)
    # Raw contents are all or nothing: either one entry per output or none at all.
    assert len(encoded.raw_output_contents) in (0, len(outputs))
    decoded = decode_infer_request(pb.ModelInferRequest.FromString(
        _as_request(encoded).SerializeToString()
    ))  # fmt: skip
    assert decoded.id == "r-1"
    for got, (datatype, want) in zip(decoded.inputs, items, strict=True):
        assert got.datatype == datatype
        _assert_same(got.data, want)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.inputs[0].shape.__setitem__(0, 3), "has 2 values but shape [3] needs 3"),
        (lambda r: r.inputs[0].shape.__setitem__(0, -2), "negative dimension"),
        (lambda r: r.raw_input_contents.append(b"\0" * 16), "both contents and raw contents"),
        (lambda r: r.inputs.add(name="b", datatype="FP64", shape=[1]), "one entry per input"),
    ],
)
def test_malformed_requests_name_the_problem(mutate: Any, message: str) -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="a", datatype="FP64", shape=[2]).contents.fp64_contents.extend([1, 2])
    mutate(request)
    if len(request.inputs) == 2:  # raw for one input of two
        request.inputs[0].ClearField("contents")
        request.raw_input_contents.append(np.zeros(2).tobytes())
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_infer_request(request)


def test_raw_sizes_must_be_whole_values() -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="a", datatype="FP32", shape=[1])
    request.raw_input_contents.append(b"\0\0\0")
    with pytest.raises(InvalidInputError, match="whole number of FP32"):
        decode_infer_request(request)


@pytest.mark.parametrize(
    ("datatype", "field", "values", "shape", "message"),
    [
        ("UINT8", "uint_contents", [300], [1], "out of range for UINT8"),
        ("INT8", "int_contents", [-200], [1], "out of range for INT8"),
        ("UINT16", "uint_contents", [70000], [1], "out of range for UINT16"),
        ("FP64", "fp64_contents", [], [0] * 65, "more than 64 dimensions"),
        ("FP64", "fp64_contents", [], [0, 2**62], "too large"),
        ("FP32", "fp32_contents", [], [2**63 - 1, 2**63 - 1, 0], "too large"),
    ],
)
def test_typed_values_and_shapes_no_array_can_hold_are_client_mistakes(
    datatype: str, field: str, values: list[int], shape: list[int], message: str
) -> None:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="a", datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    with pytest.raises(InvalidInputError, match=message):
        decode_infer_request(request)


def test_many_huge_dimensions_are_refused_before_multiplying_them() -> None:
    # The product of 20,000 dimensions of 2**62 is a 1.2-million-bit number: computing it took
    # seconds on the event loop, and the time grows with the square of the count.
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="a", datatype="FP64", shape=[2**62] * 20_000)
    started = time.thread_time()  # CPU seconds: a busy machine does not stretch them
    with pytest.raises(InvalidInputError, match="more than 64 dimensions"):
        decode_infer_request(pb.ModelInferRequest.FromString(request.SerializeToString()))
    assert time.thread_time() - started < 0.5


def test_more_bytes_elements_than_the_shape_holds_are_refused_at_once() -> None:
    # 8 MB of empty BYTES elements are 2 million of them: unpacking all before comparing
    # with the shape took seconds on the event loop.
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="a", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(b"\0" * (8 << 20))
    started = time.thread_time()
    with pytest.raises(InvalidInputError, match="more BYTES elements than its shape holds"):
        decode_infer_request(request)
    assert time.thread_time() - started < 0.5


@pytest.mark.parametrize(
    "data",
    [b"\x00", b"\n\x05iri", b"\x0a\x02\xff\xfe", b"\x2a\xff\xff\xff\xff\x0f", b"\x0b"],
    ids=["field-zero", "truncated", "not-utf8", "length-beyond-end", "group-without-end"],
)
def test_bytes_that_are_not_a_message_are_a_client_mistake(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="not a valid ModelInferRequest message"):
        parse_message(pb.ModelInferRequest, data)
    assert parse_message(pb.ModelInferRequest, b"\n\x04iris").model_name == "iris"


def test_a_parameter_without_a_value_of_a_known_type_is_refused() -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="a", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    request.parameters["priority"].int64_param = 1
    assert decode_infer_request(request).parameters == {"priority": 1}
    # A double (field 4 of Triton's InferParameter) is an unknown field to this protocol.
    double = pb.InferParameter.FromString(b"\x21" + struct.pack("<d", 0.5))
    for value in (pb.InferParameter(), double):
        request.parameters["timeout"].CopyFrom(value)
        with pytest.raises(InvalidInputError, match="'timeout' has no value of a known type"):
            decode_infer_request(request)
        request.inputs[0].parameters["scale"].CopyFrom(value)
        del request.parameters["timeout"]
        with pytest.raises(InvalidInputError, match="'scale' has no value"):
            decode_infer_request(request)
        del request.inputs[0].parameters["scale"]
