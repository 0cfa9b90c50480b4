"""Models whose inputs are strings, deployed with `deploy()` and called on every protocol.

The seed's two examples as plain scikit-learn models: a text pipeline (`TfidfVectorizer` +
`LogisticRegression`, one string per row) and a fraud model (`OneHotEncoder` on `merchant` and
`location`, `amount` scaled), on a real server with REST and gRPC, through V1, V2 REST (JSON and
binary BYTES, tritonclient), V2 gRPC (tritonclient), the product endpoint and the seed's own
client snippet, run verbatim in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.registry import Registry
from tests.integration.server import ROOT, ServerProcess, start_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nstarx_jupyter.notebook.api import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]

SEED_SNIPPET = """\
from nstarx import InferenceClient
client = InferenceClient("http://localhost:8080/sentiment", api_key="...")
result = client.predict({"text": "This product is amazing!"})
print(result['sentiment'], result['confidence'])
"""
"""The seed's Python snippet as it is written; the test changes only its URL and key."""

REVIEWS = [
    ("This product is amazing!", "positive"), ("I love it, works great", "positive"),
    ("Excellent quality, highly recommend", "positive"), ("great value and amazing", "positive"),
    ("Terrible, broke after a day", "negative"), ("awful product, waste of money", "negative"),
    ("I hate it, very bad", "negative"), ("bad quality and terrible support", "negative"),
]  # fmt: skip
FRAUD = pd.DataFrame({
    "merchant": ["amazon", "shady-shop", "walmart", "shady-shop", "amazon", "crypto-atm"] * 3,
    "location": ["NY", "offshore", "SF", "offshore", "SF", "offshore"] * 3,
    "amount": [25.0, 990.0, 40.0, 870.0, 15.0, 2000.0] * 3,
})  # fmt: skip
FRAUD_LABELS = [0, 1, 0, 1, 0, 1] * 3
TRANSACTION = {"merchant": "shady-shop", "location": "offshore", "amount": 950.0}


@pytest.fixture(scope="module")
def sentiment_model() -> Pipeline:
    texts, labels = zip(*REVIEWS, strict=True)
    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(list(texts), list(labels))


@pytest.fixture(scope="module")
def fraud_model() -> Pipeline:
    columns = ColumnTransformer([
        ("categories", OneHotEncoder(handle_unknown="ignore"), ["merchant", "location"]),
        ("amount", StandardScaler(), ["amount"]),
    ])  # fmt: skip
    return make_pipeline(columns, LogisticRegression()).fit(FRAUD, FRAUD_LABELS)


@pytest.fixture
def server(nstarx_home: Path) -> Iterator[ServerProcess]:
    """The user's local server with gRPC on: `deploy()` finds it through its state file."""
    process = start_server("--grpc-port", "0", "--state-dir", str(nstarx_home / "server"),
                           auth=True)  # fmt: skip
    yield process
    process.stop()


@pytest.fixture
def backend(server: ServerProcess, nstarx_home: Path) -> Iterator[LocalBackend]:
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    assert made.running() is not None
    yield made
    made.close()


def _bearer(made: Deployment) -> dict[str, str]:
    assert made.api_key is not None
    return {"authorization": f"Bearer {made.api_key}"}


