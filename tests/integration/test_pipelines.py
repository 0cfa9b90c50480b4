"""Pipelines on a real server: deployed from the notebook API, called over HTTP with a key,
served again after a restart, and started from the command line with `--pipeline`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.notebook.pipeline import Pipeline
from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from tests.conftest import IRIS_FEATURES
from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration
ROW = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


@pytest.fixture
def server(nstarx_home: Path) -> Iterator[tuple[ServerProcess, LocalBackend]]:
    state_dir = nstarx_home / "server"
    process = start_server("--state-dir", str(state_dir), auth=True)
    yield process, LocalBackend(state_dir, timeout_s=60)
    process.stop()


def _iris_pipeline(model: str, name: str = "flowers") -> Pipeline:
    """impute → model → threshold on the confidence → named fields."""
    x, _ = load_iris(return_X_y=True, as_frame=True)
    reference = x.set_axis(IRIS_FEATURES, axis=1)
    pipe = Pipeline(name=name)
    pipe.add("impute", "fill", strategy="mean", columns=IRIS_FEATURES)
    pipe.add("model", "clf", model=model)
    pipe.add("threshold", "sure", field="confidence", threshold=0.8, output="sure")
    pipe.add("fields", "out", fields={"species": "prediction", "confidence": "confidence",
                                      "sure": "sure"})  # fmt: skip
    pipe.chain("fill", "clf", "sure", "out")
    return pipe.fit(reference)


def test_a_pipeline_deployed_from_the_notebook_answers_with_its_key(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    process, backend = server
    deploy(named_iris, "iris", backend=backend)
    pipe = _iris_pipeline("deployment:iris")
    assert pipe.validate() == []
    fill = pipe.spec.node("fill").config["values"]
    assert fill["petal_length"] == pytest.approx(3.758, abs=1e-3)  # learnt from the reference
    local = pipe.predict({**ROW, "petal_width": None})  # the kernel's run, through the server model
    deployed = pipe.deploy(backend=backend)
    assert deployed.api_key is not None
    headers = {"Authorization": f"Bearer {deployed.api_key}"}
    answer = httpx.post(deployed.url, json={"transaction": {**ROW, "petal_width": None}},
                        headers=headers)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json() == local
    assert answer.json()["species"] == 0
    assert answer.json()["sure"] is True
    many = httpx.post(deployed.url, json=[ROW, ROW], headers=headers).json()
    assert len(many) == 2
    assert many[0] == many[1]
    # The key is for this pipeline only; no key is a 401.
    assert httpx.post(deployed.url, json=ROW).status_code == 401
    assert httpx.post(f"{process.url}/v1/models/iris/predict", json=ROW,
                      headers=headers).status_code == 403  # fmt: skip
    # A caller's mistake is a 400 that names the node.
    bad = httpx.post(deployed.url, json={**ROW, "sepal_length": "x"}, headers=headers)
    assert bad.status_code == 400, bad.text
    assert "node '" in bad.json()["error"]
    assert [p.name for p in backend.pipelines()] == ["flowers"]
    # A deployment cannot take the pipeline's name, nor a pipeline a model's.
    clash = _iris_pipeline("deployment:iris", name="iris")
    with pytest.raises(Exception, match="already served"):
        clash.deploy(backend=backend)


def test_a_pipeline_with_its_own_registry_model_survives_a_restart(
    nstarx_home: Path,
) -> None:
    pytest.importorskip("mlflow")
    from nstarx_jupyter.registry import Registry

    x, y = load_iris(return_X_y=True, as_frame=True)
    frame = x.set_axis(IRIS_FEATURES, axis=1)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(frame, y)
    version = Registry().register(model, "iris-lr", input_example=frame.head(2))
    state_dir = nstarx_home / "server"
    process = start_server("--state-dir", str(state_dir), auth=True)
    backend = LocalBackend(state_dir, timeout_s=60)
    try:
        deployed = _iris_pipeline(version.uri).deploy(backend=backend)
        assert deployed.predict(ROW)["species"] == 0
        assert backend.pipelines()[0].models == ["flowers.clf"]
    finally:
        process.stop()
    again = start_server("--state-dir", str(state_dir), auth=True)
    try:
        headers = {"Authorization": f"Bearer {deployed.api_key}"}
        url = f"{again.url}/v1/models/flowers/predict"
        answer = httpx.post(url, json=pd.DataFrame([ROW]).to_dict(orient="records"),
                            headers=headers)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()[0]["species"] == 0
        backend = LocalBackend(state_dir, timeout_s=60)
        backend.delete_pipeline("flowers")
        gone = httpx.post(url, json=ROW, headers=headers)
        assert gone.status_code == 401  # the key its deploy minted went with it
        assert "revoked" in gone.json()["error"]
    finally:
        again.stop()


def test_serve_pipeline_from_the_command_line(named_iris: Path, tmp_path: Path) -> None:
    spec: dict[str, Any] = {
        "name": "ignored",
        "nodes": [
            {"id": "check", "component": "validate",
             "config": {"schema": {"type": "object", "required": ["petal_length"],
                                  "properties": {"petal_length": {"type": "number"}}}}},
            {"id": "out", "component": "records"},
        ],
        "edges": [{"id": "e", "source": "check", "target": "out"}],
    }  # fmt: skip
    file = tmp_path / "p.pipeline.json"
    file.write_text(json.dumps(spec))
    process = start_server("--pipeline", f"checker={file}", "--model", f"iris={named_iris}",
                           "--grpc-port", "0")  # fmt: skip
    try:
        url = f"{process.url}/v1/models/checker/predict"
        assert httpx.post(url, json={"petal_length": 1.0}).json() == {"petal_length": 1.0}
        refused = httpx.post(url, json={"other": 1})
        assert refused.status_code == 400
        assert "node 'check'" in refused.json()["error"]
        # The V2 endpoints too: one input tensor per field, one output tensor per field.
        v2 = f"{process.url}/v2/models/checker"
        length = {"name": "petal_length", "datatype": "FP64", "shape": [2], "data": [1.5, 2.5]}
        colour = {"name": "colour", "datatype": "BYTES", "shape": [2, 1], "data": ["red", "blue"]}
        tensors = {"id": "r1", "inputs": [length, colour]}
        answer = httpx.post(f"{v2}/infer", json=tensors).json()
        assert answer["model_name"] == "checker"
        assert answer["id"] == "r1"
        assert {o["name"]: o["data"] for o in answer["outputs"]} == {
            "petal_length": [1.5, 2.5],
            "colour": ["red", "blue"],
        }
        assert httpx.get(f"{v2}/ready").status_code == 200
        meta = httpx.get(v2).json()
        assert meta["inputs"] == [{"name": "petal_length", "datatype": "FP64", "shape": [-1]}]
        uneven = {"inputs": [length, {**colour, "shape": [1], "data": ["x"]}]}
        assert httpx.post(f"{v2}/infer", json=uneven).status_code == 400
        # And over gRPC: the same tensors in, typed contents out.
        assert process.grpc is not None
        with grpc.insecure_channel(process.grpc) as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            request = pb.ModelInferRequest(model_name="checker", id="g1")
            contents = pb.InferTensorContents(fp64_contents=[1.5, 2.5])
            request.inputs.add(name="petal_length", datatype="FP64", shape=[2], contents=contents)
            reply = infer(request)
        assert reply.model_name == "checker"
        assert reply.id == "g1"
        assert [(o.name, o.datatype, list(o.shape)) for o in reply.outputs] == [
            ("petal_length", "FP64", [2])
        ]
        assert list(reply.outputs[0].contents.fp64_contents) == [1.5, 2.5]
        # Counted like a model: answered and refused calls, under the pipeline's name.
        metrics = httpx.get(f"{process.url}/metrics").text
        assert (
            'nstarx_requests_total{model="checker",protocol="records",status="ok",version="1"}'
            in metrics
        )
        assert 'model="checker",protocol="records",status="invalid_input",version="1"' in metrics
    finally:
        process.stop()
