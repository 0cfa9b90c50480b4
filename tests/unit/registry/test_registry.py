"""The registry on a real MLflow store (SQLite in a temporary $NSTARX_HOME), and serving from it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter.errors import InvalidInputError, NotFoundError
from nstarx_jupyter.registry import Registry, parse_model_uri
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.settings import ModelSettings, parse_model_arg

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.xdist_group("mlflow")  # MLflow's first store migration is the slow part


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    data = load_iris(as_frame=True)
    return data.data, data.target.to_numpy()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture
def registry(store: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """One store for the module (MLflow migrates a new SQLite file in about a second)."""
    monkeypatch.setenv("NSTARX_HOME", str(store))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return Registry()


@pytest.fixture(scope="module")
def fitted(frame: tuple[pd.DataFrame, np.ndarray[Any, Any]]) -> LogisticRegression:
    x, y = frame
    return LogisticRegression(max_iter=1000, random_state=0).fit(x, y)


@pytest.fixture
def iris(registry: Registry, fitted: LogisticRegression, frame: Any) -> Registry:
    """Two versions of `iris`, registered once per store."""
    if "iris" not in set(registry.models()["name"]):
        x, _ = frame
        registry.register(fitted, "iris", input_example=x.iloc[:3], reference_data=x,
                          description="iris classifier", tags={"team": "ds"})  # fmt: skip
        registry.register(fitted, "iris")
    return registry


def test_register_creates_versions_with_flavor_signature_and_uri(iris: Registry) -> None:
    first = iris.get("iris", 1)
    assert (first.name, first.version, first.uri) == ("iris", "1", "models:/iris/1")
    assert first.flavor == "sklearn"
    assert first.tags == {"team": "ds"}
    assert first.description == "iris classifier"
    signature = iris.signature("iris", 1)
    assert signature is not None
    names = [column["name"] for column in signature["inputs"]]
    assert names == ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                     "petal width (cm)"]  # fmt: skip
    assert iris.get("iris").version == "2"  # latest
    assert first.created.tzinfo is not None


def test_catalog_frames(iris: Registry) -> None:
    models = iris.models()
    row = models.set_index("name").loc["iris"]
    assert row["latest_version"] == "2"
    assert row["description"] == "iris classifier"
    versions = iris.versions("iris")
    assert list(versions["version"]) == ["2", "1"]
    assert list(versions["uri"]) == ["models:/iris/2", "models:/iris/1"]
    assert set(versions["flavor"]) == {"sklearn"}


def test_tags_descriptions_and_aliases_are_editable(iris: Registry) -> None:
    iris.set_tags("iris", {"stage": "review"}, version=2)
    iris.set_tags("iris", {"owner": "alice"})
    assert iris.get("iris", 2).tags["stage"] == "review"
    assert iris.models().set_index("name").loc["iris"]["tags"]["owner"] == "alice"
    iris.delete_tag("iris", "stage", version=2)
    assert "stage" not in iris.get("iris", 2).tags
    iris.set_description("iris", "second try", version=2)
    assert iris.get("iris", 2).description == "second try"

    iris.set_alias("iris", "champion", 1)
    iris.set_alias("iris", "challenger", 2)
    assert iris.get("iris", alias="champion").version == "1"
    assert iris.resolve("models:/iris@challenger").version == "2"
    assert "champion" in iris.get("iris", 1).aliases
    iris.set_alias("iris", "champion", 2)  # an alias moves
    assert iris.resolve("models:/iris@champion").version == "2"
    iris.set_alias("iris", "champion", 1)
    # search_model_versions does not fill aliases: versions() takes them from the model
    shown = iris.versions("iris").set_index("version")["aliases"]
    assert shown.to_dict() == {"2": ["challenger"], "1": ["champion"]}
    with pytest.raises(InvalidInputError, match="not a valid alias"):
        iris.set_alias("iris", "v3", 1)


def test_unknown_models_versions_and_aliases_are_not_found(iris: Registry) -> None:
    with pytest.raises(NotFoundError, match="no registered model 'nope'"):
        iris.get("nope")
    with pytest.raises(NotFoundError, match="no version 9"):
        iris.get("iris", 9)
    with pytest.raises(NotFoundError, match="no alias 'gone'"):
        iris.resolve("models:/iris@gone")
    with pytest.raises(InvalidInputError, match="not a registry URI"):
        parse_model_uri("models:/iris/Production")
    with pytest.raises(InvalidInputError, match="model name"):
        iris.register(object(), "bad name!")
    with pytest.raises(InvalidInputError, match=r"cannot register a builtins\.object"):
        iris.register(object(), "thing")


def test_reference_statistics_are_stored_for_drift_checks(iris: Registry, frame: Any) -> None:
    x, _ = frame
    stats = iris.reference_stats("iris", 1)
    assert stats is not None
    assert stats["rows"] == len(x)
    column = stats["features"]["petal length (cm)"]
    assert column["mean"] == pytest.approx(float(x["petal length (cm)"].mean()))
    assert column["std"] == pytest.approx(float(x["petal length (cm)"].std()))
    assert sum(column["histogram"]["counts"]) == len(x)
    sample = stats["sample"]  # the rows drift's KS and chi-squared tests compare with
    assert sample["rows"] == len(x)  # 150 rows: all kept (up to 1,000 are)
    assert sample["columns"]["petal length (cm)"] == x["petal length (cm)"].tolist()
    assert iris.reference_stats("iris", 2) is None  # registered without data


def test_download_gives_the_mlflow_model_folder(iris: Registry, tmp_path: Path) -> None:
    folder = iris.download("iris", 1, tmp_path / "out")
    assert (folder / "MLmodel").is_file()


def test_registration_leaves_mlflow_global_settings_alone(
    registry: Registry, fitted: LogisticRegression
) -> None:
    import mlflow

    before = mlflow.get_tracking_uri()
    registry.register(fitted, "untouched")
    assert mlflow.get_tracking_uri() == before


def test_mlflow_tracking_uri_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert Registry().tracking_uri == uri
    assert Registry("sqlite:///x.db").tracking_uri == "sqlite:///x.db"


async def test_a_registry_version_serves_like_a_file(
    iris: Registry, fitted: LogisticRegression, frame: Any
) -> None:
    x, _ = frame
    iris.set_alias("iris", "champion", 1)  # whatever the tests before did with it
    settings = parse_model_arg("iris=models:/iris@champion")
    assert (settings.storage_uri, settings.version) == ("models:/iris/1", "1")
    app = create_app([settings], ServingConfig(auth=False))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            record = x.iloc[0].to_dict()
            reply = await http.post("/v1/models/iris/predict", json=record)
            assert reply.status_code == 200, reply.text
            assert reply.json()["prediction"] == int(fitted.predict(x.iloc[:1])[0])
            meta = (await http.get("/v2/models/iris")).json()
            assert meta["versions"] == ["1"]


def test_settings_refuse_a_path_and_a_uri_together(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not both"):
        ModelSettings.build(name="m", path=tmp_path, storage_uri="models:/m/1")
    with pytest.raises(InvalidInputError, match="storage_uri"):
        ModelSettings.build(name="m", storage_uri="s3://bucket/model")


def test_xgboost_and_lightgbm_register_and_serve(registry: Registry, frame: Any) -> None:
    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    x, y = frame
    for name, model in (
        ("iris-xgb", xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)),
        ("iris-lgb", lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)),
    ):
        version = registry.register(model, name)
        local = registry.local_model(version.uri)
        assert local.path.exists()
        from nstarx_jupyter.runtimes import create_runtime

        runtime = create_runtime(local.path, local.runtime, local.options)
        runtime.load()
        out = runtime.predict({"input-0": x.to_numpy()[:3].astype(np.float32)})
        assert next(iter(out.values())).shape[0] == 3
        runtime.unload()


def test_tree_models_register_with_their_types_vouched_for(registry: Registry, frame: Any) -> None:
    """skops refuses trees unless trusted: the caller's own model is, and the MLmodel says so."""
    from sklearn.ensemble import RandomForestClassifier

    from nstarx_jupyter.runtimes import create_runtime

    x, y = frame
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    version = registry.register(forest, "iris-forest")
    local = registry.local_model(version.uri)
    assert "sklearn.tree._tree.Tree" in local.options["trusted_types"]
    runtime = create_runtime(local.path, local.runtime, local.options)
    runtime.load()
    out = runtime.predict({"input-0": x.to_numpy()[:3]})
    assert list(next(iter(out.values()))) == list(forest.predict(x.iloc[:3]))
    runtime.unload()


