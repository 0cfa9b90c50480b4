"""The control API in process: every error is a JSON body with its status, and every call audited.

Refused calls (401, 403, 429) on the control and data planes are audited with the id of the key
that was refused whenever the server identified it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
import skops.io
from starlette.applications import Starlette
from starlette.routing import Route

from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.control_http import control_endpoint
from nstarx_jupyter.serving.settings import ModelSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression
    from starlette.requests import Request
    from starlette.responses import Response

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.inference_http import InferenceApp

ADMIN_TOKEN = "unit-admin-token"  # noqa: S105 - a test credential
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
async def app(iris_path: Path, tmp_path: Path) -> AsyncIterator[InferenceApp]:
    config = ServingConfig(
        state_dir=tmp_path / "state",
        security_dir=tmp_path / "security",
        audit_dir=tmp_path / "audit",
        admin_token=ADMIN_TOKEN,
    )
    served = create_app([ModelSettings(name="iris", path=iris_path)], config)
    async with served.lifespan():
        yield served


@pytest.fixture
async def client(app: InferenceApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


async def make_key(client: httpx.AsyncClient, **body: Any) -> tuple[str, str]:
    """A new key and its id."""
    made = await client.post("/nstarx/v1/keys", json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    doc = made.json()
    return doc["key"], doc["id"]


async def audited(client: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    """The audit records matching `query` (the audit route flushes what is pending first)."""
    answer = await client.get("/nstarx/v1/audit", params=query, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    records: list[dict[str, Any]] = answer.json()
    return records


def is_json_error(response: httpx.Response, status: int) -> bool:
    return (
        response.status_code == status
        and response.headers["content-type"].startswith("application/json")
        and isinstance(response.json().get("error"), str)
    )


async def test_logs_of_a_deployment_that_never_existed_is_a_404(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/nstarx/v1/deployments/nothing-here/logs", headers=ADMIN)
    assert is_json_error(response, 404), response.text
    assert "nothing-here" in response.json()["error"]
    (record,) = await audited(client, action="logs", model="nothing-here")
    assert (record["status"], record["key"]) == (404, "admin")


async def test_a_deleted_deployment_keeps_its_events_readable(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path
) -> None:
    artifact = nstarx_home / "models" / "gone.skops"  # skops: loads without trusting code
    artifact.parent.mkdir(parents=True)
    skops.io.dump(iris_model, artifact)
    url = "/nstarx/v1/deployments/gone"
    made = await client.put(url, json={"storage_uri": str(artifact)}, headers=ADMIN)
    assert made.status_code == 201, made.text
    assert (await client.delete(url, headers=ADMIN)).status_code == 204
    logs = await client.get(f"{url}/logs", headers=ADMIN)
    assert logs.status_code == 200, logs.text
    assert logs.json()["lines"][-1].endswith("gone deleted")


@pytest.mark.parametrize(
    "body",
    [
        b'{"call": false}',
        b'{"call": "fraud-app"}',
        b'{"read": [1, 2]}',
        b'{"deploy": [""]}',
        b'{"call": {"a": 1}}',
        b'{"everything": ["alice"]}',
        b"[]",
        b'"call"',
        b"{not json",
    ],
)
async def test_a_wrong_access_rule_body_is_a_400_json_and_audited(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.put("/nstarx/v1/access/iris", content=body, headers=ADMIN)
    assert is_json_error(response, 400), response.text
    (record,) = await audited(client, action="access.put")
    assert (record["status"], record["key"]) == (400, "admin")
    assert (await client.get("/nstarx/v1/access", headers=ADMIN)).json() == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"runtime": "../x"},
        {"runtime": "./evil.Runtime"},
        {"storage_uri": "~nosuchuser-nstarx/model.joblib"},
        {"storage_uri": "{tmp}/" + "x" * 300 + "/model.joblib"},  # a name over 255 bytes
    ],
)
async def test_a_deployment_naming_an_impossible_runtime_or_path_is_refused_as_json_and_audited(
    client: httpx.AsyncClient, iris_path: Path, tmp_path: Path, fields: dict[str, str]
) -> None:
    spec = {"storage_uri": str(iris_path), **fields}
    spec["storage_uri"] = spec["storage_uri"].replace("{tmp}", str(tmp_path))
    response = await client.put("/nstarx/v1/deployments/odd", json=spec, headers=ADMIN)
    # 400 here; the trust policy may refuse such a spec earlier, with 403
    assert is_json_error(response, 400) or is_json_error(response, 403), response.text
    (record,) = await audited(client, action="deployment.put", model="odd")
    assert record["status"] == response.status_code
    assert record["key"] == "admin"


async def test_an_exception_escaping_a_control_handler_is_a_json_500_and_audited(
    app: InferenceApp, client: httpx.AsyncClient
) -> None:
    async def broken(request: Request, principal: Principal) -> Response:
        raise RuntimeError("a bug")

    endpoint = control_endpoint(app.dataplane, broken, "any", "broken")
    inner = Starlette(routes=[Route("/broken/{name}", endpoint, methods=["POST"])])
    transport = httpx.ASGITransport(app=inner)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        response = await http.post("/broken/thing", headers=ADMIN)
    assert is_json_error(response, 500), response.text
    assert "a bug" not in response.text  # no internals in the answer
    (record,) = await audited(client, action="broken.post")
    assert (record["status"], record["model"], record["key"]) == (500, "thing", "admin")


async def test_a_forbidden_control_call_is_audited_with_the_key_id(
    client: httpx.AsyncClient,
) -> None:
    key, key_id = await make_key(client, name="caller", scopes=["predict:*"])
    response = await client.get("/nstarx/v1/keys", headers={"Authorization": f"Bearer {key}"})
    assert is_json_error(response, 403), response.text
    (record,) = await audited(client, action="keys", status="403")
    assert (record["key"], record["principal"]) == (key_id, "caller")


async def test_a_forbidden_inference_call_is_audited_with_the_key_id(
    client: httpx.AsyncClient,
) -> None:
    key, key_id = await make_key(client, name="other-app", scopes=["predict:other"])
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    headers = {"Authorization": f"Bearer {key}"}
    infer = await client.post("/v2/models/iris/infer", json=body, headers=headers)
    metadata = await client.get("/v2/models/iris", headers=headers)
    assert is_json_error(infer, 403), infer.text
    assert is_json_error(metadata, 403), metadata.text
    records = await audited(client, model="iris", status="403")
    assert [(r["action"], r["key"], r["principal"]) for r in records] == [
        ("infer", key_id, "other-app"),
        ("model_metadata", key_id, "other-app"),
    ]


async def test_a_rate_limited_inference_call_is_audited_with_the_key_id(
    client: httpx.AsyncClient,
) -> None:
    key, key_id = await make_key(client, scopes=["predict:iris"], rate_limit=0.001, burst=1)
    body = {"instances": [ROW]}
    headers = {"Authorization": f"Bearer {key}"}
    first = await client.post("/v1/models/iris:predict", json=body, headers=headers)
    second = await client.post("/v1/models/iris:predict", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert is_json_error(second, 429), second.text
    (record,) = await audited(client, action="predict", status="429")
    assert record["key"] == key_id


async def test_an_unknown_key_is_audited_as_anonymous(client: httpx.AsyncClient) -> None:
    fake = {"Authorization": "Bearer nsx_0123abcd_not-a-real-secret"}
    response = await client.get("/nstarx/v1/deployments", headers=fake)
    assert is_json_error(response, 401), response.text
    (record,) = await audited(client, action="deployments", status="401")
    assert record["key"] == "-"  # an unverified key proves nobody: it is not attributed


async def test_a_key_with_a_null_expiry_is_minted_without_one(client: httpx.AsyncClient) -> None:
    made = await client.post("/nstarx/v1/keys", json={"expires_in_s": None}, headers=ADMIN)
    assert made.status_code == 201, made.text
    assert "expires" not in made.json()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PATCH", "/nstarx/v1/keys", 405),
        ("POST", "/nstarx/v1/deployments/iris", 405),
        ("GET", "/nstarx/v1/no-such-route", 404),
    ],
)
async def test_an_unknown_control_path_or_method_is_json_and_audited(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path, headers=ADMIN)
    assert is_json_error(response, status), response.text
    if status == 405:
        assert method not in response.headers["allow"]
    anonymous = await client.request(method, path)
    assert is_json_error(anonymous, 401), anonymous.text  # no probing without a credential
    records = await audited(client, action=f"unrouted.{method.lower()}" if method != "GET"
                            else "unrouted")  # fmt: skip
    assert [(r["status"], r["key"]) for r in records] == [(status, "admin"), (401, "-")]
