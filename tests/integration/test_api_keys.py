"""API keys on a real server: every protocol refuses a protected model without a covering key."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from nstarx_jupyter import deploy
from nstarx_jupyter.client import InferenceClient, InferenceError
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from tests.conftest import IRIS_FEATURES
from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration
ROW = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
V2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                  "data": [5.1, 3.5, 1.4, 0.2]}]}  # fmt: skip


@pytest.fixture
def server(nstarx_home: Path) -> Iterator[tuple[ServerProcess, LocalBackend]]:
    """A server with a control API and gRPC, driven through a LocalBackend on its state dir."""
    state_dir = nstarx_home / "server"
    process = start_server("--state-dir", str(state_dir), "--grpc-port", "0")
    yield process, LocalBackend(state_dir, timeout_s=60)
    process.stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_rest_v1_and_v2_need_a_covering_key(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    process, backend = server
    iris = deploy(named_iris, "iris", backend=backend)
    other = deploy(named_iris, "wine", backend=backend)
    assert iris.api_key is not None
    assert other.api_key is not None
    base = process.url
    calls = [("POST", "/v1/models/iris/predict", ROW), ("POST", "/v1/models/iris:predict",
             {"instances": [[5.1, 3.5, 1.4, 0.2]]}), ("POST", "/v2/models/iris/infer", V2),
             ("GET", "/v2/models/iris", None), ("GET", "/v2/models/iris/ready", None),
             ("GET", "/v1/models/iris", None)]  # fmt: skip
    for method, path, body in calls:
        anonymous = httpx.request(method, base + path, json=body)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert "API key" in anonymous.json()["error"]
        wrong = httpx.request(method, base + path, json=body, headers=_bearer(other.api_key))
        assert wrong.status_code == 403, path
        assert httpx.request(method, base + path, json=body,
                             headers=_bearer(iris.api_key)).status_code == 200, path  # fmt: skip
    # Loading and unloading a protected model is the owner's business, not a caller's.
    unload = base + "/v2/repository/models/iris/unload"
    assert httpx.post(unload, headers=_bearer(iris.api_key)).status_code == 403
    # Health, server metadata and the model list stay open, as probes need them.
    assert httpx.get(base + "/v2/health/ready").status_code == 200
    assert httpx.get(base + "/v1/models").json() == {"models": ["iris", "wine"]}
    # Refused calls are counted like any other outcome.
    scraped = httpx.get(base + "/metrics").text
    assert 'status="unauthenticated"' in scraped
    assert 'status="forbidden"' in scraped


def test_the_client_and_grpc_send_the_key(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    process, backend = server
    iris = deploy(named_iris, "iris", backend=backend)
    with InferenceClient(iris.url, retries=0) as anonymous, pytest.raises(InferenceError) as info:
        anonymous.predict(ROW)
    assert info.value.status == 401
    with InferenceClient(iris.url, api_key=iris.api_key) as client:
        assert "prediction" in client.predict(ROW)
    request = pb.ModelInferRequest(model_name="iris", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="input-0", datatype="FP64", shape=[1, 4],
        contents=pb.InferTensorContents(fp64_contents=[5.1, 3.5, 1.4, 0.2]))])  # fmt: skip
    assert process.grpc is not None
    with grpc.insecure_channel(process.grpc) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            infer(request)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = infer(request, metadata=(("authorization", f"Bearer {iris.api_key}"),))
        assert answer.model_name == "iris"


def test_revoked_keys_stop_at_once_and_keys_survive_a_restart(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path, nstarx_home: Path
) -> None:
    process, backend = server
    iris = deploy(named_iris, "iris", backend=backend)
    first = iris.api_key
    second = iris.create_key("second")
    assert first is not None
    assert [k["name"] for k in iris.list_keys()] == ["deploy() of iris", "second"]
    iris.revoke_key(first)
    assert httpx.post(f"{iris.url}/predict", json=ROW, headers=_bearer(first)).status_code == 401
    assert httpx.post(f"{iris.url}/predict", json=ROW, headers=_bearer(second)).status_code == 200
    stored = (nstarx_home / "server" / "keys.json").read_text()
    assert first not in stored
    assert second not in stored
    assert [k.get("revoked") is not None for k in json.loads(stored)] == [True, False]
    process.stop()
    # A new server (started on demand) restores the deployment, its protection and its keys.
    restarted = deploy(named_iris, "iris", backend=backend, auth=True)
    try:
        assert restarted.revision == 2
        url = restarted.url
        assert httpx.post(f"{url}/predict", json=ROW).status_code == 401
        assert httpx.post(f"{url}/predict", json=ROW, headers=_bearer(second)).status_code == 200
        assert httpx.post(f"{url}/predict", json=ROW, headers=_bearer(first)).status_code == 401
        # Opening it up is a redeploy with auth=False; it mints no key.
        opened = deploy(named_iris, "iris", backend=backend, auth=False)
        assert opened.api_key is None
        assert httpx.post(f"{url}/predict", json=ROW).status_code == 200
    finally:
        backend.stop()


def test_the_cli_mints_lists_and_revokes_keys(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    process, _ = server

    def nstarx(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "nstarx_jupyter.cli", *args],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    deployed = nstarx("deploy", "iris", str(named_iris))
    key = deployed.split("API key (shown once, keep it): ")[1].split()[0]
    url = f"{process.url}/v1/models/iris/predict"
    assert httpx.post(url, json=ROW, headers=_bearer(key)).status_code == 200
    again = nstarx("deploy", "iris", str(named_iris))
    assert "revision 2" in again
    assert "nsx_" not in again  # a redeploy mints nothing; the first key still works
    listing = nstarx("keys", "list")
    prefix = "_".join(key.split("_")[:2])  # nsx_<id>; the secret may hold "_" too
    assert prefix in listing
    assert key not in listing
    assert "key" in nstarx("status").split("iris")[1]  # the AUTH column
    assert f"revoked {prefix}" in nstarx("keys", "revoke", prefix)
    assert httpx.post(url, json=ROW, headers=_bearer(key)).status_code == 401
    assert "revoked" in nstarx("keys", "list")
    minted = nstarx("keys", "create", "iris", "--name", "ci").splitlines()[0]
    assert httpx.post(url, json=ROW, headers=_bearer(minted)).status_code == 200
