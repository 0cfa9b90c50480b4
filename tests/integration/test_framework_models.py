"""Fitted PyTorch modules and Keras models deploy from the notebook on a real local server,
with the signature their `input_example` gives, and answer as they do in the kernel."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.errors import InvalidInputError

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]
ROWS = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def _infer(backend: LocalBackend, name: str, key: str | None, rows: np.ndarray[Any, Any],
           input_name: str) -> dict[str, Any]:  # fmt: skip
    url = f"{backend.ensure_server().url}/v2/models/{name}"
    headers = {"Authorization": f"Bearer {key}"}
    metadata = httpx.get(url, headers=headers)
    assert metadata.status_code == 200, metadata.text
    body = {"inputs": [{"name": input_name, "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()}]}  # fmt: skip
    answer = httpx.post(f"{url}/infer", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return {"metadata": metadata.json(), "outputs": answer.json()["outputs"]}


def test_a_fitted_torch_module_deploys_as_onnx_with_its_example_signature(
    backend: LocalBackend,
) -> None:
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                              torch.nn.Linear(8, 3))  # fmt: skip

        def forward(self, features: Any) -> Any:
            return torch.softmax(self.layers(features), dim=-1)

    torch.manual_seed(0)
    module = Tiny().eval()
    with pytest.raises(InvalidInputError, match="input_example"):
        deploy(module, "tiny-torch", backend=backend)
    made = deploy(module, "tiny-torch", input_example=ROWS[:2], backend=backend)
    answer = _infer(backend, "tiny-torch", made.api_key, ROWS, "features")
    inputs = answer["metadata"]["inputs"]
    assert inputs == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert answer["metadata"]["platform"].startswith("onnx")
    (output,) = answer["outputs"]
    assert output["shape"] == [5, 3]  # a batch of 5 where the example had 2: the batch is dynamic
    with torch.inference_mode():
        expected = module(torch.from_numpy(ROWS)).numpy()
    np.testing.assert_allclose(np.reshape(output["data"], (5, 3)), expected, atol=1e-5)
    assert made.registration is not None  # registered behind the deployment (MLflow's ONNX)
    assert made.registration.result(timeout=120).uri == "models:/tiny-torch/1"
    script = backend.state_dir.parent / "tiny.pt"  # in $NSTARX_HOME: a file deploy() may name
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13; users have it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(module, torch.from_numpy(ROWS[:2])), str(script))
    scripted = deploy(script, "tiny-script", input_example=ROWS[:2], backend=backend)
    answer = _infer(backend, "tiny-script", scripted.api_key, ROWS, "features")
    assert answer["metadata"]["inputs"] == [{"name": "features", "datatype": "FP32",
                                             "shape": [-1, 4]}]  # fmt: skip
    np.testing.assert_allclose(np.reshape(answer["outputs"][0]["data"], (5, 3)), expected,
                               atol=1e-5)  # fmt: skip


def test_a_fitted_keras_model_deploys_as_a_keras_file_with_its_signature(
    backend: LocalBackend,
) -> None:
    keras = pytest.importorskip("keras")
    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    made = deploy(model, "tiny-keras", input_example=ROWS[:2].astype("float64"), backend=backend)
    assert made.spec.storage_uri is not None
    staged = Path(made.spec.storage_uri)
    assert (staged / "model.keras").is_file()
    answer = _infer(backend, "tiny-keras", made.api_key, ROWS, "features")
    assert answer["metadata"]["inputs"] == [{"name": "features", "datatype": "FP32",
                                             "shape": [-1, 4]}]  # fmt: skip
    assert answer["metadata"]["platform"] == "keras"
    (output,) = answer["outputs"]
    expected = model(ROWS, training=False).numpy()
    np.testing.assert_allclose(np.reshape(output["data"], (5, 3)), expected, atol=1e-5)
