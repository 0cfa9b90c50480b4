"""A pipeline fitted on a datetime64 column answers ISO-8601 strings over V2 gRPC, typed and raw.

The same model and signature as tests/unit/serving/test_datetime_inputs.py (V1, V2 REST and the
product endpoint), on a real gRPC server in this process.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import grpc
import joblib
import pytest

from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.runtimes.sklearn_inputs import frame_columns
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.grpc import SERVICE, start_grpc_server
from nstarx_jupyter.serving.settings import ModelSettings
from tests.unit.serving.test_datetime_inputs import ISO, _expected, _frame, _model

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

AMOUNTS = [0.5, -1.0, 2.0]
Infer = grpc.aio.UnaryUnaryMultiCallable[pb.ModelInferRequest, pb.ModelInferResponse]


@pytest.fixture
async def infer(tmp_path: Path) -> AsyncIterator[Infer]:
    frame = _frame()
    joblib.dump(_model(frame), tmp_path / "late.joblib")
    options = {"input_columns": frame_columns(frame)}
    app = create_app(
        [ModelSettings(name="late", path=tmp_path / "late.joblib", options=options)],
        ServingConfig(auth=False),
    )
    async with app.lifespan():
        server, port = await start_grpc_server(app.dataplane, "127.0.0.1", 0, 1 << 20)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield channel.unary_unary(
                    f"/{SERVICE}/ModelInfer",
                    request_serializer=pb.ModelInferRequest.SerializeToString,
                    response_deserializer=pb.ModelInferResponse.FromString,
                )
        finally:
            await server.stop(grace=None)


async def test_iso_strings_are_answered_over_grpc_typed_and_raw(
    infer: Infer,
) -> None:
    expected = _expected()
    typed = pb.ModelInferRequest(model_name="late")
    typed.inputs.add(name="seen_at", datatype="BYTES", shape=[3]).contents.bytes_contents.extend(
        [t.encode() for t in ISO]
    )
    typed.inputs.add(name="amount", datatype="FP64", shape=[3]).contents.fp64_contents.extend(
        AMOUNTS
    )
    answer = await infer(typed)
    assert list(answer.outputs[0].contents.int64_contents) == expected

    raw = pb.ModelInferRequest(model_name="late")  # what tritonclient sends: length-prefixed
    raw.inputs.add(name="seen_at", datatype="BYTES", shape=[3])
    raw.inputs.add(name="amount", datatype="FP64", shape=[3])
    raw.raw_input_contents.append(b"".join(struct.pack("<I", len(t)) + t.encode() for t in ISO))
    raw.raw_input_contents.append(struct.pack("<3d", *AMOUNTS))
    answer = await infer(raw)
    assert answer.outputs[0].datatype == "INT64"  # raw in, raw out
    assert list(struct.unpack(f"<{len(ISO)}q", answer.raw_output_contents[0])) == expected


async def test_a_string_that_is_no_date_is_invalid_argument_naming_the_field(
    infer: Infer,
) -> None:
    request = pb.ModelInferRequest(model_name="late")
    request.inputs.add(name="seen_at", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"next tuesday"
    )
    request.inputs.add(name="amount", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await infer(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "seen_at" in (raised.value.details() or "")
    assert "ISO-8601" in (raised.value.details() or "")
