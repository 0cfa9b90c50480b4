"""An upgraded connection in the edge's books, on a real uvicorn server in this process: out
of the waiting connections (no read deadline closes a live stream), under the cap until it
closes, and its messages' body bytes given back."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import TYPE_CHECKING

import uvicorn
from websockets.asyncio.client import connect

from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.server import _uvicorn_config
from nstarx_jupyter.serving.settings import ModelSettings
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from pathlib import Path

RECORD = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


async def test_a_stream_leaves_the_waiting_books_and_keeps_its_place_until_closed(
    iris_path: Path,
) -> None:
    config = ServingConfig(auth=False, audit=False, header_timeout_s=0.3, body_timeout_s=0.3)
    settings = ModelSettings(name="iris", path=iris_path, options={"feature_names": IRIS_FEATURES})
    app = create_app([settings], config)
    uv_config = _uvicorn_config(app, config, None)
    edge = uv_config.http.edge  # type: ignore[union-attr]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uv_config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        async with connect(f"ws://127.0.0.1:{port}/v2/models/iris/stream") as ws:
            for _ in range(4):  # past the header and body deadlines: the sweep runs meanwhile
                await ws.send(json.dumps(RECORD))
                assert json.loads(await ws.recv())["prediction"] == 0
                assert not edge.waiting
                assert edge.open == 1
                await asyncio.sleep(0.4)
        for _ in range(100):
            if edge.open == 0:
                break
            await asyncio.sleep(0.01)
        assert edge.open == 0
        assert app.budget.held_bytes == 0
    finally:
        server.should_exit = True
        await task
