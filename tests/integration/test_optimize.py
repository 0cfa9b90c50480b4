"""`deploy(optimize=True)` on a real local server: optimised ONNX where it answers as the
original on the sample, the original (with the reason) where it does not."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.export.optimize import OPTIMIZE_ANNOTATION
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.errors import InvalidInputError

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]
pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture
def backend(nstarx_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalBackend]:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def _v2(backend: LocalBackend, name: str, key: str | None, rows: np.ndarray[Any, Any],
        outputs: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    url = f"{backend.ensure_server().url}/v2/models/{name}"
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    metadata = httpx.get(url, headers=headers)
    assert metadata.status_code == 200, metadata.text
    body: dict[str, Any] = {"inputs": [{"name": "input-0", "datatype": "FP64",
                                        "shape": list(rows.shape),
                                        "data": rows.ravel().tolist()}]}  # fmt: skip
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    answer = httpx.post(f"{url}/infer", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return {"metadata": metadata.json(),
            "outputs": {o["name"]: o["data"] for o in answer.json()["outputs"]}}  # fmt: skip


def test_iris_is_served_as_onnx_answering_as_the_original_over_v2(
    backend: LocalBackend,
) -> None:
    frame, target = load_iris(return_X_y=True, as_frame=True)
    labels = np.asarray(load_iris().target_names)[target]  # string classes: BYTES answers
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    plain = deploy(model, "iris-plain", backend=backend)
    assert plain.registration is not None  # one MLflow store migration at a time
    plain.registration.result(timeout=180)
    fast = deploy(model, "iris-fast", optimize=True, sample=frame, backend=backend)

    report = fast.optimization
    assert report.attrs["served"] == "onnx", report.attrs["reason"]
    assert list(report["variant"]) == ["sklearn", "onnx", "optimised"]
    assert list(report["served"]) == [False, False, True]
    assert report["agreement"].iloc[-1] == 1.0
    assert "served the optimised ONNX model" in fast.spec.annotations[OPTIMIZE_ANNOTATION]
    assert any("optimize: served the optimised ONNX" in line for line in fast.service.events(
        "iris-fast"))  # fmt: skip

    rows = frame.to_numpy()
    before, after = (_v2(backend, d.name, d.api_key, rows) for d in (plain, fast))
    assert after["metadata"]["platform"].startswith("onnx")
    assert after["metadata"]["inputs"] == before["metadata"]["inputs"]  # input-0 FP64 [-1, 4]
    assert list(after["outputs"]) == ["predict"]  # the default output, as the original's
    assert after["outputs"]["predict"] == before["outputs"]["predict"]
    assert after["outputs"]["predict"] == model.predict(frame).tolist()
    both = ["predict", "predict_proba"]
    proba = _v2(backend, "iris-fast", fast.api_key, rows, both)["outputs"]["predict_proba"]
    np.testing.assert_allclose(np.reshape(proba, (-1, 3)), model.predict_proba(frame),
                               atol=1e-5)  # fmt: skip

    record = frame.iloc[0].to_dict()  # the product endpoint: labels and probabilities
    assert fast.predict(record)["prediction"] == plain.predict(record)["prediction"] == "setosa"
    assert fast.registration is not None  # the ONNX graph registered behind the deployment
    assert fast.registration.result(timeout=180).uri == "models:/iris-fast/1"
    again = _v2(backend, "iris-fast", fast.api_key, rows)
    assert again["outputs"]["predict"] == before["outputs"]["predict"]


def test_a_model_whose_answers_change_in_float32_is_served_as_the_original(
    backend: LocalBackend,
) -> None:
    rng = np.random.default_rng(0)  # Unix times: float32 steps 128 s at 1.7e9
    frame = pd.DataFrame({"seen_at": 1.7e9 + rng.uniform(0, 1000, 200),
                          "amount": rng.normal(size=200)})  # fmt: skip
    model = LinearRegression().fit(frame, frame.seen_at - 1.7e9 + frame.amount)
    made = deploy(model, "since", optimize=True, sample=frame, backend=backend)

    report = made.optimization
    assert report.attrs["served"] == "original"
    reason = report.attrs["reason"]
    assert "served the original: the optimised ONNX model changes" in reason
    assert "above the tolerance of 1.0%" in reason
    assert report["agreement"].iloc[-1] < 0.5
    assert list(report["served"]) == [True, False, False]
    assert made.spec.annotations[OPTIMIZE_ANNOTATION] == reason
    assert f"optimize: {reason}" in "\n".join(made.service.events("since"))
    assert made.registration is not None  # the original, registered as without optimize
    assert made.registration.result(timeout=180).uri == "models:/since/1"
    answer = _v2(backend, "since", made.api_key, frame.to_numpy()[:5])
    assert answer["metadata"]["platform"] == "sklearn"
    np.testing.assert_allclose(answer["outputs"]["predict"], model.predict(frame[:5]))


def test_optimize_without_rows_to_compare_on_is_refused_before_deploying(
    backend: LocalBackend,
) -> None:
    frame, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(frame, target)
    with pytest.raises(InvalidInputError, match="sample="):
        deploy(model, "iris-nosample", optimize=True, backend=backend)
    with pytest.raises(InvalidInputError, match="tolerance"):
        deploy(model, "iris-nosample", optimize=True, sample=frame, tolerance=2,
               backend=backend)  # fmt: skip
    assert backend.running() is None  # refused before a server was even needed


def test_cli_deploy_optimize_serves_a_model_file_as_onnx(
    backend: LocalBackend, nstarx_home: Path
) -> None:
    import joblib

    frame, target = load_iris(return_X_y=True, as_frame=True)
    nstarx_home.mkdir(parents=True, exist_ok=True)
    path = nstarx_home / "iris.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(frame, target), path)
    frame.to_csv(nstarx_home / "rows.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "nstarx_jupyter.cli", "deploy", "iris-cli", str(path), "--no-auth",
         "--optimize", "--sample", str(nstarx_home / "rows.csv")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "optimize: served the optimised ONNX model" in done.stdout
    assert "(served)" in done.stdout
    answer = _v2(backend, "iris-cli", None, frame.to_numpy()[:10])
    assert answer["metadata"]["platform"].startswith("onnx")
    assert answer["outputs"]["predict"] == target[:10].tolist()


def _fp32(backend: LocalBackend, name: str, key: str | None,
          inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:  # fmt: skip
    url = f"{backend.ensure_server().url}/v2/models/{name}"
    headers = {"Authorization": f"Bearer {key}"}
    metadata = httpx.get(url, headers=headers)
    assert metadata.status_code == 200, metadata.text
    body = {"inputs": [{"name": n, "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()} for n, rows in inputs.items()]}  # fmt: skip
    answer = httpx.post(f"{url}/infer", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return {"metadata": metadata.json(),
            "outputs": {o["name"]: o["data"] for o in answer.json()["outputs"]}}  # fmt: skip


def test_a_fitted_keras_model_is_served_as_onnx_answering_as_the_original(
    backend: LocalBackend, nstarx_home: Path
) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    rows = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    made = deploy(model, "keras-fast", input_example=rows[:2], sample=rows, optimize=True,
                  backend=backend)  # fmt: skip

    report = made.optimization
    assert report.attrs["served"] == "onnx", report.attrs["reason"]
    assert list(report["variant"]) == ["keras", "onnx", "optimised"]
    assert list(report["served"]) == [False, False, True]
    assert report["agreement"].iloc[-1] == 1.0
    assert "served the optimised ONNX model" in made.spec.annotations[OPTIMIZE_ANNOTATION]
    assert not list((nstarx_home / "staging").glob("keras-fast/*/model.keras"))  # not served

    answer = _fp32(backend, "keras-fast", made.api_key, {"features": rows})
    assert answer["metadata"]["platform"].startswith("onnx")
    assert answer["metadata"]["inputs"] == [{"name": "features", "datatype": "FP32",
                                             "shape": [-1, 4]}]  # fmt: skip
    assert list(answer["outputs"]) == ["output"]  # as the Keras runtime names it
    expected = model(rows, training=False).numpy()
    np.testing.assert_allclose(np.reshape(answer["outputs"]["output"], (64, 3)), expected,
                               atol=1e-5)  # fmt: skip
    assert made.registration is not None  # the ONNX graph registered behind the deployment
    assert made.registration.result(timeout=180).uri == "models:/keras-fast/1"


def test_a_keras_model_of_two_inputs_is_served_as_the_original_with_the_reason(
    backend: LocalBackend,
) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    left, right = keras.Input((2,), name="left"), keras.Input((2,), name="right")
    joined = keras.layers.Concatenate()([left, right])
    model = keras.Model([left, right], keras.layers.Dense(1)(joined))
    rows = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
    example = {"left": rows[:2], "right": rows[2:4]}
    made = deploy(model, "keras-two", input_example=example, sample=rows, optimize=True,
                  backend=backend)  # fmt: skip

    reason = made.optimization.attrs["reason"]
    assert made.optimization.attrs["served"] == "original"
    assert "only models taking one numeric matrix" in reason
    assert "left (FP32), right (FP32)" in reason
    assert made.spec.annotations[OPTIMIZE_ANNOTATION] == reason
    answer = _fp32(backend, "keras-two", made.api_key, {"left": rows, "right": rows[::-1]})
    assert answer["metadata"]["platform"] == "keras"
    expected = model([rows, rows[::-1]], training=False).numpy()
    np.testing.assert_allclose(np.reshape(answer["outputs"]["output"], (8, 1)), expected,
                               atol=1e-5)  # fmt: skip


def test_a_torch_export_file_is_served_as_onnx_answering_as_the_program(
    backend: LocalBackend, nstarx_home: Path
) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    batch = torch.export.Dim("batch")
    program = torch.export.export(net.eval(), (torch.zeros(2, 4),), dynamic_shapes=({0: batch},))
    nstarx_home.mkdir(parents=True, exist_ok=True)  # a file deploy() may name
    torch.export.save(program, str(nstarx_home / "net.pt2"))
    rows = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    made = deploy(nstarx_home / "net.pt2", "net-fast", optimize=True, sample=rows,
                  backend=backend)  # fmt: skip

    assert made.optimization.attrs["served"] == "onnx", made.optimization.attrs["reason"]
    assert list(made.optimization["variant"]) == ["pytorch", "onnx", "optimised"]
    answer = _fp32(backend, "net-fast", made.api_key, {"input": rows})  # forward's argument
    assert answer["metadata"]["platform"].startswith("onnx")
    assert answer["metadata"]["inputs"] == [{"name": "input", "datatype": "FP32",
                                             "shape": [-1, 4]}]  # fmt: skip
    with torch.inference_mode():
        expected = net(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(np.reshape(answer["outputs"]["output-0"], (64, 3)), expected,
                               atol=1e-5)  # fmt: skip
    assert made.registration is not None  # the ONNX graph registered behind the deployment
    assert made.registration.result(timeout=180).uri == "models:/net-fast/1"


def _classifier_net(torch: Any, classes: int) -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, classes)).eval()  # fmt: skip


def test_a_fitted_torch_module_is_served_quantised_answering_as_the_module(
    backend: LocalBackend, nstarx_home: Path
) -> None:
    torch = pytest.importorskip("torch")
    net = _classifier_net(torch, 3)
    rows = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    made = deploy(net, "torch-fast", input_example=rows[:2], sample=rows, optimize="int8",
                  backend=backend)  # fmt: skip

    report = made.optimization
    assert report.attrs["served"] == "onnx", report.attrs["reason"]
    assert list(report["variant"]) == ["original", "onnx", "optimised", "int8"]
    assert list(report["served"]) == [False, False, False, True]
    assert "served the int8 ONNX model" in made.spec.annotations[OPTIMIZE_ANNOTATION]
    answer = _fp32(backend, "torch-fast", made.api_key, {"input": rows})  # forward's argument
    assert answer["metadata"]["platform"].startswith("onnx")
    assert answer["metadata"]["inputs"] == [{"name": "input", "datatype": "FP32",
                                             "shape": [-1, 4]}]  # fmt: skip
    with torch.inference_mode():
        expected = net(torch.from_numpy(rows)).numpy()
    served = np.reshape(answer["outputs"]["output"], (64, 3))
    assert (served.argmax(1) == expected.argmax(1)).all()  # the class the module picks
    assert not np.allclose(served, expected, atol=1e-6)  # int8 weights: not the float graph
    np.testing.assert_allclose(served, expected, atol=0.05)
    assert made.registration is not None  # the int8 graph registered behind the deployment
    assert made.registration.result(timeout=180).uri == "models:/torch-fast/1"
    assert not list((nstarx_home / "staging" / "torch-fast").glob("*"))  # nothing left staged


def test_a_torch_module_quantised_beyond_the_tolerance_serves_its_plain_export(
    backend: LocalBackend, nstarx_home: Path
) -> None:
    torch = pytest.importorskip("torch")
    net = _classifier_net(torch, 1)  # one score per row: compared as numbers, within 1 %
    rows = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    made = deploy(net, "torch-kept", input_example=rows[:2], sample=rows, optimize="int8",
                  backend=backend)  # fmt: skip

    reason = made.optimization.attrs["reason"]
    assert made.optimization.attrs["served"] == "original"
    assert "served the original: the int8 ONNX model changes" in reason
    assert "above the tolerance of 1.0%" in reason
    assert list(made.optimization["served"]) == [True, False, False, False]
    assert made.spec.annotations[OPTIMIZE_ANNOTATION] == reason
    assert f"optimize: {reason}" in "\n".join(made.service.events("torch-kept"))
    answer = _fp32(backend, "torch-kept", made.api_key, {"input": rows})
    assert answer["metadata"]["platform"].startswith("onnx")  # the export, as without optimize
    with torch.inference_mode():
        expected = net(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(np.reshape(answer["outputs"]["output"], (64, 1)), expected,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert made.registration is not None  # registered as without optimize
    assert made.registration.result(timeout=180).uri == "models:/torch-kept/1"
    assert not list((nstarx_home / "staging" / "torch-kept").glob("*"))
