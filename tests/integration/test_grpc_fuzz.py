"""Malformed gRPC messages against a real server: each is a client mistake, never a crash.

Raw bytes go out through grpcio's own channel with no serializer, so what reaches the server is
exactly what Hypothesis drew: random bytes, valid requests truncated, bit-flipped or with
fields of the wrong wire type, and well-formed requests whose tensors make no sense.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.security import admin_token
from nstarx_jupyter.security.home import security_dir
from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration
SERVICE = "/inference.GRPCInferenceService"
MAX_MESSAGE_BYTES = 256 * 1024
ROW = [5.1, 3.5, 1.4, 0.2]
CRASHES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
"""What a malformed message must never get: both mean the server failed, not the client."""
OTHER_RPCS = ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
              "RepositoryModelLoad", "RepositoryModelUnload"]  # fmt: skip
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES", "BF16", "", "fp64", "FP128", "\u00e9"]  # fmt: skip
TYPED_FIELDS = ["bool_contents", "int_contents", "int64_contents", "uint_contents",
                "uint64_contents", "fp32_contents", "fp64_contents", "bytes_contents"]  # fmt: skip


def _valid_requests() -> list[bytes]:
    """Serialized requests the iris model answers: typed, raw, with parameters and outputs."""
    typed = pb.ModelInferRequest(model_name="iris", id="typed")
    typed.inputs.add(name="input-0", datatype="FP64", shape=[1, 4]).contents.fp64_contents.extend(
        ROW
    )
    raw = pb.ModelInferRequest(model_name="iris", model_version="1", id="raw")
    raw.inputs.add(name="input-0", datatype="FP32", shape=[1, 4])
    raw.raw_input_contents.append(np.asarray(ROW, dtype="<f4").tobytes())
    raw.parameters["priority"].int64_param = 1
    raw.outputs.add(name="predict")
    return [typed.SerializeToString(), raw.SerializeToString()]


VALID = _valid_requests()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def wrong_wire_types(draw: st.DrawFn) -> bytes:
    """A valid request with one field of the request (or of its first input) re-sent with
    another wire type: a varint where a string belongs, a fixed64 for a message, a length-
    delimited blob for a repeated int64, or a group start/end tag with no partner."""
    field = draw(st.integers(1, 9))
    wire = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]))
    payload = {
        0: _varint(draw(st.integers(0, 2**64 - 1))),
        1: draw(st.binary(min_size=8, max_size=8)),
        2: _varint(3) + b"abc",
        5: draw(st.binary(min_size=4, max_size=4)),
    }
    body = _varint(field << 3 | wire) + payload.get(wire, b"")
    base = draw(st.sampled_from(VALID))
    if draw(st.booleans()):  # inside the first input (field 5 of the request)
        tensor = pb.ModelInferRequest.FromString(base).inputs[0].SerializeToString() + body
        return _varint(5 << 3 | 2) + _varint(len(tensor)) + tensor + base
    return base + body if draw(st.booleans()) else body + base


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request truncated, bit-flipped, with bytes inserted, or a length made absurd."""
    data = bytearray(draw(st.sampled_from(VALID)))
    how = draw(st.sampled_from(["truncate", "flip", "insert", "length"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if how == "insert":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=16)) + bytes(data[at:])
    # a length-delimited field (the first input) that claims more bytes than the message holds
    return _varint(5 << 3 | 2) + _varint(draw(st.integers(len(data) + 1, 2**62))) + bytes(data)


@st.composite
def nonsense_requests(draw: st.DrawFn) -> bytes:
    """A well-formed `ModelInferRequest` whose tensors, sizes or parameters make no sense."""
    request = pb.ModelInferRequest(
        model_name=draw(st.sampled_from(["iris", "iris", "iris", "", "nope", "../iris"])),
        model_version=draw(st.sampled_from(["", "", "1", "99", "-1"])),
        id=draw(st.text(max_size=8)),
    )
    dims = st.one_of(st.integers(-3, 6), st.integers(-(2**63), 2**63 - 1))
    for index in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["input-0", "", f"x{index}"])),
            datatype=draw(st.sampled_from(DATATYPES)),
            shape=draw(st.lists(dims, max_size=4)),
        )
        if draw(st.booleans()):
            field = draw(st.sampled_from(TYPED_FIELDS))
            values: Any = {
                "bool_contents": st.booleans(), "bytes_contents": st.binary(max_size=4),
                "fp32_contents": st.floats(width=32), "fp64_contents": st.floats(),
                "int_contents": st.integers(-(2**31), 2**31 - 1),
                "uint_contents": st.integers(0, 2**32 - 1),
                "int64_contents": st.integers(-(2**63), 2**63 - 1),
                "uint64_contents": st.integers(0, 2**64 - 1),
            }[field]  # fmt: skip
            getattr(tensor.contents, field).extend(draw(st.lists(values, max_size=8)))
        if draw(st.booleans()):
            _parameter(draw, tensor.parameters["binary_data_size"])
    for _ in range(draw(st.integers(0, 3))):
        request.raw_input_contents.append(draw(st.binary(max_size=40)))
    keys = ["priority", "content_type", "binary_data_output", "headers", "timeout", ""]
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
        _parameter(draw, request.parameters[key])
    for name in draw(st.lists(st.sampled_from(["predict", "predict_proba", "", "nope"]),
                              max_size=2)):  # fmt: skip
        request.outputs.add(name=name)
    return request.SerializeToString()


