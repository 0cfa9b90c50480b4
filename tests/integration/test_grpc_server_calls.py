"""V2 gRPC on a real server in this process: the repository RPCs, errors and the threads' policy."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.serving import grpc as grpc_serving
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.grpc import SERVICE, start_grpc_server
from nstarx_jupyter.serving.settings import ModelSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
async def channel(iris_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    app = create_app([ModelSettings(name="iris", path=iris_path)], ServingConfig(auth=False))
    async with app.lifespan():
        server, port = await start_grpc_server(app.dataplane, "127.0.0.1", 0, 1 << 20)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
                yield chan
        finally:
            await server.stop(grace=None)


def _rpc(channel: grpc.aio.Channel, name: str, request: Any, response: Any) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/{name}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=response.FromString,
    )(request)


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="a Linux scheduling policy")
async def test_grpc_threads_run_under_sched_batch_and_the_event_loop_does_not(
    channel: grpc.aio.Channel,
) -> None:
    policy = os.sched_getscheduler(0)
    assert policy != os.SCHED_BATCH  # the loop's own policy, as the test runner set it
    assert (await _rpc(channel, "ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse)).live
    workers = [t.native_id for t in threading.enumerate() if t.name.startswith("nstarx-grpc")]
    assert workers  # the call above ran on one
    assert {os.sched_getscheduler(tid) for tid in workers if tid} == {os.SCHED_BATCH}
    assert os.sched_getscheduler(0) == policy


async def test_repository_unload_and_load_over_grpc(channel: grpc.aio.Channel) -> None:
    ready = pb.ModelReadyRequest(name="iris")
    assert (await _rpc(channel, "ModelReady", ready, pb.ModelReadyResponse)).ready
    unload = pb.RepositoryModelUnloadRequest(model_name="iris")
    assert (await _rpc(channel, "RepositoryModelUnload", unload, pb.RepositoryModelUnloadResponse)
            ).isUnloaded  # fmt: skip
    assert not (await _rpc(channel, "ModelReady", ready, pb.ModelReadyResponse)).ready
    load = pb.RepositoryModelLoadRequest(model_name="iris")
    assert (await _rpc(channel, "RepositoryModelLoad", load, pb.RepositoryModelLoadResponse)
            ).isLoaded  # fmt: skip
    assert (await _rpc(channel, "ModelReady", ready, pb.ModelReadyResponse)).ready


async def test_unknown_model_is_not_found_over_grpc(channel: grpc.aio.Channel) -> None:
    load = pb.RepositoryModelLoadRequest(model_name="nope")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _rpc(channel, "RepositoryModelLoad", load, pb.RepositoryModelLoadResponse)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    meta = pb.ModelMetadataRequest(name="iris", version="9")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _rpc(channel, "ModelMetadata", meta, pb.ModelMetadataResponse)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_server_bug_answers_internal_and_logs_a_bounded_number_of_tracebacks(
    iris_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(grpc_serving, "_CRASHES", grpc_serving._CrashLog(burst=3, window_s=60.0))
    app = create_app([ModelSettings(name="iris", path=iris_path)], ServingConfig(auth=False))
    async with app.lifespan():

        def broken() -> dict[str, Any]:
            raise RuntimeError("a bug in the server")

        monkeypatch.setattr(app.dataplane, "server_metadata", broken)
        server, port = await start_grpc_server(app.dataplane, "127.0.0.1", 0, 1 << 20)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for _ in range(20):
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await _rpc(channel, "ServerMetadata", pb.ServerMetadataRequest(),
                                   pb.ServerMetadataResponse)  # fmt: skip
                    assert caught.value.code() == grpc.StatusCode.INTERNAL
        finally:
            await server.stop(grace=None)
    tracebacks = [r for r in caplog.records if r.exc_info and r.name == grpc_serving.__name__]
    assert len(tracebacks) == 3  # the burst; the 17 others are counted, not logged
    assert "a bug in the server" in caplog.text


async def test_a_long_error_text_is_cut_so_the_mistake_stays_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    # The text names the input; a 20,000-character name made the status trailer too big for
    # the client, which then saw RESOURCE_EXHAUSTED instead of the mistake.
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="x" * 20_000, datatype="FP64", shape=[3])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _rpc(channel, "ModelInfer", request, pb.ModelInferResponse)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert details.startswith("input 'xxx")
    assert len(details) <= grpc_serving.MAX_DETAILS_CHARS + 40
