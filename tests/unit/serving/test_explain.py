"""SHAP explainers by model kind (`monitoring.explain`), with fixed seeds.

A tree model gets the tree explainer, a linear one the linear explainer, anything else the
kernel explainer; each explanation is additive (base + SHAP values = the model's output in the
explained space), and the feature that drives the model ranks first.
"""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import joblib
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsRegressor

from nstarx_jupyter.errors import InvalidInputError, UnsupportedError
from nstarx_jupyter.monitoring.explain import ModelExplainer, mean_abs
from nstarx_jupyter.runtimes import create_runtime
from nstarx_jupyter.serving.drift import DriftHub, Reference
from nstarx_jupyter.serving.explain_api import MODEL_OBJECTS, ExplainApi, _matrix, _numeric
from nstarx_jupyter.serving.repository import ModelState
from nstarx_jupyter.serving.worker import WorkerRuntime

if TYPE_CHECKING:
    from pathlib import Path

    from nstarx_jupyter.serving.dataplane import DataPlane
    from nstarx_jupyter.serving.repository import LoadedModel
    from nstarx_jupyter.serving.worker import ModelWorker


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three features; the target is driven by the first, a little by the second."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 3))
    return x, 3 * x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.1, 300)


def test_a_tree_regressor_gets_the_tree_explainer_and_its_values_add_up() -> None:
    x, y = _data()
    model = GradientBoostingRegressor(n_estimators=50, random_state=0).fit(x, y)
    explainer = ModelExplainer.build(model, model.predict, features=3, background=None)
    got = explainer.explain(x[:20])
    assert (explainer.kind, got.explainer, got.space, got.outputs) == (
        "tree", "tree", "raw", ["output"])  # fmt: skip
    total = got.base[0] + got.values[:, :, 0].sum(axis=1)
    np.testing.assert_allclose(total, model.predict(x[:20]), atol=1e-6)
    assert int(np.argmax(mean_abs(got))) == 0


def test_a_forest_classifier_explains_each_rows_predicted_class_in_probabilities() -> None:
    x, _ = _data()
    labels = np.where(x[:, 0] > 0, "high", "low")
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(x, labels)
    explainer = ModelExplainer.build(model, model.predict_proba, features=3, background=None,
                                     classes=list(model.classes_), probabilities=True)  # fmt: skip
    got = explainer.explain(x[:10])
    assert (got.explainer, got.space, got.outputs) == ("tree", "probability", ["high", "low"])
    picked = got.picked()
    assert [got.outputs[k] for k in picked] == model.predict(x[:10]).tolist()
    proba = model.predict_proba(x[:10])
    rows = np.arange(10)
    total = got.base[picked] + got.values[rows, :, picked].sum(axis=1)
    np.testing.assert_allclose(total, proba[rows, picked], atol=1e-6)
    assert got.picked("low") == [1] * 10
    with pytest.raises(InvalidInputError, match="not one of high, low"):
        got.picked("medium")


def test_a_linear_model_gets_the_linear_explainer_over_the_background() -> None:
    x, y = _data()
    model = LinearRegression().fit(x, y)
    explainer = ModelExplainer.build(model, model.predict, features=3, background=x)
    got = explainer.explain(x[:5])
    assert (got.explainer, got.space) == ("linear", "raw")
    np.testing.assert_allclose(got.base[0] + got.values[:, :, 0].sum(axis=1), model.predict(x[:5]),
                               atol=1e-6)  # fmt: skip
    # a linear model's SHAP value is its coefficient times the distance from the mean
    np.testing.assert_allclose(got.values[:, :, 0], model.coef_ * (x[:5] - x.mean(axis=0)),
                               atol=1e-6)  # fmt: skip
    with pytest.raises(InvalidInputError, match="needs background rows"):
        ModelExplainer.build(model, model.predict, features=3, background=None)


def test_a_binary_logistic_model_explains_the_second_class_in_log_odds() -> None:
    x, _ = _data()
    labels = (x[:, 0] > 0).astype(int)
    model = LogisticRegression(random_state=0).fit(x, labels)
    explainer = ModelExplainer.build(model, model.predict_proba, features=3, background=x,
                                     classes=["0", "1"], probabilities=True)  # fmt: skip
    got = explainer.explain(x[:5])
    assert (got.explainer, got.space, got.outputs) == ("linear", "log-odds", ["1"])
    np.testing.assert_allclose(got.base[0] + got.values[:, :, 0].sum(axis=1),
                               model.decision_function(x[:5]), atol=1e-6)  # fmt: skip


def test_another_model_gets_the_kernel_explainer_which_adds_up_too() -> None:
    x, y = _data()
    model = KNeighborsRegressor(n_neighbors=5).fit(x, y)
    explainer = ModelExplainer.build(model, model.predict, features=3, background=x)
    got = explainer.explain(x[:5])
    assert (got.explainer, got.space) == ("kernel", "raw")
    # the kernel explainer's values add up to the prediction minus its background's mean
    np.testing.assert_allclose(got.base[0] + got.values[:, :, 0].sum(axis=1),
                               model.predict(x[:5]), atol=1e-6)  # fmt: skip
    assert int(np.argmax(mean_abs(got))) == 0
    with pytest.raises(InvalidInputError, match="3 values each"):
        explainer.explain(x[:5, :2])


