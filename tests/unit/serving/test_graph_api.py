"""The control API's graph routes in process: serve, list, call, stop; names shared with nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.settings import ModelSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

ADMIN_TOKEN = "unit-admin-token"  # noqa: S105 - a test credential
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]
GRAPH: dict[str, Any] = {"nodes": {"root": {"routerType": "Ensemble", "steps": [
    {"serviceName": "iris", "name": "first"}, {"serviceName": "iris"}]}}}  # fmt: skip


@pytest.fixture
async def client(iris_path: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = ServingConfig(state_dir=tmp_path / "state", security_dir=tmp_path / "security",
                           audit_dir=tmp_path / "audit", admin_token=ADMIN_TOKEN)  # fmt: skip
    app = create_app([ModelSettings(name="iris", path=iris_path)], config)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def test_a_graph_is_served_listed_called_on_every_path_and_stopped(
    client: httpx.AsyncClient, iris_model: LogisticRegression
) -> None:
    put = await client.put("/nstarx/v1/graphs/both", json=GRAPH, headers=ADMIN)
    assert put.status_code == 201, put.text
    assert put.json()["services"] == ["iris"]
    listed = await client.get("/nstarx/v1/graphs", headers=ADMIN)
    assert [g["name"] for g in listed.json()] == ["both"]
    expected = [int(c) for c in iris_model.predict(ROWS)]
    for path in ("/v1/models/both:predict", "/v1/models/both/predict", "/v2/models/both/infer"):
        # No key: a graph without the enable-auth annotation is open, as on KServe.
        answer = await client.post(path, json={"instances": ROWS})
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json() == {"first": {"predictions": expected},
                                 "1": {"predictions": expected}}  # fmt: skip
    again = await client.put("/nstarx/v1/graphs/both", json={**GRAPH, "auth": True},
                             headers=ADMIN)  # fmt: skip
    assert again.status_code == 200
    assert (
        await client.post("/v1/models/both:predict", json={"instances": ROWS})
    ).status_code == 401
    assert (await client.delete("/nstarx/v1/graphs/both", headers=ADMIN)).status_code == 204
    assert (await client.get("/nstarx/v1/graphs/both", headers=ADMIN)).status_code == 404


async def test_a_graph_shares_its_name_with_no_model_pipeline_or_deployment(
    client: httpx.AsyncClient, iris_path: Path
) -> None:
    taken = await client.put("/nstarx/v1/graphs/iris", json=GRAPH, headers=ADMIN)
    assert taken.status_code == 409
    assert (await client.put("/nstarx/v1/graphs/g", json=GRAPH, headers=ADMIN)).status_code == 201
    pipeline = {"nodes": [{"id": "in", "component": "input"}]}
    clash = await client.put("/nstarx/v1/pipelines/g", json=pipeline, headers=ADMIN)
    assert clash.status_code == 409
    assert "inference graph" in clash.json()["error"]
    deployment = {"storage_uri": str(iris_path), "trusted": True}
    clash = await client.put("/nstarx/v1/deployments/g", json=deployment, headers=ADMIN)
    assert clash.status_code == 409
    assert "inference graph" in clash.json()["error"]
    bad = await client.put(
        "/nstarx/v1/graphs/h",
        headers=ADMIN,
        json={
            "nodes": {
                "root": {
                    "routerType": "Switch",
                    "steps": [{"serviceName": "iris", "condition": "a.*"}],
                }
            }
        },
    )
    assert bad.status_code == 400
    assert "spec.nodes.root.steps[0].condition" in bad.json()["error"]
