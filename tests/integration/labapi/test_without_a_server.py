"""The routes that need no local server: its state, keys in the key file, the pipeline editor's
palette, checks and test runs, and how client mistakes are answered."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from nstarx_jupyter.config import STATE_FILE
from nstarx_jupyter.notebook import editing
from nstarx_jupyter.security.home import key_store
from tests.conftest import IRIS_FEATURES

pytestmark = [pytest.mark.integration]  # a real Jupyter server on a loopback port

if TYPE_CHECKING:
    from pathlib import Path

    from jupyter_server.serverapp import ServerApp

    from tests.integration.labapi.conftest import Api

ROW = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


def _flowers(model: str) -> dict[str, Any]:
    """model → named fields, as the canvas would send it."""
    return {
        "name": "flowers",
        "nodes": [{"id": "clf", "component": "model", "config": {"model": model}},
                  {"id": "out", "component": "fields", "config": {"fields": {
                      "species": "prediction"}}}],
        "edges": [{"id": "e1", "source": "clf", "target": "out"}],
    }  # fmt: skip


def test_jupyter_loads_the_extension_app(jp_serverapp: ServerApp) -> None:
    from nstarx_jupyter.labapi import NstarxLabApp, _jupyter_server_extension_points

    [point] = _jupyter_server_extension_points()
    assert point == {"module": "nstarx_jupyter.labapi", "app": NstarxLabApp}
    loaded = jp_serverapp.extension_manager.extension_apps["nstarx_jupyter.labapi"]
    assert {type(app) for app in loaded} == {NstarxLabApp}


def test_the_api_models_and_their_schema_need_no_jupyter_server() -> None:
    code = (
        "import sys, nstarx_jupyter.labapi.schema; "
        "print(any(m.split('.')[0] in ('jupyter_server', 'tornado') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False"]


def test_the_server_is_reported_stopped_and_not_started_by_polling(
    api: Api, nstarx_home: Path
) -> None:
    info = api("GET", "server")
    assert info == {"running": False, "url": None, "grpc": None, "pid": None,
                    "home": str(nstarx_home), "version": info["version"]}  # fmt: skip
    assert api("GET", "deployments") == []
    assert not (nstarx_home / "server" / STATE_FILE).exists()  # the poll started nothing


def test_keys_live_in_the_key_file_while_no_server_runs(api: Api) -> None:
    made = api("POST", "keys", {"name": "ci", "scopes": ["predict:iris"]}, status=201)
    key, info = made["key"], made["info"]
    assert key.startswith(f"{info['prefix']}_")
    assert info["scopes"] == ["predict:iris"]
    assert key_store().verify(key).id == info["id"]  # the file a server would read
    listed = api("GET", "keys")
    assert [k["id"] for k in listed] == [info["id"]]
    assert key not in str(listed)
    revoked = api("DELETE", f"keys/{info['prefix']}")
    assert (revoked["id"], revoked["state"]) == (info["id"], "revoked")
    assert api("GET", "keys")[0]["state"] == "revoked"
    assert "no API key" in api.error("DELETE", "keys/nsx_00000000", status=404)
    assert "scopes" in api.error("POST", "keys", {}, status=400)  # no default: name them


@pytest.mark.parametrize(
    "scopes",
    [["admin"], ["predict:*"], ["manage:*"], ["*"], ["predict:iris", "admin"]],
)
def test_the_lab_mints_no_admin_nor_wildcard_key(api: Api, scopes: list[str]) -> None:
    refused = api.error("POST", "keys", {"name": "page", "scopes": scopes}, status=403)
    assert "the lab does not mint" in refused
    assert "nstarx keys create" in refused  # where the server's owner mints one
    assert key_store().records() == []  # nothing minted, nothing written


def test_the_lab_mints_keys_for_named_deployments(api: Api) -> None:
    scopes = ["predict:iris", "manage:iris", "metrics"]
    made = api("POST", "keys", {"name": "ci", "scopes": scopes}, status=201)
    assert made["info"]["scopes"] == scopes
    assert key_store().verify(made["key"]).scopes == tuple(scopes)


@pytest.mark.parametrize(
    ("method", "path", "body", "named"),
    [
        ("POST", "keys", "{not json", "not JSON"),
        ("POST", "keys", [], "body"),
        ("POST", "keys", {"scopes": []}, "scopes"),
        ("POST", "keys", {"scopes": ["sing:iris"]}, "scopes"),
        ("POST", "keys", {"name": "x", "scopes": ["iris"], "colour": "red"}, "colour"),
        ("POST", "deployments", {"model": "iris", "version": "1"}, "name"),
        (
            "POST",
            "deployments",
            {"name": "iris", "model": "iris", "version": "1", "canary_percent": 120},
            "canary_percent",
        ),
        (
            "POST",
            "deployments",
            {"name": "iris", "model": "iris", "version": "1", "min_replicas": "many"},
            "min_replicas",
        ),
        ("PUT", "deployments/iris/traffic", {}, "canary_percent"),
        ("POST", "pipelines/check", {}, "spec"),
        ("POST", "pipelines/run", {"spec": {"name": "Bad Name"}}, "name"),
        ("POST", "pipelines/flowers/versions", {"spec": _flowers("x"), "note": ""}, "note"),
    ],
)
def test_a_client_mistake_is_a_400_naming_the_field(
    api: Api, method: str, path: str, body: Any, named: str
) -> None:
    assert named in api.error(method, path, body, status=400)


def test_the_palette_is_the_notebook_editors(api: Api) -> None:
    pytest.importorskip("anywidget")
    from nstarx_jupyter.notebook.flow import FlowEditor

    palette = api("GET", "pipelines/library")
    editor = FlowEditor(name="flowers")
    assert palette == {"library": editing.plain(editor.library), "kinds": editor.kinds,
                       "port_rules": editor.port_rules}  # fmt: skip
    assert {"model", "router", "impute"} <= {c["name"] for c in palette["library"]}


def test_check_lists_every_problem_and_the_ports_configs_change(api: Api, named_iris: Path) -> None:
    spec = _flowers(named_iris.as_uri())
    assert api("POST", "pipelines/check", {"spec": spec}) == {"problems": [], "node_ports": {}}
    spec["nodes"][0]["config"]["model"] = (named_iris / "missing").as_uri()
    spec["nodes"].append({"id": "r", "component": "router", "config": {"branches": [
        {"name": "big", "when": [{"field": "x", "op": ">", "value": 1}]}]}})  # fmt: skip
    checked = api("POST", "pipelines/check", {"spec": spec})
    codes = {(p["id"], p["code"]) for p in checked["problems"]}
    assert ("clf", "unknown-model") in codes
    assert ("r", "unconnected-input") in codes
    outputs = [port["name"] for port in checked["node_ports"]["r"]["outputs"]]
    assert outputs == ["big", "default"]


def test_a_test_run_answers_each_node_or_the_node_that_failed(api: Api, named_iris: Path) -> None:
    spec = _flowers(named_iris.as_uri())
    ran = api("POST", "pipelines/run", {"spec": spec, "sample": ROW})
    assert ran["output"] == {"species": 0}
    assert set(ran["nodes"]) == {"clf", "out"}
    assert ran["nodes"]["clf"]["status"] == "ok"
    assert ran["ms"] > 0
    failed = api("POST", "pipelines/run", {"spec": spec, "sample": {"sepal_length": 5.1}})
    assert failed["node"] == "clf"  # a pipeline's own failure is an answer, not a 4xx
    assert "clf" in failed["error"]
    assert "pipeline spec: name" in api.error(
        "POST", "pipelines/run", {"spec": {"name": 3}}, status=400
    )
