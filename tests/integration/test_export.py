"""Edge export: iris (scikit-learn), XGBoost, small torch (TorchScript and a `torch.export`
`.pt2`) and Keras models (a `.keras` file and a SavedModel) run in the bundle's runner."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter.deployment.export.bundle import export_runtime
from nstarx_jupyter.runtimes.loader import create_runtime

if TYPE_CHECKING:
    from pathlib import Path

pytest.importorskip("onnxruntime")  # the converters below: importorskip per model


def _iris_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    import joblib

    x_all, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x_all, y), folder / "iris.joblib")
    return folder / "iris.joblib", {}


def _xgboost_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    xgb = pytest.importorskip("xgboost")
    pytest.importorskip("onnxmltools")
    x_all, y = load_iris(return_X_y=True)
    xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(x_all, y).save_model(folder / "x.json")
    return folder / "x.json", {}


def _lightgbm_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    lgb = pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    x_all, y = load_iris(return_X_y=True)
    model = lgb.LGBMClassifier(n_estimators=10, max_depth=3, verbose=-1).fit(x_all, y)
    model.booster_.save_model(folder / "model.txt")
    return folder / "model.txt", {}


def _torch_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with warnings.catch_warnings():  # TorchScript is deprecated; the runtime serves it still
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net.eval()), folder / "net.pt")
    return folder / "net.pt", {"example_input": [[0.0] * 4, [1.0] * 4]}


def _torch_export_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    """A `torch.export` program with a dynamic batch: its signature is in the archive."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    batch = torch.export.Dim("batch")
    program = torch.export.export(net.eval(), (torch.zeros(2, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(folder / "net.pt2"))
    return folder / "net.pt2", {}


def _keras_model() -> Any:
    """A small classifier trained a few epochs on random rows (class: the largest of 3 columns)."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((256, 4)).astype(np.float32)
    model = keras.Sequential([keras.Input((4,), name="features"),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, x[:, :3].argmax(1), epochs=20, verbose=0)
    return model


def _keras_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    model = _keras_model()
    with warnings.catch_warnings():  # TensorFlow's variables warn on NumPy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        model.save(folder / "net.keras")
    return folder / "net.keras", {}


def _saved_model_folder(folder: Path) -> tuple[Path, dict[str, Any]]:
    model = _keras_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model.export(folder / "saved", verbose=False)  # a serving_default signature
    return folder / "saved", {}


@pytest.mark.parametrize(
    "make",
    [
        _iris_file,
        _xgboost_file,
        _lightgbm_file,
        _torch_file,
        _torch_export_file,
        _keras_file,
        _saved_model_folder,
    ],
)
@pytest.mark.parametrize("quantize", ["int8", "fp16"])
def test_exported_bundle_runs_in_its_runner(make: Any, quantize: str, tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    if quantize == "fp16":
        pytest.importorskip("onnxconverter_common")
    path, options = make(tmp_path)
    runtime = create_runtime(path, options=options)
    runtime.load()
    x_all, _ = load_iris(return_X_y=True)
    report = export_runtime(runtime, x_all, tmp_path / "bundle", quantize=quantize)
    variants = [row["variant"] for row in report.rows]
    assert variants == [runtime.runtime_name, "onnx", "optimised", quantize]
    assert all(row["agreement"] >= 0.9 for row in report.rows)
    signature = runtime.metadata()
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(tmp_path / "bundle" / "model.onnx")).graph
    if runtime.runtime_name in ("keras", "tensorflow"):  # the served names, not tf2onnx's
        assert [i.name for i in graph.input] == [signature.inputs[0].name] == ["features"]
    if runtime.runtime_name in ("keras", "tensorflow", "pytorch"):
        assert [i.name for i in graph.input] == [signature.inputs[0].name]
        assert [o.name for o in graph.output] == [o.name for o in signature.outputs]
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(x_all[:5].tolist()))
    done = subprocess.run([sys.executable, str(tmp_path / "bundle" / "run.py"), str(rows)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == 5
    source = next(
        iter(
            runtime.predict(
                {
                    runtime.metadata().inputs[0].name: x_all[:5].astype(
                        np.float64 if runtime.runtime_name == "sklearn" else np.float32
                    )
                }
            ).values()
        )
    )
    first = next(iter(answers[0]))
    got = np.asarray([a[first] for a in answers])
    if got.ndim == 2:
        assert (got.argmax(1) == np.asarray(source).argmax(1)).all()
    else:
        assert (got == np.asarray(source)).all()


def test_unknown_quantisation_is_refused(tmp_path: Path) -> None:
    from nstarx_jupyter.errors import InvalidInputError

    path, _ = _iris_file(tmp_path)
    runtime = create_runtime(path)
    runtime.load()
    with pytest.raises(InvalidInputError, match="int8 or fp16"):
        export_runtime(runtime, np.zeros((2, 4)), tmp_path / "b", quantize="int4")


def test_a_keras_model_of_two_inputs_is_refused(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    from nstarx_jupyter.errors import UnsupportedError

    left, right = keras.Input((2,), name="left"), keras.Input((2,), name="right")
    joined = keras.layers.Concatenate()([left, right])
    model = keras.Model([left, right], keras.layers.Dense(1)(joined))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model.save(tmp_path / "two.keras")
    runtime = create_runtime(tmp_path / "two.keras")
    runtime.load()
    with pytest.raises(UnsupportedError, match=r"one matrix .* left .* right"):
        export_runtime(runtime, np.zeros((2, 4)), tmp_path / "b")


def test_cli_exports_a_model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("skl2onnx")
    monkeypatch.setenv("NSTARX_HOME", str(tmp_path / "home"))
    path, _ = _iris_file(tmp_path)
    done = subprocess.run([sys.executable, "-m", "nstarx_jupyter.cli", "export", str(path),
                           "--quantize", "int8", "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "int8" in done.stdout
    assert (tmp_path / "b" / "model.onnx").is_file()
    assert (tmp_path / "b" / "run.py").is_file()


def test_registered_model_compares_on_its_reference_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("skl2onnx")
    pytest.importorskip("mlflow")
    monkeypatch.setenv("NSTARX_HOME", str(tmp_path / "home"))
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    from nstarx_jupyter.deployment.export.model import export_model
    from nstarx_jupyter.registry import Registry

    frame, y = load_iris(return_X_y=True, as_frame=True)
    fitted = LogisticRegression(max_iter=500).fit(frame, y)
    version = Registry().register(fitted, "iris", reference_data=frame)
    report = export_model(version.uri, tmp_path / "b", quantize="fp16")
    signature = json.loads((tmp_path / "b" / "signature.json").read_text())
    assert signature["rows_compared"] == 150
    assert signature["feature_names"] == [str(c) for c in frame.columns]
    assert [row["variant"] for row in report.rows] == ["sklearn", "onnx", "optimised", "fp16"]
