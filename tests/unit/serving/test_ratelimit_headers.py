"""`RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers) for keys
with a rate limit, on answers and on 429s, over REST and gRPC."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest

from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.grpc import start_grpc_server
from nstarx_jupyter.serving.settings import ModelSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from nstarx_jupyter.serving.inference_http import InferenceApp

TOKEN = "admin-token-for-the-test"  # noqa: S105 - a test server's token
INFER = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                     "data": [5.1, 3.5, 1.4, 0.2]}]}  # fmt: skip
REMAINING = re.compile(r'^"default";r=(\d+);t=(\d+)$')


@pytest.fixture
async def app(iris_path: Path) -> AsyncIterator[InferenceApp]:
    made = create_app([ModelSettings(name="iris", path=iris_path)],
                      ServingConfig(admin_token=TOKEN))  # fmt: skip
    async with made.lifespan():
        yield made


def _key(app: InferenceApp, rate_limit: float | None = None, burst: int | None = None) -> str:
    _, secret = app.dataplane.guard.keys.create("k", ["predict:*"], rate_limit=rate_limit,
                                                burst=burst)  # fmt: skip
    return secret


def _client(app: InferenceApp, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                             headers={"authorization": f"Bearer {key}"})  # fmt: skip


async def test_a_limited_key_sees_its_policy_and_what_is_left_a_429_says_when_others_see_none(
    app: InferenceApp,
) -> None:
    async with _client(app, _key(app, rate_limit=1, burst=3)) as http:
        left = []
        for _ in range(3):
            answer = await http.post("/v2/models/iris/infer", json=INFER)
            assert answer.status_code == 200
            assert answer.headers["ratelimit-policy"] == '"default";q=3;w=3'
            match = REMAINING.match(answer.headers["ratelimit"])
            assert match is not None, answer.headers["ratelimit"]
            left.append((int(match[1]), int(match[2])))
        assert [r for r, _ in left] == [2, 1, 0]
        assert [t for _, t in left] == [1, 2, 3]  # seconds until the bucket is full again
        refused = await http.post("/v2/models/iris/infer", json=INFER)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["ratelimit-policy"] == '"default";q=3;w=3'
        assert REMAINING.match(refused.headers["ratelimit"])[1] == "0"  # type: ignore[index]
        # The other REST routes and the V1 route say it too.
        other = await http.get("/v2/health/ready")
        assert other.status_code == 429
        assert "ratelimit" in other.headers
    # Keys without a limit and the admin get none.
    for key in (_key(app), TOKEN):
        async with _client(app, key) as http:
            answer = await http.post("/v2/models/iris/infer", json=INFER)
            assert answer.status_code == 200
            assert "ratelimit" not in answer.headers
            assert "ratelimit-policy" not in answer.headers


async def test_the_policy_follows_the_rate_when_the_burst_refills_in_under_a_second(
    app: InferenceApp,
) -> None:
    async with _client(app, _key(app, rate_limit=50, burst=10)) as http:
        row = [5.1, 3.5, 1.4, 0.2]
        answer = await http.post("/v1/models/iris:predict", json={"instances": [row]})
        assert answer.status_code == 200
        assert answer.headers["ratelimit-policy"] == '"default";q=50;w=1'
        assert answer.headers["ratelimit"] == '"default";r=9;t=1'


def _pairs(metadata: Any) -> dict[str, str]:
    return {str(key): str(value) for key, value in metadata or ()}


async def test_grpc_sends_the_headers_as_trailing_metadata(app: InferenceApp) -> None:
    server, port = await start_grpc_server(app.dataplane, "127.0.0.1", 0, 1 << 20)
    key = _key(app, rate_limit=1, burst=1)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            ready = channel.unary_unary(
                "/inference.GRPCInferenceService/ServerReady",
                request_serializer=pb.ServerReadyRequest.SerializeToString,
                response_deserializer=pb.ServerReadyResponse.FromString,
            )
            metadata = (("authorization", f"Bearer {key}"),)
            call = ready(pb.ServerReadyRequest(), metadata=metadata)
            assert (await call).ready
            trailing = _pairs(await call.trailing_metadata())
            assert trailing["ratelimit-policy"] == '"default";q=1;w=1'
            assert trailing["ratelimit"] == '"default";r=0;t=1'
            refused = ready(pb.ServerReadyRequest(), metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await refused
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            trailing = _pairs(caught.value.trailing_metadata())
            assert trailing["retry-after"] == "1"
            assert trailing["ratelimit"].startswith('"default";r=0;')
    finally:
        await server.stop(grace=None)