def test_a_text_pipeline_answers_v1_v2_grpc_the_product_endpoint_and_the_seed_snippet(
    server: ServerProcess, backend: LocalBackend, sentiment_model: Pipeline
) -> None:
    made = deploy(
        sentiment_model,
        "sentiment",
        backend=backend,
        output_names={"prediction": "sentiment", "probability": "confidence"},
    )
    assert made.spec.output_names == {"prediction": "sentiment", "probability": "confidence"}
    example = made.example()
    assert example is not None
    assert isinstance(example["text"], str)
    headers = _bearer(made)
    text = "This product is amazing!"
    expected = str(sentiment_model.predict([text])[0])
    top = float(sentiment_model.predict_proba([text])[0].max())

    meta = httpx.get(f"{server.url}/v2/models/sentiment", headers=headers).json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    v1 = httpx.post(f"{made.url}:predict", json={"instances": [text, "awful, terrible"]},
                    headers=headers)  # fmt: skip
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == [expected, "negative"]

    v2 = httpx.post(
        f"{server.url}/v2/models/sentiment/infer",
        headers=headers,
        json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]},
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == [expected]

    texts = np.asarray([text.encode()], dtype=np.object_)
    http = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = triton_http.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(texts, binary_data=True)  # the binary tensor data extension
    answer = http.infer("sentiment", [tensor], headers=dict(headers))  # it adds to the dict
    assert answer.as_numpy("predict").tolist() == [expected.encode()]

    assert server.grpc is not None
    grpc_client = triton_grpc.InferenceServerClient(server.grpc)
    grpc_tensor = triton_grpc.InferInput("text", [1], "BYTES")
    grpc_tensor.set_data_from_numpy(texts)
    grpc_answer = grpc_client.infer("sentiment", [grpc_tensor], headers=headers)
    assert grpc_answer.as_numpy("predict").tolist() == [expected.encode()]

    product = httpx.post(f"{made.url}/predict", json={"text": text}, headers=headers).json()
    assert product["sentiment"] == expected
    assert product["confidence"] == pytest.approx(top)
    assert "prediction" not in product

    snippet = SEED_SNIPPET.replace("http://localhost:8080/sentiment", server.url + "/sentiment")
    snippet = snippet.replace('api_key="..."', f"api_key={made.api_key!r}")
    run = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT)}, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    said, confidence = run.stdout.split()
    assert said == expected
    assert float(confidence) == pytest.approx(top)


def test_a_onehot_fraud_model_answers_records_v1_v2_columns_and_grpc(
    server: ServerProcess, backend: LocalBackend, fraud_model: Pipeline
) -> None:
    made = deploy(fraud_model, "fraud", backend=backend)
    example = made.example()
    assert example is not None
    assert isinstance(example["merchant"], str)
    assert isinstance(example["location"], str)
    headers = _bearer(made)
    expected = int(fraud_model.predict(pd.DataFrame([TRANSACTION]))[0])

    meta = httpx.get(f"{server.url}/v2/models/fraud", headers=headers).json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("merchant", "BYTES"),
        ("location", "BYTES"),
        ("amount", "FP64"),
    ]

    # The product endpoint: a record, a nested record (the seed's cURL body), records.
    assert made.predict(TRANSACTION)["prediction"] == expected
    nested = httpx.post(f"{made.url}/predict", json={"transaction": TRANSACTION}, headers=headers)
    assert nested.status_code == 200, nested.text
    assert nested.json()["prediction"] == expected

    for instances in (
        [TRANSACTION, {"merchant": "amazon", "location": "NY", "amount": 20.0}],
        [list(TRANSACTION.values()), ["amazon", "NY", 20]],
    ):  # records, or rows
        v1 = httpx.post(f"{made.url}:predict", headers=headers, json={"instances": instances})
        assert v1.status_code == 200, v1.text
        assert v1.json()["predictions"] == [expected, 0]

    columns: list[dict[str, Any]] = [
        {
            "name": "merchant",
            "datatype": "BYTES",
            "shape": [2, 1],
            "data": ["shady-shop", "amazon"],
        },
        {"name": "location", "datatype": "BYTES", "shape": [2], "data": ["offshore", "NY"]},
        {"name": "amount", "datatype": "INT64", "shape": [2], "data": [950, 20]},
    ]
    v2 = httpx.post(f"{server.url}/v2/models/fraud/infer", headers=headers,
                    json={"inputs": columns})  # fmt: skip
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == [expected, 0]

    assert server.grpc is not None
    grpc_client = triton_grpc.InferenceServerClient(server.grpc)
    tensors = []
    for name, values, datatype in (("merchant", [b"shady-shop"], "BYTES"),
                                   ("location", [b"offshore"], "BYTES"),
                                   ("amount", [950.0], "FP64")):  # fmt: skip
        tensor = triton_grpc.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(np.asarray(values, dtype=np.object_ if datatype == "BYTES"
                                              else np.float64))  # fmt: skip
        tensors.append(tensor)
    answer = grpc_client.infer("fraud", tensors, headers=headers)
    assert answer.as_numpy("predict").tolist() == [expected]


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/models/fraud/predict", {"merchant": "amazon", "location": "NY"}, "amount"),
    ("/v1/models/fraud/predict", {**TRANSACTION, "amount": "lots"}, "amount"),
    ("/v1/models/fraud/predict", {**TRANSACTION, "merchant": None}, "merchant"),
    ("/v1/models/fraud:predict", {"instances": [["amazon", "NY"]]}, "merchant, location"),
    ("/v2/models/fraud/infer", {"inputs": [
        {"name": "merchant", "datatype": "FP64", "shape": [1], "data": [1.0]},
        {"name": "location", "datatype": "BYTES", "shape": [1], "data": ["NY"]},
        {"name": "amount", "datatype": "FP64", "shape": [1], "data": [1.0]}]}, "merchant"),
    ("/v2/models/fraud/infer", {"inputs": [
        {"name": "merchant", "datatype": "BYTES", "shape": [1], "data": ["amazon"]}]},
     "location"),
]  # fmt: skip
"""Client mistakes with string columns, and a word each answer must name."""


