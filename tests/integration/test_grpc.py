"""V2 gRPC against a real server process, with tritonclient and with the generated stubs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.protocol.grpc import inference_pb2_grpc
from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration
ROWS = np.asarray([[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 5.0, 2.0]])


@pytest.fixture(scope="module")
def server(iris_path: Path) -> Iterator[ServerProcess]:
    process = start_server("--model", f"iris={iris_path}", "--grpc-port", "0")
    yield process
    process.stop()


@pytest.fixture
def infer(server: ServerProcess) -> Iterator[Callable[[pb.ModelInferRequest], Any]]:
    """ModelInfer on the standard path, with our generated messages."""
    assert server.grpc is not None
    with grpc.insecure_channel(server.grpc) as channel:
        yield channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_tritonclient_grpc(
    server: ServerProcess, iris_model: LogisticRegression, datatype: str
) -> None:
    assert server.grpc is not None
    client = triton_grpc.InferenceServerClient(url=server.grpc)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        assert client.is_model_ready("iris", "1")
        assert client.get_server_metadata().name == "nstarx"
        meta = client.get_model_metadata("iris")
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("input-0", "FP64", [-1, 4])
        ]
        tensor = triton_grpc.InferInput("input-0", [2, 4], datatype)
        tensor.set_data_from_numpy(ROWS.astype(np.float32 if datatype == "FP32" else np.float64))
        result = client.infer("iris", [tensor], request_id="g-1")
        assert result.get_response().id == "g-1"
        np.testing.assert_array_equal(result.as_numpy("predict"), iris_model.predict(ROWS))
    finally:
        client.close()


def test_typed_contents_with_generated_stubs(
    infer: Callable[[pb.ModelInferRequest], Any], iris_model: LogisticRegression
) -> None:
    request = pb.ModelInferRequest(model_name="iris", id="t")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[2, 4])
    tensor.contents.fp64_contents.extend(ROWS.reshape(-1).tolist())
    response = infer(request)
    assert response.id == "t"
    assert list(response.outputs[0].contents.int64_contents) == iris_model.predict(ROWS).tolist()


def test_the_bundled_stub_reaches_the_standard_service(
    server: ServerProcess, iris_model: LogisticRegression
) -> None:
    assert server.grpc is not None
    with grpc.insecure_channel(server.grpc) as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        assert stub.ServerLive(pb.ServerLiveRequest()).live
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name="iris")).ready
        assert stub.ModelMetadata(pb.ModelMetadataRequest(name="iris")).name == "iris"
        request = pb.ModelInferRequest(model_name="iris", id="stub")
        request.inputs.add(name="input-0", datatype="FP64", shape=[2, 4])
        request.raw_input_contents.append(ROWS.astype("<f8").tobytes())
        response = stub.ModelInfer(request)
    assert response.id == "stub"
    got = np.frombuffer(response.raw_output_contents[0], dtype="<i8")
    np.testing.assert_array_equal(got, iris_model.predict(ROWS))


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"model_name": "nope"}, grpc.StatusCode.NOT_FOUND),
        ({"model_version": "9"}, grpc.StatusCode.NOT_FOUND),
        ({"shape": [1, 3]}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"datatype": "BYTES"}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_client_mistakes_map_to_status_codes(
    infer: Callable[[pb.ModelInferRequest], Any], change: dict[str, object], code: grpc.StatusCode
) -> None:
    request = pb.ModelInferRequest(
        model_name=str(change.get("model_name", "iris")),
        model_version=str(change.get("model_version", "")),
    )
    shape = change.get("shape", [1, 4])
    assert isinstance(shape, list)
    tensor = request.inputs.add(name="input-0", datatype=str(change.get("datatype", "FP64")),
                                shape=shape)  # fmt: skip
    if tensor.datatype == "BYTES":
        tensor.contents.bytes_contents.extend([b"a"] * 4)
    else:
        tensor.contents.fp64_contents.extend([1.0] * int(np.prod(shape)))
    with pytest.raises(grpc.RpcError) as caught:
        infer(request)
    assert caught.value.code() == code
