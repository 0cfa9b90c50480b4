"""A deployment whose model fails to load on its first request is `Failed` with the reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import skops.io as skops_io

from nstarx_jupyter.serving.app import ServingConfig, create_app

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "admin-token-for-the-test"  # noqa: S105 - a test server's token


async def test_a_scaled_to_zero_deployment_that_fails_to_load_is_failed_with_its_reason(
    nstarx_home: Path,
) -> None:
    broken = nstarx_home / "models" / "broken.skops"
    broken.parent.mkdir(parents=True)
    # a safe file (the control API checks its types when it is sent) that holds no model
    skops_io.dump({"weights": [1.0, 2.0]}, broken)
    app = create_app([], ServingConfig(state_dir=nstarx_home / "state", admin_token=TOKEN))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        admin = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                     headers=admin) as http:  # fmt: skip
            put = await http.put("/nstarx/v1/deployments/cold",
                                 json={"storage_uri": str(broken), "min_replicas": 0})  # fmt: skip
            assert put.status_code == 201, put.text  # nothing loads until the first request
            called = await http.post("/v1/models/cold/predict", json={"x": 1.0})
            assert called.status_code == 503
            assert "FAILED to load" in called.json()["error"]
            described = (await http.get("/nstarx/v1/deployments/cold")).json()
            assert described["status"] == "Failed"
            assert described["reason"]
            index = (await http.post("/v2/repository/index")).json()
            assert [(row["name"], row["state"]) for row in index] == [("cold", "FAILED")]
            # A failed model is not tried again on every request: the reason stays.
            again = await http.post("/v1/models/cold/predict", json={"x": 1.0})
            assert again.json()["error"] == called.json()["error"]
