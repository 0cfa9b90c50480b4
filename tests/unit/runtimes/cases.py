"""Small real models, trained when a test asks for them, and what their runtime must report.

Each builder writes one artifact into a temporary folder and returns a `Case`; a framework that is
not installed skips the cases that need it (`pytest.importorskip`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from nstarx_jupyter.protocol.signature import TensorSpec
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

ECHO = "tests.unit.runtimes.echo_runtime.EchoRuntime"
ROWS = 6
Arrays = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class Case:
    """A trained model's artifact and what its runtime must say and answer about it."""

    path: Path | None
    runtime: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    x: Arrays  # ROWS rows of every input
    expected: Callable[[Arrays], Arrays]  # the framework's own answer for some of those rows
    held: str  # the runtime's attribute holding what must be freed on unload
    default_outputs: tuple[str, ...] = ("predict",)
    options: dict[str, Any] = field(default_factory=dict)
    class_labels: tuple[Any, ...] | None = None
    feature_names: tuple[str, ...] | None = None


def spec(name: str, datatype: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, datatype, shape)


def rows(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Take ROWS rows spread over the data set (so a classifier's rows span its classes)."""
    return np.ascontiguousarray(x[:: len(x) // ROWS][:ROWS])


IRIS_X, IRIS_Y = load_iris(return_X_y=True)
CANCER_X, CANCER_Y = load_breast_cancer(return_X_y=True)
DIABETES_X, DIABETES_Y = load_diabetes(return_X_y=True)


def classifier(
    path: Path, runtime: str, data: np.ndarray[Any, Any], proba: str, model: Any
) -> Case:
    """A classifier with sklearn's API (class indices and `predict_proba`) fitted on `data`."""
    n_classes = len(model.classes_)
    datatype = "FP64" if runtime in ("sklearn", "lightgbm") else "FP32"
    return Case(
        path=path,
        runtime=runtime,
        inputs=(spec("input-0", datatype, -1, data.shape[1]),),
        outputs=(spec("predict", "INT64", -1), spec("predict_proba", proba, -1, n_classes)),
        x={"input-0": rows(data)},
        expected=lambda x: {
            "predict": model.predict(x["input-0"]),
            "predict_proba": model.predict_proba(x["input-0"]),
        },
        held={"sklearn": "model"}.get(runtime, "booster"),
        class_labels=tuple(range(n_classes)),
    )


def regressor(path: Path, runtime: str, datatype: str, model: Any) -> Case:
    """A regressor on the diabetes data set with sklearn's `predict`."""
    return Case(
        path=path,
        runtime=runtime,
        inputs=(spec("input-0", datatype, -1, 10),),
        outputs=(spec("predict", datatype, -1),),
        x={"input-0": rows(DIABETES_X)},
        expected=lambda x: {"predict": model.predict(x["input-0"])},
        held={"sklearn": "model"}.get(runtime, "booster"),
    )


def build_sklearn_logreg(tmp: Path) -> Case:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000, random_state=0).fit(IRIS_X, IRIS_Y)
    joblib.dump(model, tmp / "iris.joblib")
    return classifier(tmp / "iris.joblib", "sklearn", IRIS_X, "FP64", model)


def build_sklearn_forest(tmp: Path) -> Case:
    from sklearn.ensemble import RandomForestRegressor

    model = RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0)
    joblib.dump(model.fit(DIABETES_X, DIABETES_Y), tmp / "model.joblib")
    return regressor(tmp, "sklearn", "FP64", model)  # the folder form


def build_xgboost_classifier(tmp: Path, *, binary: bool) -> Case:
    xgb = pytest.importorskip("xgboost")
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2, random_state=0, n_jobs=1)
    if binary:
        x, y, path = CANCER_X, CANCER_Y, tmp / "cancer.ubj"
    else:
        x, y, path = IRIS_X, IRIS_Y, tmp / "iris.json"
    model.fit(x, y).save_model(path)
    return classifier(path, "xgboost", x, "FP32", model)


def build_xgboost_regressor(tmp: Path) -> Case:
    xgb = pytest.importorskip("xgboost")
    # Early stopping on shuffled labels stops early: the runtime must stop at the same tree.
    model = xgb.XGBRegressor(n_estimators=10, early_stopping_rounds=3, random_state=0, n_jobs=1)
    noise = np.random.default_rng(0).permutation(DIABETES_Y)
    model.fit(DIABETES_X, DIABETES_Y, eval_set=[(DIABETES_X, noise)], verbose=False)
    assert model.best_iteration < 9
    model.save_model(tmp / "model.json")
    return regressor(tmp, "xgboost", "FP32", model)  # the folder form


def build_lightgbm_multiclass(tmp: Path) -> Case:
    """Trained with the native API and named features, which the runtime must report."""
    lgb = pytest.importorskip("lightgbm")
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "seed": 0}
    data = lgb.Dataset(IRIS_X, IRIS_Y, feature_name=IRIS_FEATURES)
    booster = lgb.train(params, data, num_boost_round=5)
    booster.save_model(tmp / "iris.txt")
    return Case(
        path=tmp / "iris.txt",
        runtime="lightgbm",
        inputs=(spec("input-0", "FP64", -1, 4),),
        outputs=(spec("predict", "INT64", -1), spec("predict_proba", "FP64", -1, 3)),
        x={"input-0": rows(IRIS_X)},
        expected=lambda x: {
            "predict": booster.predict(x["input-0"]).argmax(axis=1),
            "predict_proba": booster.predict(x["input-0"]),
        },
        held="booster",
        class_labels=(0, 1, 2),
        feature_names=tuple(IRIS_FEATURES),
    )


