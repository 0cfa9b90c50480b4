"""Bounded logs and the server-wide budget of request-body bytes, in process."""

from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING

import httpx

from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.edge import connection_cap
from nstarx_jupyter.serving.log_limits import RateLimitFilter
from nstarx_jupyter.serving.settings import ModelSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


def _logger(name: str, **limits: float) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RateLimitFilter(handler, **limits))  # type: ignore[arg-type]
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_a_flood_of_one_message_writes_a_few_lines_then_how_many_were_suppressed() -> None:
    logger, out = _logger("tests.flood", per_key=5, total=100, window_s=0.3)
    for i in range(10_000):
        logger.warning("accept failed on connection %d", i, exc_info=ValueError("boom"))
    assert out.getvalue().count("accept failed") == 5
    time.sleep(0.35)
    logger.warning("accept failed on connection %d", -1)
    lines = out.getvalue().splitlines()
    assert "suppressed 9995 similar messages: accept failed on connection %d" in lines
    assert lines[-1] == "accept failed on connection -1"


def test_many_kinds_of_messages_are_bounded_in_all() -> None:
    logger, out = _logger("tests.kinds", per_key=5, total=50, window_s=60)
    for i in range(5_000):
        logger.error(f"message of kind {i}")
    assert len(out.getvalue().splitlines()) == 50


def test_other_messages_still_pass_while_one_kind_floods() -> None:
    logger, out = _logger("tests.mixed", per_key=3, total=100, window_s=60)
    for _ in range(1_000):
        logger.warning("Invalid HTTP request received.")
    logger.error("model iris failed to load")
    assert out.getvalue().splitlines()[-1] == "model iris failed to load"


def _v2(rows: int) -> dict[str, object]:
    return {"inputs": [{"name": "input-0", "shape": [rows, 4], "datatype": "FP64",
                        "data": [5.1, 3.5, 1.4, 0.2] * rows}]}  # fmt: skip


async def test_bodies_over_the_servers_budget_get_503_and_every_byte_is_released(
    iris_path: Path,
) -> None:
    config = ServingConfig(max_body_bytes=100_000, max_inflight_body_bytes=5_000, auth=False)
    app = create_app([ModelSettings(name="iris", path=iris_path)], config)

    async def chunks(size: int) -> AsyncIterator[bytes]:
        yield b"x" * (size // 2)
        yield b"x" * (size - size // 2)

    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            over = await http.post("/v2/models/iris/infer", content=b"x" * 6_000)
            assert over.status_code == 503
            assert over.headers["retry-after"] == "1"
            streamed = await http.post("/v1/models/iris:predict", content=chunks(6_000))
            assert streamed.status_code == 503
            control = await http.post("/v2/repository/index", content=b"x" * 6_000)
            assert control.status_code == 503
            for _ in range(3):  # answered, refused or failed: each gives its bytes back
                assert (await http.post("/v2/models/iris/infer", json=_v2(2))).status_code == 200
                assert (await http.post("/v2/models/iris/infer", content=b"{")).status_code == 400
                assert (
                    await http.post("/v1/models/iris/predict", content=b"[1]")
                ).status_code == 400
                index = await http.post("/v2/repository/index", content=chunks(200))
                assert index.status_code == 400
                assert (await http.post("/v2/repository/index", json={})).status_code == 200
            assert app.budget.held_bytes == 0


def test_the_connection_cap_stays_clear_of_the_fd_limit() -> None:
    assert connection_cap(4096, 1024) == 768  # a burst of accepts and a reserve stay free
    assert connection_cap(100, 1_048_576) == 100
