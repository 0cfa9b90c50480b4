"""Security on a real server: every route needs a key, scopes, model access rules on every
transport, rate limits, revocation and rotation from each front end, and the audit log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

import nstarx_jupyter as nsx
from nstarx_jupyter import deploy
from nstarx_jupyter.client import InferenceClient
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.security.audit_log import read_audit
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.grpc import _RPCS
from tests.conftest import IRIS_FEATURES
from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration
MARKER = 5.123456789  # a payload value that must appear in no log
ROW = dict(zip(IRIS_FEATURES, [MARKER, 3.5, 1.4, 0.2], strict=True))
V2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                  "data": [MARKER, 3.5, 1.4, 0.2]}]}  # fmt: skip
GRPC_INFER = pb.ModelInferRequest(model_name="iris", inputs=[pb.ModelInferRequest.InferInputTensor(
    name="input-0", datatype="FP64", shape=[1, 4],
    contents=pb.InferTensorContents(fp64_contents=[MARKER, 3.5, 1.4, 0.2]))])  # fmt: skip


@pytest.fixture
def server(nstarx_home: Path) -> Iterator[tuple[ServerProcess, LocalBackend]]:
    """A server with its defaults (keys required), a control API and gRPC."""
    state_dir = nstarx_home / "server"
    process = start_server("--state-dir", str(state_dir), "--grpc-port", "0", auth=True)
    yield process, LocalBackend(state_dir, timeout_s=60)
    process.stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _rpc(channel: grpc.Channel, name: str) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
    request, response = _RPCS[name]
    return channel.unary_unary(f"/inference.GRPCInferenceService/{name}",
                               request_serializer=request.SerializeToString,
                               response_deserializer=response.FromString)  # fmt: skip


def _grpc_request(name: str) -> object:
    request_type = _RPCS[name][0]
    if name == "ModelInfer":
        return GRPC_INFER
    fields = request_type.DESCRIPTOR.fields_by_name
    return request_type(**({"name": "iris"} if "name" in fields else
                           {"model_name": "iris"} if "model_name" in fields else {}))  # fmt: skip


def test_every_route_but_live_health_needs_a_valid_key(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    process, backend = server
    iris = deploy(named_iris, "iris", backend=backend)
    gone = iris.create_key("gone")
    iris.revoke_key(gone)
    # Every route the app has, enumerated from the app itself (so a new route is covered).
    table = create_app([], ServingConfig(state_dir=Path("unused"), audit=False)).route_table()
    assert len(table) > 30
    params = {"name": "iris", "version": "1", "key": "nsx_00000000", "model": "iris", "id": "0"}
    bad = {
        "no key": {},
        "bad key": _bearer("nsx_12345678_" + "x" * 43),
        "revoked key": _bearer(gone),
        "not bearer": {"Authorization": f"Basic {iris.api_key}"},
    }
    for method, template in table:
        url = process.url + template.format(**params)
        for what, headers in bad.items():
            got = httpx.request(method, url, headers=headers, json={})
            if template in ("/v2/health/live", "/openapi.json"):  # open: they name no model
                assert got.status_code == 200
                continue
            assert got.status_code == 401, (method, template, what, got.text)
            assert got.headers["www-authenticate"].startswith("Bearer")
    # gRPC: every method but ServerLive.
    assert process.grpc is not None
    with grpc.insecure_channel(process.grpc) as channel:
        for name in _RPCS:
            for headers in bad.values():
                metadata = tuple((k.lower(), v) for k, v in headers.items())
                if name == "ServerLive":
                    assert _rpc(channel, name)(_grpc_request(name), metadata=metadata).live
                    continue
                with pytest.raises(grpc.RpcError) as refused:
                    _rpc(channel, name)(_grpc_request(name), metadata=metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name


def test_scopes_on_rest_v2_and_grpc(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    process, backend = server
    iris = deploy(named_iris, "iris", backend=backend)
    deploy(named_iris, "wine", backend=backend)
    base = process.url
    key = iris.api_key  # predict:iris
    assert key is not None
    calls = [("POST", "/v1/models/iris/predict", ROW),
             ("POST", "/v1/models/iris:predict", {"instances": [[5, 3, 1, 0]]}),
             ("POST", "/v2/models/iris/infer", V2),
             ("GET", "/v2/models/iris", None), ("GET", "/v1/models/iris", None)]  # fmt: skip
    for method, path, body in calls:
        assert (
            httpx.request(method, base + path, json=body, headers=_bearer(key)).status_code == 200
        )
        wine = path.replace("iris", "wine")
        got = httpx.request(method, base + wine, json=body, headers=_bearer(key))
        assert got.status_code == 403, wine
        assert "may not" in got.json()["error"]
        nope = path.replace("iris", "nope")  # no such model: 404, as the README says
        got = httpx.request(method, base + nope, json=body, headers=_bearer(key))
        assert got.status_code == 404, nope
        assert "model 'nope' not found" in got.json()["error"]
    # Listings show only what the key may read; server-wide and control routes need more.
    assert httpx.get(base + "/v1/models", headers=_bearer(key)).json() == {"models": ["iris"]}
    assert httpx.get(base + "/metrics", headers=_bearer(key)).status_code == 403
    assert httpx.post(base + "/v2/repository/models/iris/unload",
                      headers=_bearer(key)).status_code == 403  # fmt: skip
    assert httpx.get(base + "/nstarx/v1/deployments/iris", headers=_bearer(key)).status_code == 403
    assert httpx.get(base + "/nstarx/v1/keys", headers=_bearer(key)).status_code == 403
    # manage:iris runs the deployment, not the keys; metrics is for scrapers.
    manager = nsx.create_key("ops", ["manage:iris"], backend=backend)["key"]
    assert httpx.get(base + "/nstarx/v1/deployments/iris",
                     headers=_bearer(manager)).status_code == 200  # fmt: skip
    listed = httpx.get(base + "/nstarx/v1/deployments", headers=_bearer(manager)).json()
    assert [d["name"] for d in listed] == ["iris"]
    assert httpx.get(base + "/nstarx/v1/keys", headers=_bearer(manager)).status_code == 403
    scraper = nsx.create_key("prometheus", ["metrics"], backend=backend)["key"]
    assert httpx.get(base + "/metrics", headers=_bearer(scraper)).status_code == 200
    assert process.grpc is not None
    with grpc.insecure_channel(process.grpc) as channel:
        infer = _rpc(channel, "ModelInfer")
        assert infer(GRPC_INFER, metadata=(("authorization", f"Bearer {key}"),)).model_name
        to_wine = pb.ModelInferRequest()
        to_wine.CopyFrom(GRPC_INFER)
        to_wine.model_name = "wine"
        with pytest.raises(grpc.RpcError) as refused:
            infer(to_wine, metadata=(("authorization", f"Bearer {key}"),))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_registry_model_access_rules_hold_on_every_transport(
    server: tuple[ServerProcess, LocalBackend], iris_data: tuple[object, object]
) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from nstarx_jupyter.registry import Registry

    process, backend = server
    x, y = iris_data
    frame = pd.DataFrame(x, columns=IRIS_FEATURES)
    model = LogisticRegression(max_iter=1000).fit(frame, y)
    Registry().register(model, "fraud", input_example=frame.head(2))
    deploy("models:/fraud/1", "fraud", backend=backend)
    app = nsx.create_key("fraud-app", ["predict:*"], backend=backend)["key"]
    bob = nsx.create_key("bob", ["predict:*", "manage:*"], backend=backend)["key"]
    base = process.url
    assert httpx.post(f"{base}/v1/models/fraud/predict", json=ROW,
                      headers=_bearer(bob)).status_code == 200  # no rules yet  # fmt: skip
    nsx.set_access("fraud", call=["fraud-app"], deploy=["alice"], backend=backend)
    assert nsx.access_rules(backend=backend) == {
        "fraud": {"call": ["fraud-app"], "deploy": ["alice"]}}  # fmt: skip
    for path, body in [("/v1/models/fraud/predict", ROW), ("/v2/models/fraud/infer", V2)]:
        assert httpx.post(base + path, json=body, headers=_bearer(app)).status_code == 200
        refused = httpx.post(base + path, json=body, headers=_bearer(bob))
        assert refused.status_code == 403
        assert "registry model 'fraud' does not let" in refused.json()["error"]
    assert httpx.get(f"{base}/v2/models/fraud", headers=_bearer(bob)).status_code == 403
    assert httpx.get(f"{base}/v2/models/fraud", headers=_bearer(app)).status_code == 200
    assert process.grpc is not None
    request = pb.ModelInferRequest()
    request.CopyFrom(GRPC_INFER)
    request.model_name = "fraud"
    with grpc.insecure_channel(process.grpc) as channel:
        infer = _rpc(channel, "ModelInfer")
        assert infer(request, metadata=(("authorization", f"Bearer {app}"),)).model_name
        with pytest.raises(grpc.RpcError) as denied:
            infer(request, metadata=(("authorization", f"Bearer {bob}"),))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Deploying the model again (another deployment) takes `deploy`: bob manages, alice deploys.
    spec = {"storage_uri": "models:/fraud/1"}
    put = httpx.put(f"{base}/nstarx/v1/deployments/fraud-b", json=spec, headers=_bearer(bob))
    assert put.status_code == 403
    assert "deploy" in put.json()["error"]
    alice = nsx.create_key("alice", ["manage:fraud-b"], backend=backend)["key"]
    put = httpx.put(f"{base}/nstarx/v1/deployments/fraud-b", json=spec, headers=_bearer(alice),
                    timeout=60)  # fmt: skip
    assert put.status_code == 201, put.text


def test_a_rate_limited_key_gets_429_and_waiting_succeeds(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    process, backend = server
    iris = deploy(named_iris, "iris", backend=backend)
    key = iris.create_key("slow", rate_limit=2, burst=2)
    url = f"{iris.url}/predict"
    answers = [httpx.post(url, json=ROW, headers=_bearer(key)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    wait = answers[2].headers["retry-after"]
    assert wait == "1"
    assert "rate limit of 2 requests/s" in answers[2].json()["error"]
    time.sleep(float(wait))
    assert httpx.post(url, json=ROW, headers=_bearer(key)).status_code == 200
    # gRPC says RESOURCE_EXHAUSTED with the same hint in its trailing metadata.
    assert process.grpc is not None
    with grpc.insecure_channel(process.grpc) as channel:
        infer = _rpc(channel, "ModelInfer")
        metadata = (("authorization", f"Bearer {key}"),)
        limited = None
        for _ in range(3):  # the bucket holds at most 2
            try:
                infer(GRPC_INFER, metadata=metadata)
            except grpc.RpcError as exc:
                limited = exc
                break
        assert limited is not None
        assert limited.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailing: Any = limited.trailing_metadata() or ()
        assert ("retry-after", "1") in [tuple(item) for item in trailing]
    # The client waits as told and then succeeds, without the caller doing anything.
    time.sleep(1)
    with InferenceClient(iris.url, api_key=key, retries=3) as client:
        assert all("prediction" in client.predict(ROW) for _ in range(4))


def _nstarx(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "nstarx_jupyter.cli", *args],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_keys_from_the_cli_notebook_and_control_api_revoke_within_a_second(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    _process, backend = server
    iris = deploy(named_iris, "iris", backend=backend)
    url = f"{iris.url}/predict"
    # The CLI writes the key file the running server reads: no server call needed.
    minted = _nstarx("keys", "create", "iris", "--name", "cli-app", "--expires-in", "1d",
                     "--rate-limit", "50").splitlines()  # fmt: skip
    key = minted[0]
    assert "predict:iris" in minted[1]
    deadline = time.monotonic() + 2
    while httpx.post(url, json=ROW, headers=_bearer(key)).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    listing = _nstarx("keys", "list")
    prefix = "_".join(key.split("_")[:2])
    assert prefix in listing
    assert key not in listing
    assert "50/s" in listing
    _nstarx("keys", "revoke", prefix)
    revoked_at = time.monotonic()
    while httpx.post(url, json=ROW, headers=_bearer(key)).status_code != 401:
        time.sleep(0.02)
    assert time.monotonic() - revoked_at < 1.0
    # Rotation from the CLI: the new key works, the old one stops (no grace).
    old = nsx.create_key("rotating", ["predict:iris"], backend=backend)["key"]
    rotated = _nstarx("keys", "rotate", old).splitlines()
    new = rotated[0]
    assert "replaces" in rotated[1]
    deadline = time.monotonic() + 1.0
    while httpx.post(url, json=ROW, headers=_bearer(old)).status_code != 401:
        assert time.monotonic() < deadline, "the rotated key still works"
        time.sleep(0.02)
    assert httpx.post(url, json=ROW, headers=_bearer(new)).status_code == 200
    # Rotation from the notebook with a grace period, and from the control API.
    before = iris.api_key
    assert before is not None
    after = iris.rotate_key(grace=30)
    assert iris.api_key == after
    assert httpx.post(url, json=ROW, headers=_bearer(before)).status_code == 200  # in its grace
    assert httpx.post(url, json=ROW, headers=_bearer(after)).status_code == 200
    state = backend.ensure_server()
    made = httpx.post(f"{state.url}/nstarx/v1/keys/{'_'.join(after.split('_')[:2])}/rotate",
                      headers=_bearer(state.token), json={})  # fmt: skip
    assert made.status_code == 201
    assert httpx.post(url, json=ROW, headers=_bearer(after)).status_code == 401
    assert httpx.post(url, json=ROW, headers=_bearer(made.json()["key"])).status_code == 200
    keys = nsx.list_keys(backend=backend)
    assert {"prefix", "scopes", "state"} <= set(keys.columns)
    assert "key" not in keys.columns
    assert "digest" not in keys.columns
    assert set(keys[keys["name"] == "notebook deploy of iris"]["state"]) == {"active", "revoked"}
    iris.delete()  # the keys its deploy minted (and their rotations) go; keys made on purpose stay
    keys = nsx.list_keys(backend=backend)
    assert set(keys[keys["name"] == "notebook deploy of iris"]["state"]) == {"revoked"}
    assert "active" in set(keys[keys["name"] == "rotating"]["state"])
    assert httpx.post(url, json=ROW, headers=_bearer(made.json()["key"])).status_code == 401


def test_the_audit_log_records_calls_without_secrets_and_survives_kill_9(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path, nstarx_home: Path
) -> None:
    process, backend = server
    iris = deploy(named_iris, "iris", backend=backend)
    key = iris.api_key
    assert key is not None
    url = f"{iris.url}/predict"
    assert httpx.post(url, json=ROW, headers=_bearer(key)).status_code == 200
    assert httpx.post(url, json=ROW).status_code == 401
    unload = url.replace("v1/models/iris/predict", "v2/repository/models/iris/unload")
    assert httpx.post(unload, headers=_bearer(key)).status_code == 403  # predict:iris only
    elsewhere = url.replace("iris", "nope")
    assert httpx.post(elsewhere, json=ROW, headers=_bearer(key)).status_code == 404
    assert process.grpc is not None
    with grpc.insecure_channel(process.grpc) as channel:
        _rpc(channel, "ModelInfer")(GRPC_INFER, metadata=(("authorization", f"Bearer {key}"),))
    frame = iris.audit()
    key_id = key.split("_")[1]
    calls = frame[(frame["key"] == key_id) & (frame["status"] == 200)]
    assert set(calls["transport"]) >= {"rest", "grpc"}
    assert set(calls["version"]) == {"1"}
    assert (calls["latency_ms"] > 0).all()
    assert set(calls["principal"]) == {"notebook deploy of iris"}
    everything = nsx.audit_log(backend=backend)
    assert everything.columns[0] == "time"
    assert {401, 403, 404} <= set(everything["status"])
    assert {"deployment.put", "keys.post"} <= set(everything["action"])
    # kill -9: the records written so far stay readable; a new server appends after them.
    backend_state = backend.running()
    before = len(read_audit(nstarx_home / "audit"))
    os.kill(process.process.pid, signal.SIGKILL)
    process.process.wait()
    if backend_state is not None and backend_state.pid != process.process.pid:
        os.kill(backend_state.pid, signal.SIGKILL)
    assert len(read_audit(nstarx_home / "audit")) == before
    again = deploy(named_iris, "iris", backend=backend)
    try:
        assert httpx.post(f"{again.url}/predict", json=ROW,
                          headers=_bearer(key)).status_code == 200  # fmt: skip
        assert len(read_audit(nstarx_home / "audit")) > before
        # No key and no payload in plain text anywhere under $NSTARX_HOME or in server output.
        secrets_ = [key, again.api_key or "", backend.ensure_server().token]
        for path in nstarx_home.rglob("*"):
            if not path.is_file() or path.name in ("admin-token", "state.json"):
                continue  # the owner's token lives there, owner-only, by design
            data = path.read_bytes()
            for secret in secrets_:
                assert secret.encode() not in data, path
            if path.suffix in (".jsonl", ".log", ".json"):
                assert str(MARKER).encode() not in data, path
        output = "".join(process.output)
        assert key not in output
        assert str(MARKER) not in output
    finally:
        backend.stop()


def test_a_public_deployment_and_keys_survive_a_restart(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path, nstarx_home: Path
) -> None:
    process, backend = server
    iris = deploy(named_iris, "iris", backend=backend)
    key = iris.api_key
    assert key is not None
    stored = (nstarx_home / "security" / "keys.json").read_text()
    assert key not in stored
    assert key.split("_", 2)[2] not in stored
    assert json.loads(stored)[0]["scopes"] == ["predict:iris"]
    process.stop()
    restarted = deploy(named_iris, "iris", backend=backend)
    try:
        url = f"{restarted.url}/predict"
        assert httpx.post(url, json=ROW).status_code == 401
        assert httpx.post(url, json=ROW, headers=_bearer(key)).status_code == 200
        opened = deploy(named_iris, "iris", backend=backend, auth=False)
        assert opened.api_key is None
        assert httpx.post(url, json=ROW).status_code == 200  # inference is open...
        server_url = backend.ensure_server().url
        assert httpx.get(f"{server_url}/v2/models/iris").status_code == 200
        assert httpx.get(f"{server_url}/metrics").status_code == 401  # ...the rest is not
        assert httpx.get(f"{server_url}/nstarx/v1/deployments").status_code == 401
    finally:
        backend.stop()


def test_access_rules_and_the_audit_log_from_the_cli_need_no_server(nstarx_home: Path) -> None:
    made = _nstarx("keys", "create", "--scope", "manage:fraud", "--name", "alice").splitlines()
    assert made[0].startswith("nsx_")
    assert "manage:fraud" in made[1]
    assert _nstarx("access", "list").strip() == "no access rules: keys' scopes decide"
    assert "call: fraud-app" in _nstarx("access", "set", "fraud", "--call", "fraud-app",
                                        "--deploy", "alice")  # fmt: skip
    listed = _nstarx("access", "list").splitlines()
    assert listed[1].split() == ["fraud", "-", "alice", "fraud-app"]
    stored = json.loads((nstarx_home / "security" / "access.json").read_text())
    assert stored == {"fraud": {"call": ["fraud-app"], "deploy": ["alice"]}}
    audit = _nstarx("audit", "--since", "10m").splitlines()
    assert [line.split()[3] for line in audit[1:]] == ["keys.create", "access.put"]
    assert made[0] not in "".join(audit)
