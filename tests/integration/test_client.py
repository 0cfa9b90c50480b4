"""InferenceClient against a real server process; its async twin and its retries in process."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter.client import AsyncInferenceClient, InferenceClient, InferenceError
from nstarx_jupyter.errors import ErrorKind, InvalidInputError
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.settings import ModelSettings
from tests.conftest import IRIS_FEATURES
from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration
ROWS = np.asarray([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])


@pytest.fixture(scope="module")
def server(iris_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("named")
    (folder / "model.joblib").write_bytes(iris_path.read_bytes())
    (folder / "model-settings.json").write_text(json.dumps({"options": {
        "feature_names": IRIS_FEATURES}}))  # fmt: skip
    process = start_server("--model", f"iris={folder}")
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[InferenceClient]:
    with InferenceClient(endpoint=f"{server.url}/v1/models/iris", timeout_s=10) as made:
        yield made


def test_a_record_gives_named_outputs(client: InferenceClient, iris_model: Any) -> None:
    record = dict(zip(IRIS_FEATURES, ROWS[0], strict=True))
    out = client.predict(record)
    assert out["prediction"] == int(iris_model.predict(ROWS[:1])[0])
    assert 0 < out["confidence"] <= 1
    assert set(out["probabilities"]) == {"0", "1", "2"}


def test_many_shapes_of_input_give_the_same_answers(
    client: InferenceClient, iris_model: LogisticRegression
) -> None:
    want = [int(v) for v in iris_model.predict(ROWS)]
    frame = pd.DataFrame(ROWS, columns=IRIS_FEATURES)
    records = frame.to_dict(orient="records")
    for data in (records, frame, ROWS, ROWS.tolist()):
        got = client.predict(data)
        assert [row["prediction"] for row in got] == want, type(data)
    assert client.predict(ROWS[0])["prediction"] == want[0]  # one row of an array: one answer
    assert client.ready()


def test_server_mistakes_arrive_typed_with_the_servers_message(client: InferenceClient) -> None:
    with pytest.raises(InferenceError, match="sepal_width") as caught:
        client.predict({"sepal_length": 5.1, "petal_length": 1.4, "petal_width": 0.2})
    assert caught.value.status == 400
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    with (
        InferenceClient(endpoint=client.endpoint.replace("/iris", "/nope"), retries=0) as other,
        pytest.raises(InferenceError) as caught,
    ):
        other.predict({"a": 1})
    assert caught.value.status == 404
    with pytest.raises(InvalidInputError, match="not set"):
        client.predict({1, 2})
    with pytest.raises(InvalidInputError, match="should look like"):
        InferenceClient(endpoint="http://127.0.0.1:1/predict")


def test_an_unreachable_server_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/v1/models/iris"
    with (
        InferenceClient(url, retries=2, backoff_s=0.01) as client,
        pytest.raises(InferenceError, match="cannot reach") as caught,
    ):
        client.predict({"a": 1})
    assert caught.value.status == 503


def test_503_is_retried_with_retry_after_and_other_errors_are_not() -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(503, headers={"retry-after": "0"}, json={"error": "busy"})
        return httpx.Response(200, json=[{"prediction": 1}])

    with InferenceClient("http://model.test/v1/models/m",
                         transport=httpx.MockTransport(answer)) as client:  # fmt: skip
        assert client.predict({"x": 1}) == {"prediction": 1}
    assert len(calls) == 3

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"error": "no"})

    calls.clear()
    with (
        InferenceClient(
            "http://model.test/v1/models/m", transport=httpx.MockTransport(refuse)
        ) as bad,
        pytest.raises(InferenceError, match="no"),
    ):
        bad.predict({"x": 1})
    assert len(calls) == 1


async def test_the_async_twin_answers_like_the_sync_client(
    iris_path: Path, iris_model: LogisticRegression
) -> None:
    settings = ModelSettings(name="iris", path=iris_path, options={"feature_names": IRIS_FEATURES})
    app = create_app([settings], ServingConfig(auth=False))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with AsyncInferenceClient("http://test/v1/models/iris", transport=transport) as ac:
            got = await ac.predict(pd.DataFrame(ROWS, columns=IRIS_FEATURES))
            assert [r["prediction"] for r in got] == [int(v) for v in iris_model.predict(ROWS)]
            assert await ac.ready()
            with pytest.raises(InferenceError) as caught:
                await ac.predict({"sepal_length": 1})
            assert caught.value.status == 400
