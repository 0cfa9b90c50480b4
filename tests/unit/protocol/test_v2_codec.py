"""V2 REST codec: every datatype round-trips through JSON and through binary tensor data."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol import v2
from nstarx_jupyter.protocol.datatypes import as_array, datatype_named, datatype_of, numpy_dtype
from nstarx_jupyter.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    InferOutput,
    RequestedOutput,
)

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
           "FP16", "FP32", "FP64"]  # fmt: skip


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray[Any, Any]]:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    if datatype == "BYTES":
        items = draw(st.lists(st.text(max_size=5), min_size=int(np.prod(shape)),
                              max_size=int(np.prod(shape))))  # fmt: skip
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return datatype, array.reshape(shape)
    elements = None
    if datatype.startswith("FP"):
        elements = st.floats(allow_nan=False, allow_infinity=False, width=16, min_value=-1e3,
                             max_value=1e3)  # fmt: skip
    return datatype, draw(hnp.arrays(numpy_dtype(datatype), shape, elements=elements))


def _echo(request: InferenceRequest) -> InferenceResponse:
    outputs = [InferOutput(i.name, i.datatype, i.shape, i.data) for i in request.inputs]
    return InferenceResponse("echo", "1", outputs, id=request.id)


def _decode_response(content: bytes, json_length: int | None) -> dict[str, np.ndarray[Any, Any]]:
    head = orjson.loads(content[:json_length] if json_length else content)
    binary = content[json_length:] if json_length else b""
    reader = v2._BinaryReader(binary)
    out = {}
    for item in head["outputs"]:
        size = item.get("parameters", {}).get("binary_data_size")
        if size is None:
            array = as_array(item["data"], item["datatype"], item["name"])
        else:
            array = reader.read(item["name"], item["datatype"], tuple(item["shape"]), size)
        out[item["name"]] = array.reshape(item["shape"])
    return out


def _assert_same(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> None:
    assert got.shape == want.shape
    if want.dtype.kind == "O":
        assert [g.decode() if isinstance(g, bytes) else g for g in got.reshape(-1)] == list(
            want.reshape(-1)
        )
    else:
        np.testing.assert_array_equal(got.astype(want.dtype), want)


@settings(max_examples=150, deadline=None)
@given(tensors(), st.booleans(), st.booleans())
def test_any_tensor_round_trips(
    tensor: tuple[str, np.ndarray[Any, Any]], binary_in: bool, binary_out: bool
) -> None:
    datatype, array = tensor
    spec: dict[str, Any] = {"name": "x", "datatype": datatype, "shape": list(array.shape)}
    chunk = b""
    if binary_in:
        chunk = v2._pack(array)
        spec["parameters"] = {"binary_data_size": len(chunk)}
    else:
        spec["data"] = v2._json_data(array)
    outputs = [{"name": "x", "parameters": {"binary_data": binary_out}}]
    head = orjson.dumps({"id": "r1", "inputs": [spec], "outputs": outputs},
                        option=orjson.OPT_SERIALIZE_NUMPY)  # fmt: skip
    request = v2.decode_request(head + chunk, len(head) if binary_in else None)
    assert request.id == "r1"
    assert request.outputs == [RequestedOutput("x", binary_out)]
    _assert_same(request.inputs[0].data, array)
    content, json_length = v2.encode_response(_echo(request), request)
    assert (json_length is not None) == binary_out
    _assert_same(_decode_response(content, json_length)["x"], array)


@pytest.mark.parametrize(
    ("data", "datatype", "message"),
    [
        (["a"], "FP32", "non-numeric"),
        ([1.5], "INT64", "non-integer"),
        ([300], "UINT8", "out of range"),
        ([-1], "UINT32", "out of range"),
        ([1, 0], "BOOL", "true/false"),
        ([True], "FP32", "boolean data"),
        ([1], "BYTES", "needs strings"),
        ([[1, 2], [3]], "FP32", "not a regular array"),
        ([1], "BF16", "unsupported datatype"),
    ],
)
def test_values_that_do_not_fit_the_datatype_are_refused(
    data: list[Any], datatype: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        as_array(data, datatype, "x")


def test_binary_sizes_must_fit_the_body() -> None:
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2],
                                     "parameters": {"binary_data_size": 8}}]})  # fmt: skip
    with pytest.raises(InvalidInputError, match="does not fit"):
        v2.decode_request(head + b"\0" * 4, len(head))
    with pytest.raises(InvalidInputError, match="not claimed"):
        v2.decode_request(head + b"\0" * 12, len(head))
    with pytest.raises(InvalidInputError, match="does not fit the body"):
        v2.decode_request(head, len(head) + 5)


@pytest.mark.parametrize(
    ("shape", "message"),
    [([0] * 65, "more than 64 dimensions"), ([0, 2**62], "too large"),
     ([2**63 - 1, 2**63 - 1, 0], "too large"), ([2**62] * 20_000, "more than 64 dimensions")],
    ids=["65-dims", "empty-but-huge", "two-huge", "20000-huge"],
)  # fmt: skip
def test_shapes_no_array_can_hold_are_client_mistakes_and_refused_fast(
    shape: list[int], message: str
) -> None:
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": shape,
                                     "data": []}]})  # fmt: skip
    started = time.thread_time()  # CPU seconds: a busy machine does not stretch them
    with pytest.raises(InvalidInputError, match=message):
        v2.decode_request(body)
    assert time.thread_time() - started < 0.5  # 20,000 huge dimensions took seconds to multiply


def test_more_binary_bytes_elements_than_the_shape_holds_are_refused_at_once() -> None:
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 8 << 20}}]})  # fmt: skip
    started = time.thread_time()
    with pytest.raises(InvalidInputError, match="more BYTES elements than its shape holds"):
        v2.decode_request(head + b"\0" * (8 << 20), len(head))
    assert time.thread_time() - started < 0.5  # 2 million empty elements took seconds


def test_datatype_of_names_every_numpy_kind() -> None:
    assert datatype_of(np.zeros(1, np.float32)) == "FP32"
    assert datatype_of(np.zeros(1, np.int64)) == "INT64"
    assert datatype_of(np.zeros(1, bool)) == "BOOL"
    assert datatype_of(np.array(["a"])) == "BYTES"
    with pytest.raises(InvalidInputError):
        datatype_of(np.zeros(1, np.complex64))


def test_framework_dtype_names_map_to_v2_datatypes() -> None:
    assert datatype_named("float32") == "FP32"
    assert datatype_named("uint64") == "UINT64"
    assert datatype_named("bool") == "BOOL"
    assert datatype_named("string") == "BYTES"
    assert datatype_named("bfloat16") is None
    assert datatype_named("complex64") is None