def _parameter(draw: st.DrawFn, parameter: pb.InferParameter) -> None:
    """Set one parameter to a value of any kind, or leave its choice unset."""
    kind = draw(st.sampled_from(["bool", "int64", "string", "unset"]))
    if kind == "bool":
        parameter.bool_param = draw(st.booleans())
    elif kind == "int64":
        parameter.int64_param = draw(st.integers(-(2**63), 2**63 - 1))
    elif kind == "string":
        parameter.string_param = draw(st.text(max_size=6))


MALFORMED = st.one_of(
    st.binary(max_size=64), mutated(), mutated(), wrong_wire_types(), nonsense_requests(),
    nonsense_requests(),
)  # fmt: skip
"""Every kind of malformed message, weighted to the ones that get past the parser."""


@pytest.fixture
def server(iris_path: Path) -> Iterator[ServerProcess]:
    """A server with its defaults (keys required), the iris model and gRPC."""
    process = start_server("--model", f"iris={iris_path}", "--grpc-port", "0",
                           "--max-body-bytes", str(MAX_MESSAGE_BYTES), auth=True)  # fmt: skip
    yield process
    process.stop()


def _raw(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    """`method` with bytes in and bytes out: no serializer touches what the test sends."""
    return channel.unary_unary(f"{SERVICE}/{method}", request_serializer=None,
                               response_deserializer=None)  # fmt: skip


def _code(call: grpc.UnaryUnaryMultiCallable[bytes, bytes], message: bytes,
          metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str]:  # fmt: skip
    try:
        call(message, metadata=metadata, timeout=30)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_malformed_messages_are_client_mistakes_and_keep_the_log_quiet(
    server: ServerProcess,
) -> None:
    assert server.grpc is not None
    key = (("authorization", f"Bearer {admin_token(security_dir())}"),)
    codes: Counter[tuple[str, grpc.StatusCode]] = Counter()
    crashes: list[tuple[bytes, str, str]] = []
    lines_before = len(server.output)
    with grpc.insecure_channel(
        server.grpc, options=[("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES)]
    ) as channel:
        infer = _raw(channel, "ModelInfer")
        others = {name: _raw(channel, name) for name in OTHER_RPCS}

        @settings(max_examples=1100, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(message=MALFORMED, other=st.sampled_from(OTHER_RPCS), junk=st.binary(max_size=24))
        def send(message: bytes, other: str, junk: bytes) -> None:
            # (label, method, bytes, metadata, whether it must be refused for want of a key)
            calls = [("key", infer, message, key, False), ("anonymous", infer, message, (), True)]
            if len(junk) % 8 == 0:  # now and then, the other RPCs get garbage too
                calls += [("other", others[other], junk, key, False),
                          ("other", others[other], junk, (), other != "ServerLive")]  # fmt: skip
            # All at once: the server answers them side by side, which keeps the run short.
            futures = [(label, sent, call.future(sent, metadata=metadata, timeout=30), refused)
                       for label, call, sent, metadata, refused in calls]  # fmt: skip
            for label, sent, future, refused in futures:
                code, details = future.code(), future.details() or ""
                codes[label, code] += 1
                if code in CRASHES:
                    crashes.append((sent, label, details))
                if refused:  # the caller is checked before the body is read: no key, no parsing
                    assert code == grpc.StatusCode.UNAUTHENTICATED, (label, sent, details)

        started = time.perf_counter()
        send()
        elapsed_s = time.perf_counter() - started
        # Bigger than the server's limit: refused by size, before anything reads it.
        code, _ = _code(infer, b"\n\x04iris" + b"\0" * MAX_MESSAGE_BYTES, key)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The server still answers a valid request, with and without raw contents.
        for message in VALID:
            answer = pb.ModelInferResponse.FromString(infer(message, metadata=key, timeout=30))
            assert answer.model_name == "iris"
    sent = sum(n for (who, _), n in codes.items() if who != "other")
    log = server.output[lines_before:]
    print(
        f"{sent} malformed ModelInfer messages in {elapsed_s:.1f} s, {len(log)} log lines: "
        f"{ {f'{who} {code.name}': n for (who, code), n in sorted(codes.items(), key=str)} }"
    )
    assert sent >= 2000
    assert not crashes, crashes[:5]
    # Some garbage must have got past the parser to the checks behind it, or the test is weak.
    assert codes["key", grpc.StatusCode.INVALID_ARGUMENT] > 500
    assert len(log) < 50, "".join(log[:60])