def test_request_rows_by_order_or_by_name_and_background_columns() -> None:
    features = ["a", "b"]
    np.testing.assert_array_equal(_matrix([[1, 2], {"b": 4, "a": 3}], features),
                                  [[1.0, 2.0], [3.0, 4.0]])  # fmt: skip
    for bad, message in (([[1]], "2 numbers"), ([{"a": 1}], "no value for b"),
                         ([[1, "x"]], "a number"), ([[1, float("nan")]], "finite"),
                         ([[True, 1]], "a number")):  # fmt: skip
        with pytest.raises(InvalidInputError, match=message):
            _matrix(bad, features)
    columns = {"a": [1, None, 3], "feature_1": [4.0, 5.0, 6.0]}
    np.testing.assert_array_equal(_numeric(columns, features), [[1, 4], [3, 6]])
    assert _numeric({"a": ["x", "y"], "b": [1, 2]}, features) is None
    assert _numeric({"a": [1.0]}, features) is None


def test_boosters_are_explained_by_their_trees_in_log_odds_of_the_second_class(
    tmp_path: Path,
) -> None:
    xgboost = pytest.importorskip("xgboost")
    x, _ = _data()
    labels = (x[:, 0] > 0).astype(int)
    xgboost.XGBClassifier(n_estimators=20, random_state=0).fit(x, labels).save_model(
        tmp_path / "model.json")  # fmt: skip
    runtime = create_runtime(tmp_path / "model.json", "xgboost", {})
    runtime.load()
    signature = runtime.metadata()
    classes = [str(c) for c in signature.class_labels or ()]
    explainer = ModelExplainer.build(getattr(runtime, MODEL_OBJECTS["xgboost"]), np.asarray,
                                     features=3, background=None, classes=classes)  # fmt: skip
    got = explainer.explain(x[:5])
    assert (got.explainer, got.space, got.outputs) == ("tree", "log-odds", ["1"])
    proba = runtime.predict({"input-0": x[:5].astype(np.float32)}, ("predict_proba",))
    p = proba["predict_proba"][:, 1].astype(float)
    np.testing.assert_allclose(got.base[0] + got.values[:, :, 0].sum(axis=1), np.log(p / (1 - p)),
                               atol=1e-3)  # fmt: skip


async def test_a_model_in_an_isolated_worker_process_is_refused_naming_why(tmp_path: Path) -> None:
    api = ExplainApi(cast("DataPlane", None), DriftHub(tmp_path), lambda name: None)
    loaded = SimpleNamespace(runtime=WorkerRuntime(cast("ModelWorker", None)), signature=None)
    with pytest.raises(UnsupportedError, match="isolated worker process"):
        api.explain_rows("iso", cast("LoadedModel", loaded), [[1.0]], None)
    await api.close()


@pytest.mark.parametrize("kind", ["linear", "kernel"])
async def test_an_explainer_is_reused_per_loaded_model_and_goes_when_the_model_goes(
    tmp_path: Path, kind: str
) -> None:
    x, y = _data()
    fitted = LinearRegression() if kind == "linear" else KNeighborsRegressor()
    joblib.dump(fitted.fit(x, y), tmp_path / "model.joblib")
    runtime = create_runtime(tmp_path / "model.joblib", "sklearn", {})
    runtime.load()
    hub = DriftHub(tmp_path)
    hub.monitor("m").set_reference(Reference("data", {f"f{i}": x[:, i].tolist() for i in range(3)}))
    api = ExplainApi(cast("DataPlane", None), hub, lambda name: None)
    loaded = SimpleNamespace(runtime=runtime, signature=runtime.metadata(),
                             settings=SimpleNamespace(version="1"))  # fmt: skip
    first = api.explain_rows("m", cast("LoadedModel", loaded), x[:2].tolist(), None)
    assert (first["explainer"], first["features"]) == (kind, ["f0", "f1", "f2"])
    built = next(iter(api._fitted.values())).explainer
    api.explain_rows("m", cast("LoadedModel", loaded), x[:2].tolist(), None)
    assert next(iter(api._fitted.values())).explainer is built  # reused
    gone = weakref.ref(runtime)
    del loaded, runtime, built
    gc.collect()
    assert gone() is None  # the explainer did not keep the unloaded model alive
    assert len(api._fitted) == 0
    await api.close()


async def test_the_background_refresh_recomputes_the_gauges_importance_without_using_the_model(
    tmp_path: Path,
) -> None:
    x, y = _data()
    joblib.dump(GradientBoostingRegressor(n_estimators=30, random_state=0).fit(x, y),
                tmp_path / "model.joblib")  # fmt: skip
    runtime = create_runtime(tmp_path / "model.joblib", "sklearn", {})
    runtime.load()
    loaded = SimpleNamespace(runtime=runtime, signature=runtime.metadata(),
                             settings=SimpleNamespace(version="1"))  # fmt: skip
    entry = SimpleNamespace(state=ModelState.READY, loaded=loaded)
    # a repository with `entry` only: the refresh must not `use` the model (a use would keep
    # an idle model from scaling to zero)
    plane = SimpleNamespace(repository=SimpleNamespace(entry=lambda name: entry))
    hub = DriftHub(tmp_path)
    api = ExplainApi(cast("DataPlane", plane), hub, lambda name: None)
    for start in range(0, 96, 24):
        hub.tap("m", {"input-0": x[start : start + 24]}, {"predict": y[start : start + 24]})
    api.latest["m"] = {"features": []}  # asked once: the gauge shows it
    await api.refresh()
    body = api.latest["m"]
    assert (body["status"], body["rows"], body["explainer"]) == ("ok", 96, "tree")
    assert body["features"][0]["feature"] == "feature_0"
    assert body["features"][0]["importance"] > 3 * body["features"][1]["importance"]
    entry.state = ModelState.UNAVAILABLE  # scaled to zero: not loaded again for the gauge
    api.latest["m"] = {"features": []}
    await api.refresh()
    assert api.latest["m"] == {"features": []}
    await api.close()
