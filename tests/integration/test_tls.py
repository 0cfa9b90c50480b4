"""A real server over TLS: HTTPS and gRPC with a development certificate, TLS 1.2 or newer only."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter.client import InferenceClient, InferenceError
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.security.tls import make_self_signed
from tests.integration.server import ServerProcess, start_server
from tests.unit.security.test_tls import OLD_TLS, pinned_client

pytestmark = pytest.mark.integration
ROWS = np.asarray([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
LIVE = "/inference.GRPCInferenceService/ServerLive"
INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(iris_path: Path, cert_pair: tuple[Path, Path]) -> Iterator[ServerProcess]:
    cert, key = cert_pair
    process = start_server(
        "--model", f"iris={iris_path}", "--grpc-port", "0", "--no-auth",
        "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def trust(cert_pair: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts the development certificate."""
    return ssl.create_default_context(cafile=cert_pair[0])


def _address(server: ServerProcess) -> tuple[str, int]:
    host, _, port = server.url.removeprefix("https://").rpartition(":")
    return host, int(port)


def _grpc_address(server: ServerProcess) -> tuple[str, int]:
    assert server.grpc is not None
    host, _, port = server.grpc.rpartition(":")
    return host, int(port)


def _negotiate(address: tuple[str, int], context: ssl.SSLContext) -> str:
    """Handshake with the server at `address` and return the TLS version agreed."""
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=address[0]) as tls,
    ):
        return str(tls.version())


def test_banner_announces_https(server: ServerProcess) -> None:
    assert server.url.startswith("https://127.0.0.1:")


def test_https_answers_a_client_that_trusts_the_certificate(
    server: ServerProcess, trust: ssl.SSLContext
) -> None:
    response = httpx.get(f"{server.url}/v2/health/live", verify=trust, timeout=10)
    assert response.status_code == 200


def test_default_verification_refuses_the_self_signed_certificate(server: ServerProcess) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/v2/health/live", timeout=10)


@OLD_TLS
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_tls_1_1_is_refused_and_1_2_and_1_3_are_served(
    server: ServerProcess, cert_pair: tuple[Path, Path], transport: str
) -> None:
    # test_server_context_refuses_anything_older_than_tls_1_2 shows this TLS 1.1 client works
    # against a server that allows 1.1, so the refusal here is the server's.
    address = _address(server) if transport == "rest" else _grpc_address(server)
    contexts = {}
    for version in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        contexts[version] = pinned_client(version, cert_pair[0])
        if transport == "grpc":
            contexts[version].set_alpn_protocols(["h2"])
    with pytest.raises(ssl.SSLError):
        _negotiate(address, contexts[ssl.TLSVersion.TLSv1_1])
    assert _negotiate(address, contexts[ssl.TLSVersion.TLSv1_2]) == "TLSv1.2"
    assert _negotiate(address, contexts[ssl.TLSVersion.TLSv1_3]) == "TLSv1.3"


def test_tls_1_2_client_gets_answers(server: ServerProcess, cert_pair: tuple[Path, Path]) -> None:
    context = pinned_client(ssl.TLSVersion.TLSv1_2, cert_pair[0])
    response = httpx.get(f"{server.url}/v2/models/iris/ready", verify=context, timeout=10)
    assert response.status_code == 200


def test_inference_client_predicts_with_the_certificate_as_ca(
    server: ServerProcess, cert_pair: tuple[Path, Path], iris_model: LogisticRegression
) -> None:
    with InferenceClient(f"{server.url}/v1/models/iris", verify=cert_pair[0]) as client:
        got = client.predict(ROWS)
    assert [row["prediction"] for row in got] == iris_model.predict(ROWS).tolist()


def test_inference_client_refuses_the_certificate_by_default(server: ServerProcess) -> None:
    with (
        InferenceClient(f"{server.url}/v1/models/iris", retries=0) as client,
        pytest.raises(InferenceError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.predict(ROWS)


def test_inference_client_streams_over_wss_with_the_certificate_as_ca(
    server: ServerProcess, cert_pair: tuple[Path, Path], iris_model: LogisticRegression
) -> None:
    with InferenceClient(f"{server.url}/v1/models/iris", verify=cert_pair[0]) as client:
        got = list(client.stream(ROWS))
    assert [row["prediction"] for row in got] == iris_model.predict(ROWS).tolist()
    with (
        InferenceClient(f"{server.url}/v1/models/iris") as client,
        pytest.raises(InferenceError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        list(client.stream(ROWS))


def test_plain_http_to_the_https_port_gets_no_answer(server: ServerProcess) -> None:
    plain = server.url.replace("https://", "http://", 1)
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{plain}/v1/models/iris/predict", json={"instances": ROWS.tolist()})


def test_grpc_over_tls_answers_live_and_infer(
    server: ServerProcess, cert_pair: tuple[Path, Path], iris_model: LogisticRegression
) -> None:
    assert server.grpc is not None
    credentials = grpc.ssl_channel_credentials(root_certificates=cert_pair[0].read_bytes())
    with grpc.secure_channel(server.grpc, credentials) as channel:
        live = channel.unary_unary(
            LIVE,
            request_serializer=pb.ServerLiveRequest.SerializeToString,
            response_deserializer=pb.ServerLiveResponse.FromString,
        )
        assert live(pb.ServerLiveRequest(), timeout=10).live
        infer = channel.unary_unary(
            INFER,
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        request = pb.ModelInferRequest(model_name="iris")
        tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[2, 4])
        tensor.contents.fp64_contents.extend(ROWS.reshape(-1).tolist())
        response = infer(request, timeout=10)
    predicted = list(response.outputs[0].contents.int64_contents)
    assert predicted == iris_model.predict(ROWS).tolist()


def test_grpc_refuses_an_insecure_channel(server: ServerProcess) -> None:
    assert server.grpc is not None
    with grpc.insecure_channel(server.grpc) as channel:
        live = channel.unary_unary(
            LIVE,
            request_serializer=pb.ServerLiveRequest.SerializeToString,
            response_deserializer=pb.ServerLiveResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            live(pb.ServerLiveRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_local_backend_trusts_the_certificate_its_server_serves(tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path / "tls")  # what `nstarx tls-cert --out` writes
    state_dir = tmp_path / "server"
    process = start_server(
        "--state-dir", str(state_dir), "--tls-cert", str(cert), "--tls-key", str(key)
    )  # fmt: skip
    backend = LocalBackend(state_dir)
    try:
        state = backend.running()
        assert state is not None
        assert state.url == process.url
        assert state.url.startswith("https://")
        assert backend.deployments() == []  # the control API, over https, with the admin token
        assert json.loads((state_dir / "state.json").read_text())["cert"] == str(cert.resolve())
    finally:
        backend.close()
        process.stop()