def test_bad_string_inputs_get_a_400_naming_the_field_and_numbers_pass_as_categories(
    server: ServerProcess, backend: LocalBackend, fraud_model: Pipeline
) -> None:
    made = deploy(fraud_model, "fraud", backend=backend)
    for path, body, named in BAD_CALLS:
        answer = httpx.post(f"{server.url}{path}", json=body, headers=_bearer(made))
        assert answer.status_code == 400, (path, body, answer.text)
        assert named in answer.json()["error"], (path, body, answer.text)
    # A number where a category is expected is taken as its text (an unknown category here).
    assert made.predict({"merchant": 7, "location": "NY", "amount": 10})["prediction"] in (0, 1)


def test_registered_versions_serve_string_inputs_from_their_mlflow_signature(
    server: ServerProcess, backend: LocalBackend, fraud_model: Pipeline, sentiment_model: Pipeline
) -> None:
    """Once registered, each model serves from MLflow with the signature its example gave."""
    examples: dict[str, tuple[Pipeline, dict[str, Any]]] = {
        "fraud": (fraud_model, TRANSACTION), "sentiment": (sentiment_model, {"text": "I love it"})
    }  # fmt: skip
    for name, (model, record) in examples.items():
        made = deploy(model, name, backend=backend, input_example=record)
        assert made.registration is not None
        version = made.registration.result(timeout=120)
        deadline = time.monotonic() + 60
        while made.spec.storage_uri != version.uri and time.monotonic() < deadline:
            time.sleep(0.2)
        assert made.spec.storage_uri == version.uri, made.logs()
        stored = Registry().signature(name, version.version)
        assert stored is not None
        assert "string" in {column["type"] for column in stored["inputs"]}
        made.wait_ready()
        signature = backend_signature(server, made)
        assert any(item["datatype"] == "BYTES" for item in signature)
        answer = httpx.post(f"{made.url}/predict", json=record, headers=_bearer(made))
        assert answer.status_code == 200, answer.text
        frame = pd.DataFrame([record]) if name == "fraud" else [record["text"]]
        assert answer.json()["prediction"] == model.predict(frame)[0]


def backend_signature(server: ServerProcess, made: Deployment) -> list[dict[str, Any]]:
    """The served model's V2 inputs."""
    meta = httpx.get(f"{server.url}/v2/models/{made.name}", headers=_bearer(made))
    assert meta.status_code == 200, meta.text
    inputs: list[dict[str, Any]] = meta.json()["inputs"]
    return inputs
