"""The REST transport in process: V2, V1, product records, repository, errors and metrics."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.settings import ModelSettings
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

ROW = [5.1, 3.5, 1.4, 0.2]
# One server for the module: starting one loads three models and settles the heap (a full
# garbage collection), which costs more than every request here put together.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(iris_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The server shared by the tests that change nothing in it."""
    async with _serving(iris_path) as http:
        yield http


@pytest_asyncio.fixture(loop_scope="module")
async def own_client(iris_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A server of its own, for a test that unloads models or counts requests."""
    async with _serving(iris_path) as http:
        yield http


@contextlib.asynccontextmanager
async def _serving(iris_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    named = {"feature_names": IRIS_FEATURES}
    models = [
        ModelSettings(name="iris", path=iris_path),
        ModelSettings(name="iris", version="2", path=iris_path, options=named),
        ModelSettings(name="bare", path=iris_path),
    ]
    app = create_app(models, ServingConfig(max_body_bytes=4096, auth=False))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def v2_body(data: Any, shape: list[int], datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}],
        **extra,
    }


async def test_health_and_server_metadata(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}
    meta = (await client.get("/v2")).json()
    assert meta["name"] == "nstarx"
    assert "binary_tensor_data" in meta["extensions"]


async def test_model_metadata_declares_real_inputs_and_outputs(client: httpx.AsyncClient) -> None:
    meta = (await client.get("/v2/models/iris")).json()
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    versioned = (await client.get("/v2/models/iris/versions/1")).json()
    assert versioned["versions"] == ["1"]


async def test_model_ready_with_and_without_version(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/models/iris/ready")).json() == {"name": "iris", "ready": True}
    assert (await client.get("/v2/models/iris/versions/2/ready")).status_code == 200
    missing = await client.get("/v2/models/iris/versions/9/ready")
    assert missing.status_code == 404
    assert "version '9'" in missing.json()["error"]


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64"])
async def test_infer_matches_the_model(
    client: httpx.AsyncClient, iris_model: LogisticRegression, datatype: str
) -> None:
    rows = [[5, 3, 1, 0], [6, 3, 5, 2]]
    response = await client.post("/v2/models/iris/infer", json=v2_body(rows, [2, 4], datatype))
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["model_name"] == "iris"
    assert doc["model_version"] == "2"  # the newest version answers unversioned requests
    assert "id" not in doc  # optional fields are omitted, not null
    assert "parameters" not in doc
    (out,) = doc["outputs"]
    assert (out["name"], out["shape"], out["datatype"]) == ("predict", [2], "INT64")
    assert out["data"] == iris_model.predict(np.asarray(rows, dtype=float)).tolist()


async def test_infer_flat_and_nested_data_agree_and_echo_id(client: httpx.AsyncClient) -> None:
    flat = await client.post(
        "/v2/models/iris/versions/1/infer", json=v2_body([*ROW, *ROW], [2, 4], id="req-7")
    )
    nested = await client.post("/v2/models/iris/versions/1/infer", json=v2_body([ROW, ROW], [2, 4]))
    assert flat.json()["id"] == "req-7"
    assert flat.json()["outputs"] == nested.json()["outputs"]


async def test_requested_outputs_and_parameters(client: httpx.AsyncClient) -> None:
    body = v2_body(ROW, [1, 4], outputs=[{"name": "predict_proba"}], parameters={"x": 1})
    doc = (await client.post("/v2/models/iris/infer", json=body)).json()
    (out,) = doc["outputs"]
    assert (out["name"], out["shape"]) == ("predict_proba", [1, 3])
    assert sum(out["data"]) == pytest.approx(1.0)


async def test_bool_and_bytes_datatypes_are_decoded_and_checked(
    client: httpx.AsyncClient,
) -> None:
    bools = await client.post("/v2/models/iris/infer", json=v2_body([True] * 4, [1, 4], "BOOL"))
    text = await client.post("/v2/models/iris/infer", json=v2_body(["a"] * 4, [1, 4], "BYTES"))
    assert bools.status_code == 200  # booleans cast to the model's FP64 like any number
    assert text.status_code == 400
    assert "BYTES" in text.json()["error"]


async def test_request_without_content_type_is_accepted(client: httpx.AsyncClient) -> None:
    import orjson

    response = await client.post(
        "/v2/models/iris/infer", content=orjson.dumps(v2_body(ROW, [1, 4])), headers={}
    )
    assert response.status_code == 200
    assert "content-type" not in {k.lower() for k in response.request.headers}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"[]", "JSON object"),
        (b'{"inputs": []}', "non-empty"),
        (b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64"}]}', "no 'data'"),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FLOAT", "data": [1,2,3,4]}]}',
         "unsupported datatype"),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32", "data": [1.5,2,3,4]}]}',
         "non-integer"),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1,2,3]}]}',
         "needs 4"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1,2,3]}]}',
         "expects [-1, 4]"),
        (b'{"inputs": [{"name": "x", "shape": [-1, 4], "datatype": "FP32", "data": [1,2,3,4]}]}',
         "non-negative"),
        (b'{"inputs": [{"name": "a", "shape": [1,4], "datatype": "FP32", "data": [1,2,3,4]},'
         b'{"name": "b", "shape": [1,4], "datatype": "FP32", "data": [1,2,3,4]}]}',
         "unknown input"),
        (b'{"inputs": [{"name": "x", "shape": [1,4], "datatype": "FP32", "data": [1,2,3,4]}],'
         b' "outputs": [{"name": "nope"}]}', "unknown output 'nope'"),
    ],
)  # fmt: skip
async def test_client_mistakes_are_400_with_a_message(
    client: httpx.AsyncClient, body: bytes, message: str
) -> None:
    response = await client.post("/v2/models/iris/infer", content=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


async def test_unknown_model_version_and_route_are_404(client: httpx.AsyncClient) -> None:
    for response in [
        await client.post("/v2/models/nope/infer", json=v2_body(ROW, [1, 4])),
        await client.post("/v2/models/iris/versions/9/infer", json=v2_body(ROW, [1, 4])),
        await client.get("/v2/models/nope"),
        await client.get("/v1/models/nope"),
        await client.get("/no/such/route"),
    ]:
        assert response.status_code == 404
        assert set(response.json()) == {"error"}


async def test_wrong_method_is_405_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/models/iris/infer")
    assert response.status_code == 405
    assert "error" in response.json()


async def test_body_over_the_cap_is_413_before_reading(client: httpx.AsyncClient) -> None:
    big = b"x" * 5000
    response = await client.post("/v2/models/iris/infer", content=big)
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 1000

    streamed = await client.post("/v2/models/iris/infer", content=chunks())  # no Content-Length
    assert streamed.status_code == 413


async def test_binary_tensor_data_in_and_out(
    client: httpx.AsyncClient, iris_model: LogisticRegression
) -> None:
    import orjson

    rows = np.asarray([ROW, [6.0, 3.0, 5.0, 2.0]], dtype=np.float32)
    header = orjson.dumps(
        {
            "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                        "parameters": {"binary_data_size": rows.nbytes}}],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    )  # fmt: skip
    response = await client.post(
        "/v2/models/iris/infer",
        content=header + rows.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    json_length = int(response.headers["inference-header-content-length"])
    doc = orjson.loads(response.content[:json_length])
    (out,) = doc["outputs"]
    assert "data" not in out
    values = np.frombuffer(response.content[json_length:], dtype=np.int64)
    assert out["parameters"]["binary_data_size"] == values.nbytes
    assert values.tolist() == iris_model.predict(rows.astype(float)).tolist()


async def test_v1_models_and_predict(
    client: httpx.AsyncClient, iris_model: LogisticRegression
) -> None:
    assert (await client.get("/v1/models")).json() == {"models": ["iris", "bare"]}
    assert (await client.get("/v1/models/iris")).json() == {"name": "iris", "ready": True}
    expected = iris_model.predict(np.asarray([ROW])).tolist()
    for key in ("instances", "inputs"):
        response = await client.post("/v1/models/iris:predict", json={key: [ROW]})
        assert response.json() == {"predictions": expected}
    bad = await client.post("/v1/models/iris:predict", json={"rows": [ROW]})
    assert bad.status_code == 400


async def test_records_endpoint_names_outputs(
    client: httpx.AsyncClient, iris_model: LogisticRegression
) -> None:
    record = dict(zip(IRIS_FEATURES, ROW, strict=True))
    one = await client.post("/v1/models/iris/predict", json=record)
    assert one.status_code == 200, one.text
    doc = one.json()
    proba = iris_model.predict_proba(np.asarray([ROW]))[0]
    assert doc["prediction"] == int(iris_model.predict(np.asarray([ROW]))[0])
    assert doc["confidence"] == pytest.approx(proba.max())
    assert doc["probabilities"] == pytest.approx({"0": proba[0], "1": proba[1], "2": proba[2]})
    many = (await client.post("/v1/models/iris/predict", json=[record, record])).json()
    assert isinstance(many, list)
    assert len(many) == 2


async def test_records_sent_to_the_v1_and_v2_paths_are_answered_as_records(
    client: httpx.AsyncClient,
) -> None:
    """KServe's graph router posts the body as it came to a step's `:predict` or `/infer`."""
    record = dict(zip(IRIS_FEATURES, ROW, strict=True))
    expected = (await client.post("/v1/models/iris/predict", json=record)).json()
    for path in ("/v2/models/iris/infer", "/v1/models/iris:predict"):
        one = await client.post(path, json=record)
        assert one.status_code == 200, (path, one.text)
        assert one.json() == expected
        many = await client.post(path, json=[record, record])
        assert [row["prediction"] for row in many.json()] == [expected["prediction"]] * 2
    rows = await client.post("/v2/models/iris/infer", json={"instances": [ROW]})
    assert [row["prediction"] for row in rows.json()] == [expected["prediction"]]
    # Each path's own protocol is answered as before, and so are its mistakes.
    assert (
        "outputs" in (await client.post("/v2/models/iris/infer", json=v2_body(ROW, [1, 4]))).json()
    )
    assert (
        "predictions"
        in (await client.post("/v1/models/iris:predict", json={"instances": [ROW]})).json()
    )
    unknown = await client.post("/v2/models/iris/infer", json={**record, "colour": "red"})
    assert unknown.status_code == 400
    assert "unknown field 'colour'" in unknown.json()["error"]


async def test_records_flatten_nested_objects(client: httpx.AsyncClient) -> None:
    nested = {"flower": {"sepal": {"length": 5.1, "width": 3.5}}, "petal_length": 1.4,
              "petal_width": 0.2}  # fmt: skip
    response = await client.post("/v1/models/iris/predict", json=nested)
    assert response.status_code == 200, response.text
    wrapped = {"flower": dict(zip(IRIS_FEATURES, ROW, strict=True))}
    assert (await client.post("/v1/models/iris/predict", json=wrapped)).status_code == 200


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4},
            "missing field 'petal_width'",
        ),
        ({**dict(zip(IRIS_FEATURES, ROW, strict=True)), "colour": "red"}, "unknown field 'colour'"),
        (
            {**dict(zip(IRIS_FEATURES, ROW, strict=True)), "sepal_length": "long"},
            "field 'sepal_length': non-numeric",  # the caller's field, not the model's tensor
        ),
        (
            [
                dict(zip(IRIS_FEATURES, ROW, strict=True)),
                {"flower": {**dict(zip(IRIS_FEATURES, ROW, strict=True)), "petal_width": [1, 2]}},
            ],
            "record 1: field 'petal_width'",
        ),
    ],
)
async def test_records_mistakes_are_400_naming_the_field(
    client: httpx.AsyncClient, record: dict[str, Any] | list[Any], message: str
) -> None:
    response = await client.post("/v1/models/iris/predict", json=record)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert "input-0" not in response.json()["error"]


async def test_records_need_feature_names(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/models/bare/predict", json={"a": 1})
    assert response.status_code == 400
    assert "feature names" in response.json()["error"]


async def test_repository_index_unload_and_load(own_client: httpx.AsyncClient) -> None:
    client = own_client
    index = (await client.post("/v2/repository/index")).json()
    assert {(row["name"], row["version"], row["state"]) for row in index} == {
        ("iris", "1", "READY"), ("iris", "2", "READY"), ("bare", "1", "READY"),
    }  # fmt: skip
    assert (await client.post("/v2/repository/models/iris/unload")).json()["unload"] is True
    assert (await client.get("/v2/models/iris/ready")).status_code == 503
    unloaded = await client.post("/v2/models/iris/infer", json=v2_body(ROW, [1, 4]))
    assert unloaded.status_code == 503
    ready = (await client.post("/v2/repository/index", json={"ready": True})).json()
    assert [row["name"] for row in ready] == ["bare"]
    assert (await client.post("/v2/repository/models/iris/load")).json()["load"] is True
    assert (
        await client.post("/v2/models/iris/infer", json=v2_body(ROW, [1, 4]))
    ).status_code == 200
    assert (await client.post("/v2/repository/models/nope/load")).status_code == 404


async def test_metrics_count_requests_per_model_version_and_protocol(
    own_client: httpx.AsyncClient,
) -> None:
    client = own_client
    await client.post("/v2/models/iris/infer", json=v2_body(ROW, [1, 4]))
    await client.post("/v1/models/iris:predict", json={"instances": [ROW]})
    # Client mistakes caught before the model runs count too, under their status.
    await client.post("/v2/models/iris/infer", content=b"{")
    await client.post("/v1/models/nope/predict", content=b"[")
    text = (await client.get("/metrics")).text
    v2 = {"model": "iris", "version": "2", "protocol": "v2-rest"}
    assert sample(text, "nstarx_requests_total", {**v2, "status": "ok"}) == 1
    assert sample(text, "nstarx_requests_total", {**v2, "status": "invalid_input"}) == 1
    v1 = {**v2, "protocol": "v1", "status": "ok"}
    assert sample(text, "nstarx_requests_total", v1) == 1
    unknown = {"model": "_unknown_", "version": "", "protocol": "records"}
    assert sample(text, "nstarx_requests_total", {**unknown, "status": "invalid_input"}) == 1
    assert sample(text, "nstarx_request_duration_seconds_count", v2) == 2
    assert sample(text, "nstarx_models_loaded", {}) == 3
    assert sample(text, "nstarx_model_load_seconds_count", {"model": "iris", "version": "1"}) == 1


def sample(text: str, name: str, labels: dict[str, str]) -> float:
    """Return the value of one Prometheus sample, parsed with prometheus_client's own parser."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"no sample {name}{labels}")
