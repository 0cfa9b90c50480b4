"""Routing over gRPC and across a restart: the variant rides in the response metadata."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.grpc import SERVICE, start_grpc_server

pytestmark = pytest.mark.integration
TOKEN = "admin-token-for-the-test"  # noqa: S105 - a test server's token


@pytest.fixture
async def served(tmp_path: Path, named_iris: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """An app with a control plane (state in tmp_path) and its gRPC server on a free port."""
    app = create_app([], ServingConfig(state_dir=tmp_path / "state", admin_token=TOKEN))
    async with app.lifespan():
        server, port = await start_grpc_server(app.dataplane, "127.0.0.1", 0, 1 << 20)
        transport = httpx.ASGITransport(app=app)
        headers = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                     headers=headers) as control:  # fmt: skip
            try:
                yield f"127.0.0.1:{port}", control
            finally:
                await server.stop(grace=None)


def _request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
    request.raw_input_contents.append(np.asarray([5.1, 3.5, 1.4, 0.2]).astype("<f8").tobytes())
    return request


async def test_grpc_answers_name_the_variant_and_follow_header_rules(
    served: tuple[str, httpx.AsyncClient], named_iris: Path
) -> None:
    target, control = served
    spec = {"storage_uri": str(named_iris), "trusted": True, "traffic": {
        "variants": [{"name": "gold", "storage_uri": str(named_iris)}],
        "rules": [{"header": "x-tier", "values": ["gold"], "variant": "gold"}]}}  # fmt: skip
    assert (await control.put("/nstarx/v1/deployments/iris", json=spec)).status_code == 201
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/ModelInfer", request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )  # fmt: skip
        owner = ("authorization", f"Bearer {TOKEN}")
        for metadata, variant in (((owner,), "primary"), ((owner, ("x-tier", "gold")), "gold")):
            pending = call(_request(), metadata=metadata)
            response = await pending
            sent = dict(await pending.initial_metadata())
            assert sent["x-nstarx-variant"] == variant
            assert sent["x-nstarx-model-version"] == response.model_version
            assert sent["x-request-id"]


async def test_a_running_canary_survives_a_restart(tmp_path: Path, named_iris: Path) -> None:
    state = tmp_path / "state"
    other = tmp_path / "other"
    shutil.copytree(named_iris, other)  # a new model: a new revision, started as a canary
    for round_ in range(2):
        app = create_app([], ServingConfig(state_dir=state, admin_token=TOKEN))
        async with app.lifespan():
            transport = httpx.ASGITransport(app=app)
            headers = {"authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=headers
            ) as http:
                url = "/nstarx/v1/deployments/iris"
                if round_ == 0:
                    # joblib files outside $NSTARX_HOME: the admin vouches for them
                    await http.put(url, json={"storage_uri": str(named_iris), "trusted": True})
                    await http.put(url, json={"storage_uri": str(other), "trusted": True,
                                              "canary_traffic_percent": 30})  # fmt: skip
                described = (await http.get(url)).json()
    # the second round is a new app on the same state folder: the canary was restored
    assert described["stable"]["revision"] == 1
    assert described["revision"] == 2
    split = {arm["variant"]: arm["percent"] for arm in described["traffic"]["split"]}
    assert split == {"stable": 70.0, "canary": 30.0}