def build_lightgbm_binary(tmp: Path) -> Case:
    lgb = pytest.importorskip("lightgbm")
    model = lgb.LGBMClassifier(n_estimators=5, random_state=0, verbose=-1, n_jobs=1)
    model.fit(CANCER_X, CANCER_Y).booster_.save_model(tmp / "cancer.lgb")
    return classifier(tmp / "cancer.lgb", "lightgbm", CANCER_X, "FP64", model)


def build_lightgbm_regressor(tmp: Path) -> Case:
    lgb = pytest.importorskip("lightgbm")
    model = lgb.LGBMRegressor(n_estimators=5, random_state=0, verbose=-1, n_jobs=1)
    model.fit(DIABETES_X, DIABETES_Y).booster_.save_model(tmp / "diabetes.model")
    return regressor(tmp / "diabetes.model", "lightgbm", "FP64", model)


def build_onnx_classifier(tmp: Path, *, zipmap: bool) -> Case:
    """skl2onnx's logistic regression; with ZipMap, probabilities are a sequence of maps."""
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000, random_state=0).fit(IRIS_X, IRIS_Y)
    options = {id(model): {"zipmap": zipmap}}
    graph = skl2onnx.to_onnx(model, IRIS_X[:1].astype(np.float32), options=options)
    (tmp / "model.onnx").write_bytes(graph.SerializeToString())
    label, proba = ("output_label", "output_probability") if zipmap else ("label", "probabilities")
    return Case(
        path=tmp if zipmap else tmp / "model.onnx",
        runtime="onnx",
        inputs=(spec("X", "FP32", -1, 4),),
        outputs=(spec(label, "INT64", -1), spec(proba, "FP32", -1, -1 if zipmap else 3)),
        x={"X": rows(IRIS_X)},
        expected=lambda x: {label: model.predict(x["X"]), proba: model.predict_proba(x["X"])},
        held="session",
        default_outputs=(label,) if zipmap else (label, proba),
        options={"feature_names": IRIS_FEATURES},
        feature_names=tuple(IRIS_FEATURES),
    )


