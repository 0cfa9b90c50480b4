"""Adaptive batching serves every protocol, and each caller gets its own answer back."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as triton_grpc
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

from tests.conftest import IRIS_FEATURES
from tests.integration.server import start_server

pytestmark = pytest.mark.integration


def _batch_metrics(url: str) -> tuple[float, float]:
    text = requests.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "nstarx_batch_size":
            count = next(s.value for s in family.samples if s.name.endswith("_count"))
            total = next(s.value for s in family.samples if s.name.endswith("_sum"))
            return count, total
    raise AssertionError("no batch size histogram")


def test_every_protocol_is_batched_and_answers_its_own_rows(
    iris_path: Path,
    iris_model: LogisticRegression,
    iris_data: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    folder = tmp_path / "iris"
    folder.mkdir()
    (folder / "model.joblib").symlink_to(iris_path)
    (folder / "model-settings.json").write_text(
        json.dumps({"options": {"feature_names": IRIS_FEATURES}})
    )
    server = start_server(
        "--model", f"iris={folder}", "--grpc-port", "0",
        "--max-batch-size", "16", "--max-latency-ms", "20",
    )  # fmt: skip
    x, _ = iris_data
    rows = x[::5]  # 30 different flowers
    expected = iris_model.predict(rows).tolist()
    assert server.grpc is not None
    grpc_client = triton_grpc.InferenceServerClient(url=server.grpc)

    def v2(i: int) -> int:
        body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                            "data": rows[i].tolist()}]}  # fmt: skip
        doc = requests.post(f"{server.url}/v2/models/iris/infer", json=body, timeout=10).json()
        return int(doc["outputs"][0]["data"][0])

    def v1(i: int) -> int:
        body = {"instances": [rows[i].tolist()]}
        return int(requests.post(f"{server.url}/v1/models/iris:predict", json=body,
                                 timeout=10).json()["predictions"][0])  # fmt: skip

    def records(i: int) -> int:
        body = dict(zip(IRIS_FEATURES, rows[i].tolist(), strict=True))
        doc = requests.post(f"{server.url}/v1/models/iris/predict", json=body, timeout=10).json()
        return int(doc["prediction"])

    def grpc(i: int) -> int:
        tensor = triton_grpc.InferInput("input-0", [1, 4], "FP64")
        tensor.set_data_from_numpy(rows[i : i + 1])
        result = grpc_client.infer("iris", [tensor])
        return int(result.as_numpy("predict")[0])

    try:
        for call in (v2, v1, records, grpc):
            before = _batch_metrics(server.url)
            with ThreadPoolExecutor(16) as pool:
                got = list(pool.map(call, range(len(rows))))
            after = _batch_metrics(server.url)
            assert got == expected, call.__name__
            batches, predicted_rows = after[0] - before[0], after[1] - before[1]
            assert predicted_rows == len(rows)  # every row predicted exactly once
            assert batches < len(rows), f"{call.__name__} was never batched"
    finally:
        grpc_client.close()
        server.stop()
