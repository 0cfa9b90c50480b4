"""Device selection against the frameworks' own device queries (no GPU is faked).

On a machine without a GPU the tests that need one skip with "no CUDA device" (listed as
expected in tests/support/skips.py unless `NSTARX_REQUIRE_GPU=1`, which a GPU runner sets);
the rest assert what each framework really reports here, whichever machine this is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nstarx_jupyter.deployment.kserve import to_manifests
from nstarx_jupyter.deployment.sources import GPU_RESOURCE, spec_for
from nstarx_jupyter.errors import InvalidInputError, ModelLoadError
from nstarx_jupyter.runtimes import create_runtime
from nstarx_jupyter.runtimes.devices import (
    onnx_providers,
    tf_device,
    torch_device,
    wanted_device,
)

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
CUDA = torch.cuda.is_available()
ORT_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
X = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")


def _export(folder: Path) -> Path:
    """A tiny `torch.export` program (batch dimension dynamic)."""
    module = torch.nn.Sequential(torch.nn.Linear(4, 2)).eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, (torch.from_numpy(X),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(folder / "model.pt2"))
    return folder / "model.pt2"


def _onnx(folder: Path) -> Path:
    from nstarx_jupyter.deployment.frameworks import torch_to_onnx

    proto = torch_to_onnx(torch.nn.Sequential(torch.nn.Linear(4, 2)).eval(), X)
    (folder / "model.onnx").write_bytes(proto.SerializeToString())
    return folder / "model.onnx"


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("auto", "auto"),
        ("CPU", "cpu"),
        ("gpu", "cuda"),
        ("gpu:1", "cuda:1"),
        ("tensorrt", "tensorrt"),
    ],
)
def test_the_device_option_is_normalised(given: str, normal: str) -> None:
    assert wanted_device({"device": given}) == normal
    assert wanted_device({}) == "auto"


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "", 1])
def test_a_device_no_runtime_knows_is_refused(bad: Any) -> None:
    with pytest.raises(ModelLoadError, match="device"):
        wanted_device({"device": bad})


def test_torch_takes_a_gpu_exactly_when_torch_sees_one(tmp_path: Path) -> None:
    assert torch_device(torch, "auto") == ("cuda:0" if CUDA else "cpu")
    assert torch_device(torch, "cpu") == "cpu"
    runtime = create_runtime(_export(tmp_path), options={"device": "auto"})
    runtime.load()
    assert runtime.device == ("cuda:0" if CUDA else "cpu")
    module = getattr(runtime, "module", None)
    assert module is not None
    assert {str(p.device) for p in module.parameters()} == {runtime.device}
    got = runtime.predict({"input": X})
    assert got["output-0"].shape == (3, 2)


def test_asking_torch_for_a_gpu_it_cannot_see_fails_the_load_with_the_reason(
    tmp_path: Path,
) -> None:
    count = torch.cuda.device_count() if CUDA else 0
    with pytest.raises(ModelLoadError, match=f"torch sees {count} CUDA device"):
        torch_device(torch, f"cuda:{count}")  # one past the last GPU, on any machine
    if not CUDA:
        runtime = create_runtime(_export(tmp_path), options={"device": "gpu"})
        with pytest.raises(ModelLoadError, match="device='cpu'"):
            runtime.load()


def test_onnx_runtime_takes_the_providers_this_build_has(tmp_path: Path) -> None:
    assert onnx_providers(ort, "cpu") == ["CPUExecutionProvider"]
    auto = onnx_providers(ort, "auto")
    assert auto[-1] == "CPUExecutionProvider"
    assert (auto[0][0] == "CUDAExecutionProvider") is ORT_CUDA
    runtime = create_runtime(_onnx(tmp_path), options={"device": "auto"})
    runtime.load()
    assert runtime.device in ort.get_available_providers()
    assert runtime.predict({"input": X})["output"].shape == (3, 2)
    if not ORT_CUDA:
        with pytest.raises(ModelLoadError, match="install onnxruntime-gpu"):
            onnx_providers(ort, "cuda")
        tensorrt = create_runtime(tmp_path / "model.onnx", options={"device": "tensorrt"})
        with pytest.raises(ModelLoadError, match="TensorrtExecutionProvider"):
            tensorrt.load()


@pytest.mark.xdist_group("tensorflow")  # with the TensorFlow runtime cases: one import
def test_tensorflow_takes_a_gpu_exactly_when_it_lists_one() -> None:
    tf = pytest.importorskip("tensorflow")
    gpus = tf.config.list_physical_devices("GPU")
    assert tf_device(tf, "auto") == ("/GPU:0" if gpus else "/CPU:0")
    assert tf_device(tf, "cpu") == "/CPU:0"
    with pytest.raises(ModelLoadError, match=f"TensorFlow sees {len(gpus)} GPU"):
        tf_device(tf, f"cuda:{len(gpus)}")


@pytest.mark.skipif(not CUDA, reason="no CUDA device for torch")
def test_a_torch_model_computes_on_the_gpu_and_answers_as_on_the_cpu(tmp_path: Path) -> None:
    path = _export(tmp_path)
    gpu = create_runtime(path, options={"device": "cuda"})
    cpu = create_runtime(path, options={"device": "cpu"})
    gpu.load()
    cpu.load()
    assert gpu.device == "cuda:0"
    np.testing.assert_allclose(gpu.predict({"input": X})["output-0"],
                               cpu.predict({"input": X})["output-0"], atol=1e-5)  # fmt: skip


@pytest.mark.skipif(not (CUDA and ORT_CUDA), reason="no CUDA device for onnxruntime")
def test_an_onnx_model_runs_on_the_cuda_provider(tmp_path: Path) -> None:
    runtime = create_runtime(_onnx(tmp_path), options={"device": "cuda"})
    runtime.load()
    assert runtime.device == "CUDAExecutionProvider"
    assert runtime.predict({"input": X})["output"].shape == (3, 2)


def test_a_gpu_device_asks_kserve_for_a_gpu_and_passes_the_schemas() -> None:
    spec = spec_for("s3://models/tiny/1", "tiny", device="gpu",
                    resources={"requests": {"cpu": "1"}})  # fmt: skip
    assert spec.options["device"] == "cuda"
    assert spec.resources is not None
    assert spec.resources.limits == {GPU_RESOURCE: "1"}
    service = next(d for d in to_manifests(spec) if d["kind"] == "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["resources"] == {"requests": {"cpu": "1"}, "limits": {GPU_RESOURCE: "1"}}
    two = spec_for("s3://m/1", "tiny", device="cuda:1",
                   resources={"limits": {GPU_RESOURCE: "2"}})  # fmt: skip
    assert two.resources is not None
    assert two.resources.limits == {GPU_RESOURCE: "2"}  # a count given is kept
    cpu = spec_for("s3://m/1", "tiny", device="cpu")
    assert cpu.resources is None
    assert cpu.options == {"device": "cpu"}
    with pytest.raises(InvalidInputError, match="tpu"):
        spec_for("s3://m/1", "tiny", device="tpu")
