"""The sidebar's and the pipeline document's work on a real local server and MLflow registry.

One `$NSTARX_HOME` for the module: iris registered twice, one local server (started through
the API, stopped at the end), a Jupyter server per test. The tests run in order, as a user's
session would: deploy, canary, snippets, keys, pipelines, delete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter.deployment.local import LocalBackend

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import pandas as pd

    from tests.integration.labapi.conftest import Api

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("labapi")]
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROW = dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


@pytest.fixture(scope="module")
def lab_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's home; its local server is stopped at the end, whoever started it."""
    home = tmp_path_factory.mktemp("lab-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NSTARX_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        try:
            yield home
        finally:
            LocalBackend(home / "server").stop()


@pytest.fixture(autouse=True)
def nstarx_home(lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test of the module in the module's home (instead of a fresh one)."""
    monkeypatch.setenv("NSTARX_HOME", str(lab_home))
    return lab_home


@pytest.fixture(scope="module")
def iris(lab_home: Path) -> None:
    """iris versions 1 and 2 in the module's registry."""
    from nstarx_jupyter.registry import Registry

    frame: pd.DataFrame = load_iris(as_frame=True).frame
    x, y = frame[FEATURES], frame["target"]
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x, y)
    registry = Registry()
    registry.register(model, "iris", input_example=x.iloc[:2], description="iris classifier")
    registry.register(model, "iris", input_example=x.iloc[:2])
    registry.set_tags("iris", {"team": "ds"})
    registry.set_alias("iris", "champion", 2)


@pytest.fixture
def server(api: Api, iris: None) -> dict[str, Any]:
    """The local server, started through the API (the first test starts it)."""
    info: dict[str, Any] = api("POST", "server")
    return info


def _percent(info: dict[str, Any]) -> dict[str, float]:
    return {arm["variant"]: arm["percent"] for arm in info["traffic"]}


def test_the_catalog_searches_models_and_lists_versions(api: Api, iris: None) -> None:
    [model] = api("GET", "models")
    assert (model["name"], model["latest_version"]) == ("iris", "2")
    assert (model["tags"], model["aliases"]) == ({"team": "ds"}, {"champion": "2"})
    for search in ("IRIS", "classifier", "DS", "team", "Champion"):
        assert [m["name"] for m in api("GET", "models", params={"search": search})] == ["iris"], (
            search
        )
    assert api("GET", "models", params={"search": "tulip"}) == []
    versions = api("GET", "models/iris/versions")
    assert [(v["version"], v["uri"], v["flavor"]) for v in versions] == [
        ("2", "models:/iris/2", "sklearn"), ("1", "models:/iris/1", "sklearn")]  # fmt: skip
    assert versions[1]["description"] == "iris classifier"
    assert "no registered model 'tulip'" in api.error("GET", "models/tulip/versions", status=404)


def test_the_server_starts_once_and_never_shows_its_token(api: Api, server: dict[str, Any]) -> None:
    state = LocalBackend().running()
    assert state is not None
    assert server["running"] is True
    assert (server["url"], server["pid"]) == (state.url, state.pid)
    assert api("POST", "server")["pid"] == state.pid
    assert state.token not in str(api("GET", "server"))


def test_deploy_from_the_form_serves_with_the_key_shown_once(
    api: Api, server: dict[str, Any]
) -> None:
    form = {"name": "iris", "model": "iris", "version": "1", "max_batch_size": 8}
    made = api("POST", "deployments", form, status=201)
    info, key = made["deployment"], made["key"]
    assert (info["status"], info["model"], info["revision"]) == ("Ready", "models:/iris/1", 1)
    assert info["url"] == f"{server['url']}/v1/models/iris"
    assert (info["max_batch_size"], info["max_latency_ms"]) == (8, 5)  # the spec's default wait
    assert key.startswith("nsx_")
    [minted] = [k for k in api("GET", "keys") if key.startswith(k["prefix"] + "_")]
    assert minted["name"] == "sidebar deploy of iris"  # where it came from
    answer = httpx.post(f"{info['url']}/predict", json=ROW,
                        headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    [listed] = api("GET", "deployments")
    assert listed["name"] == "iris"
    assert listed["metrics"]["requests"] >= 1
    assert listed["metrics"]["p50_ms"] is not None
    assert key not in str(listed)
    assert api("GET", "deployments/iris")["model"] == "models:/iris/1"


def test_the_list_takes_a_target_and_shows_each_row_as_the_backend_describes_it(
    api: Api, server: dict[str, Any]
) -> None:
    [listed] = api("GET", "deployments", params={"target": "local"})
    assert (listed["name"], listed["target"], listed["namespace"]) == ("iris", "local", None)
    assert listed["spec"]["storage_uri"] == listed["model"] == "models:/iris/1"
    assert listed["url"] == f"{server['url']}/v1/models/iris"
    refused = api("GET", "deployments", params={"target": "cloud"}, status=400)
    assert "one of local, kserve" in refused["error"]
    local_only = api("GET", "deployments", params={"namespace": "team-a"}, status=400)
    assert "only for target 'kserve'" in local_only["error"]
    # Each deployment's routes take the same query: the local server's by default.
    assert api("GET", "deployments/iris", params={"target": "local"})["target"] == "local"
    logs = api("GET", "deployments/iris/logs", params={"target": "local"})
    assert any("deployed revision 1" in line for line in logs["lines"])
    for path in ("deployments/iris", "deployments/iris/logs", "deployments/iris/snippets"):
        assert "one of local, kserve" in api("GET", path, params={"target": "cloud"},
                                             status=400)["error"]  # fmt: skip


def test_a_canary_moves_then_is_promoted_or_rolled_back(api: Api, server: dict[str, Any]) -> None:
    form = {"name": "iris", "model": "iris", "version": "2", "canary_percent": 20}
    made = api("POST", "deployments", form, status=201)
    assert made["key"] is None  # a canary of an existing deployment mints no key
    canary = made["deployment"]
    assert (canary["model"], canary["stable_model"]) == ("models:/iris/2", "models:/iris/1")
    assert canary["canary_percent"] == 20
    assert _percent(canary) == {"stable": 80.0, "canary": 20.0}
    moved = api("PUT", "deployments/iris/traffic", {"canary_percent": 50})
    assert (moved["canary_percent"], _percent(moved)) == (50, {"stable": 50.0, "canary": 50.0})
    # Each arm's own figures while the traffic is split: the canary's calls count as its own.
    key = api("POST", "keys", {"name": "arms", "scopes": ["predict:iris"]}, status=201)["key"]
    for _ in range(6):
        httpx.post(f"{canary['url']}/versions/2/predict", json=ROW,
                   headers={"Authorization": f"Bearer {key}"}).raise_for_status()  # fmt: skip
    arms = {arm["variant"]: arm["metrics"] for arm in api("GET", "deployments/iris")["traffic"]}
    assert arms["canary"]["requests"] >= 6
    assert arms["canary"]["p50_ms"] is not None
    assert arms["stable"]["requests"] < arms["canary"]["requests"]
    promoted = api("POST", "deployments/iris/promote")
    assert (promoted["model"], promoted["canary_percent"], promoted["stable_model"]) == (
        "models:/iris/2", None, None)  # fmt: skip
    assert [arm["metrics"] for arm in promoted["traffic"]] in ([], [None])  # one arm: no figures
    assert "no canary" in api.error("PUT", "deployments/iris/traffic", {"canary_percent": 5},
                                    status=400)  # fmt: skip
    api("POST", "deployments", {**form, "version": "1", "canary_percent": 10}, status=201)
    back = api("POST", "deployments/iris/rollback")
    assert (back["model"], back["canary_percent"]) == ("models:/iris/2", None)
    assert "no canary" in api.error("POST", "deployments/iris/rollback", status=400)


def test_snippets_and_logs_hold_no_key(api: Api, server: dict[str, Any]) -> None:
    snippets = api("GET", "deployments/iris/snippets")
    assert snippets["url"] == f"{server['url']}/v1/models/iris"
    assert '-H "Authorization: Bearer $NSTARX_API_KEY"' in snippets["curl"]
    assert "api_key=os.environ['NSTARX_API_KEY']" in snippets["python"]
    assert '"petal width (cm)":0.0' in snippets["curl"]  # the registry's signature
    compile(snippets["python"], "<snippet>", "exec")
    assert "nsx_" not in snippets["curl"] + snippets["python"]
    logs = api("GET", "deployments/iris/logs")
    assert logs["name"] == "iris"
    assert any("canary" in line for line in logs["lines"])


def test_keys_go_through_the_running_server(api: Api, server: dict[str, Any]) -> None:
    before = api("GET", "keys")
    for scopes in (["admin"], ["manage:*"]):  # what the running server would mint as asked
        refused = api.error("POST", "keys", {"name": "page", "scopes": scopes}, status=403)
        assert "the lab does not mint" in refused
    assert api("GET", "keys") == before
    made = api("POST", "keys", {"name": "sidebar", "scopes": ["predict:iris"]}, status=201)
    prefix = made["info"]["prefix"]
    assert prefix in [key["prefix"] for key in api("GET", "keys")]
    url = f"{server['url']}/v1/models/iris/predict"
    bearer = {"Authorization": f"Bearer {made['key']}"}
    assert httpx.post(url, json=ROW, headers=bearer).status_code == 200
    assert api("DELETE", f"keys/{made['info']['id']}")["state"] == "revoked"
    assert httpx.post(url, json=ROW, headers=bearer).status_code == 401


def test_unknown_deployments_and_versions_are_404(api: Api, server: dict[str, Any]) -> None:
    for method, path in [("GET", "deployments/tulip"), ("DELETE", "deployments/tulip"),
                         ("POST", "deployments/tulip/promote"),
                         ("GET", "deployments/tulip/snippets")]:  # fmt: skip
        assert "tulip" in api.error(method, path, status=404)
    form = {"name": "tulip", "model": "iris", "version": "9"}
    assert "9" in api.error("POST", "deployments", form, status=404)


def test_pipelines_save_version_load_and_deploy(api: Api, server: dict[str, Any]) -> None:
    spec = {"name": "flowers", "nodes": [
        {"id": "clf", "component": "model", "config": {"model": "models:/iris/1"}},
        {"id": "out", "component": "fields", "config": {"fields": {"species": "prediction"}}},
    ], "edges": [{"id": "e1", "source": "clf", "target": "out"}]}  # fmt: skip
    assert api("POST", "pipelines/check", {"spec": spec})["problems"] == []
    assert api("POST", "pipelines/run", {"spec": spec, "sample": ROW})["output"] == {"species": 0}
    assert api("GET", "pipelines/flowers/versions") == []
    saved = api(
        "POST", "pipelines/flowers/versions", {"spec": spec, "message": "first"}, status=201
    )
    assert saved == {"name": "flowers", "version": 1}
    api("POST", "pipelines/flowers/versions", {"spec": spec, "message": "again"}, status=201)
    versions = api("GET", "pipelines/flowers/versions")
    assert [(v["version"], v["message"]) for v in versions] == [(2, "again"), (1, "first")]
    loaded = api("GET", "pipelines/flowers/versions/1")
    assert loaded["version"] == 1
    assert loaded["spec"]["nodes"][0]["config"] == {"model": "models:/iris/1"}
    assert "version 9" in api.error("GET", "pipelines/flowers/versions/9", status=404)
    assert "spec.name" in api.error("POST", "pipelines/roses/versions", {"spec": spec}, status=400)
    taken = {"spec": {**spec, "name": "iris"}}
    assert "already a registered model" in api.error("POST", "pipelines/iris/versions", taken,
                                                     status=409)  # fmt: skip
    deployed = api("POST", "pipelines/deploy", {"spec": spec, "sample": ROW})
    assert deployed["url"] == f"{server['url']}/v1/models/flowers/predict"
    assert deployed["key_prefix"].startswith("nsx_")
    assert "$NSTARX_API_KEY" in deployed["curl"]
    state = LocalBackend().running()
    assert state is not None
    answer = httpx.post(deployed["url"], json=ROW,
                        headers={"Authorization": f"Bearer {state.token}"})  # fmt: skip
    assert answer.json() == {"species": 0}
    assert "already served" in api.error("POST", "deployments",
                                         {"name": "flowers", "model": "iris", "version": "1"},
                                         status=409)  # fmt: skip


def test_delete_stops_serving(api: Api, server: dict[str, Any]) -> None:
    assert api("DELETE", "deployments/iris", status=204) is None
    states = {k["name"]: k["state"] for k in api("GET", "keys")}
    assert states["sidebar deploy of iris"] == "revoked"  # the deploy's key goes with it
    assert states["arms"] == "active"  # a key made on purpose stays
    assert "iris" in api.error("GET", "deployments/iris", status=404)
    assert "iris" not in [d["name"] for d in api("GET", "deployments")]