async def test_an_mlflow_folder_serves_as_a_plain_path(
    iris: Registry, tmp_path: Path, fitted: LogisticRegression, frame: Any
) -> None:
    """What KServe's storage initializer leaves in /mnt/models for `modelFormat: mlflow`."""
    x, _ = frame
    folder = iris.download("iris", 1, tmp_path / "mnt-models")
    app = create_app([parse_model_arg(f"iris={folder}")], ServingConfig(auth=False))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            reply = await http.post("/v1/models/iris/predict", json=x.iloc[0].to_dict())
            assert reply.json()["prediction"] == int(fitted.predict(x.iloc[:1])[0])


def test_a_local_registry_is_out_of_a_clusters_reach(iris: Registry) -> None:
    from nstarx_jupyter.deployment import DeploymentSpec

    assert iris.artifact_uri("models:/iris/1").startswith("file://")
    spec = DeploymentSpec(name="iris", storage_uri="models:/iris/1", model_format="mlflow")
    with pytest.raises(InvalidInputError, match=r"storage_uri: 'file://.*' is on this machine"):
        spec.to_kserve()
    assert "s3://bucket/iris" in spec.to_kserve(storage_uri="s3://bucket/iris")


def test_registration_leaves_the_environment_for_child_processes_alone(
    registry: Registry, fitted: LogisticRegression
) -> None:
    import os

    assert "MLFLOW_TRACKING_URI" not in os.environ
    registry.register(fitted, "env-check")
    assert "MLFLOW_TRACKING_URI" not in os.environ  # a server started next reads $NSTARX_HOME


def test_a_registered_versions_sample_is_a_drift_reference(iris: Registry, frame: Any) -> None:
    from nstarx_jupyter.notebook.drift import registry_reference
    from nstarx_jupyter.serving.drift import Reference

    x, _ = frame
    reference = Reference.parse(registry_reference("models:/iris/1"))
    assert reference.source == "registry"
    assert reference.rows == len(x)
    assert list(reference.columns) == list(x.columns)
    with pytest.raises(InvalidInputError, match="no reference sample"):
        registry_reference("models:/iris/2")