def build_onnx_graph(tmp: Path) -> Case:
    """A one-node graph built by hand, with a symbolic batch dimension."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    weight = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 2])],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    (tmp / "tiny.onnx").write_bytes(model.SerializeToString())
    return Case(
        path=tmp / "tiny.onnx",
        runtime="onnx",
        inputs=(spec("x", "FP32", -1, 3),),
        outputs=(spec("y", "FP32", -1, 2),),
        x={"x": np.random.default_rng(1).normal(size=(ROWS, 3)).astype(np.float32)},
        expected=lambda x: {"y": x["x"] @ weight},
        held="session",
        default_outputs=("y",),
    )


def torch_mlp() -> Any:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layers = (torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return torch.nn.Sequential(*layers).eval()


def torch_forward(module: Any, *arrays: np.ndarray[Any, Any]) -> Any:
    torch = pytest.importorskip("torch")
    with torch.inference_mode():
        return module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))


def save_torchscript(module: Any, path: Path, extra_files: dict[str, str] | None = None) -> None:
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in 2.13
        torch.jit.save(torch.jit.script(module), path, _extra_files=extra_files or {})


def build_torchscript(tmp: Path, *, saved_signature: bool) -> Case:
    """Described by an `nstarx.json` in the archive, or by running an example input at load."""
    module = torch_mlp()
    declared = {
        "inputs": [spec("rows", "FP32", -1, 4).to_json()],
        "outputs": [spec("logits", "FP32", -1, 3).to_json()],
    }
    extra_files = {"nstarx.json": json.dumps(declared)} if saved_signature else None
    save_torchscript(module, tmp / "mlp.pt", extra_files)
    name, out = ("rows", "logits") if saved_signature else ("input", "output-0")
    return Case(
        path=tmp / "mlp.pt",
        runtime="pytorch",
        inputs=(spec(name, "FP32", -1, 4),),  # "input" is nn.Sequential.forward's argument
        outputs=(spec(out, "FP32", -1, 3),),
        x={name: rows(IRIS_X).astype(np.float32)},
        expected=lambda x: {out: torch_forward(module, x[name]).numpy()},
        held="module",
        default_outputs=(out,),
        options={} if saved_signature else {"example_input": IRIS_X[:2].tolist()},
    )


def torch_scorer() -> Any:
    torch = pytest.importorskip("torch")

    class Scorer(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.mlp = torch_mlp()

        def forward(self, features: Any, offset: Any) -> dict[str, Any]:
            logits = self.mlp(features) + offset
            return {"logits": logits, "label": logits.argmax(dim=1)}

    return Scorer().eval()


def build_torch_export(tmp: Path) -> Case:
    """Two named inputs, a dynamic batch and a dict of outputs."""
    torch = pytest.importorskip("torch")
    module = torch_scorer()
    x = {"features": rows(IRIS_X).astype(np.float32), "offset": np.ones((ROWS, 1), np.float32)}
    batch = torch.export.Dim("batch")
    example = tuple(torch.from_numpy(x[k][:2]) for k in ("features", "offset"))
    program = torch.export.export(module, example, dynamic_shapes=({0: batch}, {0: batch}))
    torch.export.save(program, tmp / "scorer.pt2")

    def expected(x: Arrays) -> Arrays:
        out = torch_forward(module, x["features"], x["offset"])
        return {name: value.numpy() for name, value in out.items()}

    return Case(
        path=tmp / "scorer.pt2",
        runtime="pytorch",
        inputs=(spec("features", "FP32", -1, 4), spec("offset", "FP32", -1, 1)),
        outputs=(spec("logits", "FP32", -1, 3), spec("label", "INT64", -1)),
        x=x,
        expected=expected,
        held="module",
        default_outputs=("logits", "label"),
    )


def build_tensorflow(tmp: Path) -> Case:
    tf = pytest.importorskip("tensorflow")
    features = [tf.TensorSpec([None, 4], tf.float32, name="features")]

    class Scorer(tf.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal((4, 3), seed=(0, 1)))

        @tf.function(input_signature=features)  # type: ignore[untyped-decorator]
        def __call__(self, x: Any) -> dict[str, Any]:
            return {"scores": tf.nn.softmax(x @ self.w), "label": tf.argmax(x @ self.w, axis=1)}

    scorer = Scorer()
    tf.saved_model.save(scorer, str(tmp / "scorer"), signatures=scorer.__call__)
    return Case(
        path=tmp / "scorer",
        runtime="tensorflow",
        inputs=(spec("features", "FP32", -1, 4),),
        outputs=(spec("label", "INT64", -1), spec("scores", "FP32", -1, 3)),  # sorted by name
        x={"features": rows(IRIS_X).astype(np.float32)},
        expected=lambda x: {k: v.numpy() for k, v in scorer(tf.constant(x["features"])).items()},
        held="model",
        default_outputs=("label", "scores"),
    )


def build_keras(tmp: Path) -> Case:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    features = keras.Input((4,), name="features")
    model = keras.Model(features, keras.layers.Dense(3, activation="softmax")(features))
    with warnings.catch_warnings():  # TensorFlow's variables warn on NumPy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        model.save(tmp / "scorer.keras")
    return Case(
        path=tmp / "scorer.keras",
        runtime="keras",
        inputs=(spec("features", "FP32", -1, 4),),
        outputs=(spec("output-0", "FP32", -1, 3),),
        x={"features": rows(IRIS_X).astype(np.float32)},
        expected=lambda x: {"output-0": model(x["features"], training=False).numpy()},
        held="model",
        default_outputs=("output-0",),
    )


def build_echo(tmp: Path) -> Case:
    return Case(
        path=None,
        runtime=ECHO,
        inputs=(spec("input-0", "FP32", -1, 3),),
        outputs=(spec("echo", "FP32", -1, 3),),
        x={"input-0": np.arange(ROWS * 3, dtype=np.float32).reshape(ROWS, 3)},
        expected=lambda x: {"echo": x["input-0"]},
        held="model",
        default_outputs=("echo",),
        options={"width": 3},
    )


BUILDERS: dict[str, Callable[[Path], Case]] = {
    "sklearn-logreg": build_sklearn_logreg,
    "sklearn-forest": build_sklearn_forest,
    "xgboost-classifier": lambda tmp: build_xgboost_classifier(tmp, binary=False),
    "xgboost-binary": lambda tmp: build_xgboost_classifier(tmp, binary=True),
    "xgboost-regressor": build_xgboost_regressor,
    "lightgbm-multiclass": build_lightgbm_multiclass,
    "lightgbm-binary": build_lightgbm_binary,
    "lightgbm-regressor": build_lightgbm_regressor,
    "onnx-skl2onnx": lambda tmp: build_onnx_classifier(tmp, zipmap=False),
    "onnx-zipmap": lambda tmp: build_onnx_classifier(tmp, zipmap=True),
    "onnx-helper": build_onnx_graph,
    "torchscript-example": lambda tmp: build_torchscript(tmp, saved_signature=False),
    "torchscript-saved-signature": lambda tmp: build_torchscript(tmp, saved_signature=True),
    "torch-export": build_torch_export,
    "tensorflow-savedmodel": build_tensorflow,
    "keras-file": build_keras,
    "custom-echo": build_echo,
}
"""Every case by test id."""
