"""The control API's answers are `protocol.control` models on both ends, their JSON unchanged.

The server builds keys, access rules, audit records, metrics, variants, cost, prices, trends,
drift, explanations and the A/B report from the models, and `LocalBackend` parses them back
(`parse_answer`): these tests pin the JSON (fields left out when unset, nulls kept where clients
read them, the analyses' bytes as the server writes them) and the error a malformed answer gets
where it enters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import orjson
import pytest
import skops.io

from nstarx_jupyter.deployment.backend import DeploymentList, DeploymentView
from nstarx_jupyter.deployment.local_answers import describe_local, parse_answer
from nstarx_jupyter.errors import NstarxError
from nstarx_jupyter.monitoring.drift import Column, histograms
from nstarx_jupyter.pipelines.served import GraphList, GraphView, PipelineList, PipelineView
from nstarx_jupyter.protocol.control import (
    AbReport,
    AccessRule,
    AccessRules,
    AuditRows,
    DeploymentCost,
    DeploymentHistory,
    DeploymentLogs,
    DeploymentMetrics,
    DeploymentVariants,
    DriftHistogram,
    DriftReferenceView,
    DriftView,
    ExplainView,
    ImportanceView,
    JobList,
    JobView,
    KeyCreated,
    KeyList,
    KeyRecord,
    KeyRotated,
    PriceTable,
    TrendRow,
)
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.settings import ModelSettings
from nstarx_jupyter.serving.trends import Rollup

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import numpy as np
    from pydantic import BaseModel
    from sklearn.linear_model import LogisticRegression

ADMIN_TOKEN = "unit-admin-token"  # noqa: S105 - a test credential
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SPEC = {"name": "x", "storage_uri": "file:///m.skops"}
WELL_FORMED_DEPLOYMENT = {"name": "x", "revision": 1, "status": "Ready", "created": 1.0,
                          "updated": 1.0, "sinks": {}, "spec": SPEC}  # fmt: skip
KEY_FIELDS = {"id", "prefix", "name", "scopes", "created", "state"}
WELL_FORMED_KEY = {"id": "1a2b3c4d", "prefix": "nsx_1a2b3c4d", "name": "", "scopes": ["admin"],
                   "created": 1.0, "state": "active"}  # fmt: skip


@pytest.fixture
async def client(iris_path: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = ServingConfig(
        state_dir=tmp_path / "state",
        security_dir=tmp_path / "security",
        audit_dir=tmp_path / "audit",
        admin_token=ADMIN_TOKEN,
    )
    served = create_app([ModelSettings(name="iris", path=iris_path)], config)
    async with served.lifespan():
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def answer(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    model: type[BaseModel],
    *,
    exclude_defaults: bool = False,
    same_bytes: bool = False,
    **body: object,
) -> object:
    """The JSON of an admin call, checked to be what `model` parses and dumps back unchanged.

    `same_bytes`: and the model's dump, written as those routes write it (orjson), is the
    answer byte for byte (a whole number in a float field would show here, not in `==`).
    """
    sent = await client.request(method, f"/nstarx/v1{path}", json=body or None, headers=ADMIN)
    assert sent.status_code in (200, 201), sent.text
    doc: object = sent.json()
    parsed = parse_answer(model, doc, f"{method} {path}")
    dumped = parsed.model_dump(mode="json", exclude_defaults=exclude_defaults)
    assert dumped == doc  # the models do not change the wire
    if same_bytes:
        assert orjson.dumps(dumped) == sent.content
    return doc


async def deploy_flowers(
    client: httpx.AsyncClient, iris_model: LogisticRegression, home: Path
) -> None:
    artifact = home / "models" / "iris.skops"  # skops: loads without trusting code
    artifact.parent.mkdir(parents=True)
    skops.io.dump(iris_model, artifact)
    made = await client.put(
        "/nstarx/v1/deployments/flowers", json={"storage_uri": str(artifact)}, headers=ADMIN
    )
    assert made.status_code == 201, made.text


async def test_key_answers_leave_out_unset_fields_and_say_the_key_once(
    client: httpx.AsyncClient,
) -> None:
    made = await answer(client, "POST", "/keys", KeyCreated, name="app", rate_limit=5)
    assert isinstance(made, dict)
    assert set(made) == {*KEY_FIELDS, "rate_limit", "key"}
    assert (made["state"], made["rate_limit"]) == ("active", 5.0)
    listed = await answer(client, "GET", "/keys", KeyList)
    assert listed == [{k: v for k, v in made.items() if k != "key"}]
    rotated = await answer(client, "POST", f"/keys/{made['id']}/rotate", KeyRotated, grace_s=60)
    assert isinstance(rotated, dict)
    assert rotated["replaces"] == made["prefix"]
    assert rotated["key"] != made["key"]
    old = await answer(client, "DELETE", f"/keys/{made['id']}", KeyRecord)
    assert isinstance(old, dict)
    assert set(old) == {*KEY_FIELDS, "rate_limit", "revoked", "rotated_to"}
    assert (old["state"], old["rotated_to"]) == ("revoked", rotated["id"])


async def test_access_rule_answers_name_only_the_restricted_permissions(
    client: httpx.AsyncClient,
) -> None:
    assert await answer(client, "PUT", "/access/fraud", AccessRule, call=["app"]) == {
        "call": ["app"]
    }
    assert await answer(client, "GET", "/access", AccessRules) == {"fraud": {"call": ["app"]}}
    assert await answer(client, "PUT", "/access/fraud", AccessRule, call=None) == {}
    assert await answer(client, "GET", "/access/fraud", AccessRule) == {}
    assert await answer(client, "GET", "/access", AccessRules) == {}


async def test_audit_answers_are_records_of_every_field(client: httpx.AsyncClient) -> None:
    await client.get("/nstarx/v1/keys", headers=ADMIN)
    rows = await answer(client, "GET", "/audit?action=keys", AuditRows)
    assert isinstance(rows, list)
    assert [(row["action"], row["key"], row["status"]) for row in rows] == [("keys", "admin", 200)]


async def test_metrics_keep_null_percentiles_and_send_samples_only_when_asked(
    client: httpx.AsyncClient,
) -> None:
    idle = await answer(client, "GET", "/deployments/iris/metrics?window_s=60", DeploymentMetrics)
    assert isinstance(idle, dict)
    assert (idle["requests"], idle["p50_ms"], idle["p99_ms"]) == (0, None, None)
    assert "samples" not in idle
    assert idle["resources"]["server"]["pid"] > 0
    predicted = await client.post(
        "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, headers=ADMIN
    )
    assert predicted.status_code == 200, predicted.text
    path = "/deployments/iris/metrics?window_s=60&samples=true"
    busy = await answer(client, "GET", path, DeploymentMetrics)
    assert isinstance(busy, dict)
    assert busy["requests"] == 1
    assert busy["p50_ms"] is not None
    assert busy["samples"]["ok"] == [True]


async def test_variants_name_each_version_and_leave_out_a_shadow_there_is_not(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path
) -> None:
    await deploy_flowers(client, iris_model, nstarx_home)
    doc = await answer(client, "GET", "/deployments/flowers/variants", DeploymentVariants)
    assert isinstance(doc, dict)
    assert set(doc) == {"name", "variants"}
    (only,) = doc["variants"]
    assert (only["variant"], only["percent"], only["requests"]) == ("primary", 100.0, 0)


async def test_a_description_leaves_out_defaults_and_parses_into_a_local_description(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path
) -> None:
    await deploy_flowers(client, iris_model, nstarx_home)
    doc = await answer(client, "GET", "/deployments/flowers", DeploymentView, exclude_defaults=True)
    assert isinstance(doc, dict)
    assert {"name", "revision", "status", "spec", "created", "updated", "sinks"} <= set(doc)
    assert "reason" not in doc
    assert doc["spec"] == {"name": "flowers", "storage_uri": doc["spec"]["storage_uri"]}
    listed = await answer(client, "GET", "/deployments", DeploymentList, exclude_defaults=True)
    assert listed == [doc]
    described = describe_local(DeploymentView.model_validate(doc), None)
    assert (described.status, described.revision, described.target) == ("Ready", 1, "local")
    assert described.spec.storage_uri == doc["spec"]["storage_uri"]


async def test_event_answers_are_the_lines_oldest_first_with_a_note_last(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path
) -> None:
    await deploy_flowers(client, iris_model, nstarx_home)
    noted = await client.post(
        "/nstarx/v1/deployments/flowers/logs", json={"text": "canary held"}, headers=ADMIN
    )
    assert noted.status_code == 204, noted.text
    doc = await answer(client, "GET", "/deployments/flowers/logs", DeploymentLogs)
    assert isinstance(doc, dict)
    assert list(doc) == ["name", "lines"]
    assert doc["name"] == "flowers"
    assert "canary held" in doc["lines"][-1]


async def test_pipeline_answers_carry_the_whole_spec_and_graph_answers_only_what_was_set(
    client: httpx.AsyncClient,
) -> None:
    pipeline = {"nodes": [{"id": "out", "component": "records"}]}
    made = await answer(client, "PUT", "/pipelines/flow", PipelineView, nodes=pipeline["nodes"])
    assert isinstance(made, dict)
    assert list(made) == ["name", "url", "nodes", "models", "created", "spec"]
    assert made["spec"]["nodes"][0]["position"] == {"x": 0.0, "y": 0.0}  # defaults sent
    assert await answer(client, "GET", "/pipelines", PipelineList) == [made]
    graph = {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "iris"}]}}}
    path = "/graphs/chain"
    served = await answer(
        client, "PUT", path, GraphView, exclude_defaults=True, nodes=graph["nodes"]
    )
    assert isinstance(served, dict)
    assert served["spec"] == {"name": "chain", **graph}  # as written: no defaults
    assert served["services"] == ["iris"]
    listed = await answer(client, "GET", "/graphs", GraphList, exclude_defaults=True)
    assert listed == [served]


async def test_job_answers_keep_their_field_order_and_a_null_passthrough(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path
) -> None:
    await deploy_flowers(client, iris_model, nstarx_home)
    rows = nstarx_home / "rows.csv"
    rows.write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n")
    made = await answer(client, "POST", "/jobs", JobView, deployment="flowers", input=str(rows))
    assert isinstance(made, dict)
    assert list(made)[-4:] == ["rows_done", "chunks_total", "chunks_done", "passthrough"]
    assert made["passthrough"] is None
    assert await answer(client, "GET", f"/jobs/{made['id']}", JobView)
    listed = await answer(client, "GET", "/jobs", JobList)
    assert isinstance(listed, list)
    assert [job["id"] for job in listed] == [made["id"]]


async def test_cost_answers_name_each_variant_first_and_the_price_table_in_force(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path
) -> None:
    await deploy_flowers(client, iris_model, nstarx_home)
    predicted = await client.post(
        "/v1/models/flowers:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, headers=ADMIN
    )
    assert predicted.status_code == 200, predicted.text
    live = await answer(client, "GET", "/deployments/flowers/cost?window_s=600", DeploymentCost)
    assert isinstance(live, dict)
    assert list(live) == ["name", "window_s", "covered_s", "prices", "total", "variants", "source"]
    assert live["source"] == "live"
    (only,) = live["variants"]
    assert list(only)[:4] == ["variant", "version", "shadow", "errors"]  # as it always was
    assert (only["variant"], only["requests"]) == ("primary", 1)
    rolled = await answer(client, "GET", "/deployments/flowers/cost?window_s=7200", DeploymentCost)
    assert isinstance(rolled, dict)
    assert (rolled["source"], rolled["variants"]) == ("rollups", [])


async def test_price_answers_are_the_whole_table_before_and_after_a_change(
    client: httpx.AsyncClient, nstarx_home: Path
) -> None:
    before = await answer(client, "GET", "/prices", PriceTable)
    assert isinstance(before, dict)
    assert list(before) == ["cpu_hour", "gb_hour", "gpu_hour", "currency", "source"]
    after = await answer(client, "PUT", "/prices", PriceTable, cpu_hour=1.0)
    assert after == {**before, "cpu_hour": 1.0, "source": "set by the user"}


async def test_history_answers_carry_each_minute_as_the_rollup_store_writes_it(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path
) -> None:
    await deploy_flowers(client, iris_model, nstarx_home)
    path = "/deployments/flowers/history?since_s=3600"
    doc = await answer(client, "GET", path, DeploymentHistory)
    assert doc == {"name": "flowers", "since_s": 3600.0, "bucket_s": 60, "rows": []}
    minute = Rollup("iris", 120, 3, 1, 2.5, None, None, 0.5, 1000, 0.25).to_json()
    row = TrendRow.model_validate(minute)
    assert row.model_dump(mode="json") == minute  # the null drift and percentiles kept
    assert list(row.model_dump()) == list(minute)


FLOWER_FEATURES = [f"feature_{i}" for i in range(4)]
DRIFT_KEYS = ["name", "window_s", "computed_at", "rows", "seen", "status", "score", "drifted",
              "features", "reference", "reference_source", "predictions_reference",
              "not_in_traffic", "histograms"]  # fmt: skip


def assert_whole(doc: object, *keys: str) -> None:
    """The counts `keys` of `doc` are JSON integers, as the server always sent them (`3`, not
    `3.0`: `==` does not tell them apart)."""
    assert isinstance(doc, dict)
    assert [type(doc[key]) for key in keys] == [int] * len(keys), doc


async def predict_flowers(client: httpx.AsyncClient, rows: list[list[float]]) -> None:
    for row in rows:
        sent = await client.post("/v1/models/flowers:predict", json={"instances": [row]},
                                 headers=ADMIN)  # fmt: skip
        assert sent.status_code == 200, sent.text


async def test_drift_answers_keep_their_order_and_say_none_without_a_reference(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path,
    iris_data: tuple[np.ndarray, np.ndarray],
) -> None:  # fmt: skip
    x, _ = iris_data
    await deploy_flowers(client, iris_model, nstarx_home)
    path = "/deployments/flowers/drift/reference"
    none = await answer(client, "GET", path, DriftReferenceView, same_bytes=True)
    assert none == {"source": "none", "rows": 0, "features": [], "predictions": None,
                    "created": None}  # fmt: skip
    columns = {name: x[:, i].tolist() for i, name in enumerate(FLOWER_FEATURES)}
    made = await answer(client, "PUT", path, DriftReferenceView, same_bytes=True, columns=columns)
    assert isinstance(made, dict)
    assert (made["source"], made["rows"], made["predictions"]) == ("data", 150, None)
    assert_whole(made, "rows")
    await predict_flowers(client, x[::5].tolist())
    doc = await answer(client, "GET", "/deployments/flowers/drift?window=15m", DriftView,
                       same_bytes=True)  # fmt: skip
    assert isinstance(doc, dict)
    assert list(doc) == DRIFT_KEYS
    assert (doc["rows"], doc["window_s"], doc["status"]) == (30, 900.0, "ok")
    assert_whole(doc, "rows", "seen")
    assert list(doc["features"][0]) == ["feature", "test", "statistic", "p_value", "score",
                                        "threshold", "drifted", "role"]  # fmt: skip
    assert list(doc["histograms"]["feature_0"]) == ["kind", "edges", "reference", "live"]


def test_a_categorical_histogram_names_its_categories_and_no_edges() -> None:
    raw = histograms(Column.of(["a", "b", "b"], "categorical"), Column.of(["b"], "categorical"))
    parsed = DriftHistogram.model_validate(raw)
    assert list(raw) == ["kind", "categories", "reference", "live"]
    assert orjson.dumps(parsed.model_dump(mode="json")) == orjson.dumps(raw)


async def test_explain_and_importance_answers_are_the_explainers_in_the_servers_order(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path,
    iris_data: tuple[np.ndarray, np.ndarray],
) -> None:  # fmt: skip
    x, _ = iris_data
    await deploy_flowers(client, iris_model, nstarx_home)
    columns = {name: x[:, i].tolist() for i, name in enumerate(FLOWER_FEATURES)}
    made = await client.put(
        "/nstarx/v1/deployments/flowers/drift/reference", json={"columns": columns}, headers=ADMIN
    )  # the linear's background
    assert made.status_code == 200, made.text
    idle = await answer(client, "GET", "/deployments/flowers/importance?window=15m",
                        ImportanceView, same_bytes=True)  # fmt: skip
    assert isinstance(idle, dict)
    assert (idle["status"], idle["explainer"], idle["features"]) == ("no traffic", None, [])
    await predict_flowers(client, x[::10].tolist())
    rows = x[:2].tolist()
    doc = await answer(client, "POST", "/deployments/flowers/explain", ExplainView,
                       same_bytes=True, rows=rows)  # fmt: skip
    assert isinstance(doc, dict)
    assert list(doc) == ["name", "version", "explainer", "space", "features", "outputs", "rows",
                         "seconds"]  # fmt: skip
    assert list(doc["rows"][0]) == ["output", "base", "value", "shap"]
    busy = await answer(client, "GET", "/deployments/flowers/importance?window=15m",
                        ImportanceView, same_bytes=True)  # fmt: skip
    assert isinstance(busy, dict)
    assert busy["status"] == "ok"
    assert [row["rank"] for row in busy["features"]] == [1, 2, 3, 4]
    assert_whole(busy, "rows")
    assert_whole(busy["features"][0], "rank")


async def test_ab_answers_count_whole_requests_and_test_each_variant_against_the_control(
    client: httpx.AsyncClient, iris_model: LogisticRegression, nstarx_home: Path,
    iris_data: tuple[np.ndarray, np.ndarray],
) -> None:  # fmt: skip
    x, _ = iris_data
    await deploy_flowers(client, iris_model, nstarx_home)
    await predict_flowers(client, x[:3].tolist())
    alone = await answer(client, "GET", "/deployments/flowers/ab", AbReport, same_bytes=True)
    assert isinstance(alone, dict)
    assert list(alone) == ["name", "window_s", "control", "alpha", "power", "minimum_effect",
                           "variants", "comparisons", "verdict"]  # fmt: skip
    assert (alone["window_s"], alone["control"], alone["comparisons"]) == (None, "primary", {})
    primary = alone["variants"]["primary"]
    assert list(primary) == ["requests", "errors", "error_rate", "feedback", "outcome_mean",
                             "p50_ms", "p95_ms", "p99_ms"]  # fmt: skip
    assert (primary["requests"], primary["error_rate"], primary["outcome_mean"]) == (3, 0.0, None)
    assert_whole(primary, "requests", "errors", "feedback")
    second = nstarx_home / "models" / "iris-2.skops"
    skops.io.dump(iris_model, second)
    canary = {"storage_uri": str(second), "canary_traffic_percent": 50}
    moved = await client.put("/nstarx/v1/deployments/flowers", json=canary, headers=ADMIN)
    assert moved.status_code == 200, moved.text
    await predict_flowers(client, x[::3].tolist())
    doc = await answer(client, "GET", "/deployments/flowers/ab?window_s=600", AbReport,
                       same_bytes=True)  # fmt: skip
    assert isinstance(doc, dict)
    assert (doc["control"], doc["window_s"]) == ("stable", 600.0)
    tests = doc["comparisons"]["canary"]
    assert [test["metric"] for test in tests] == ["error rate", "latency"]
    assert list(tests[0]) == ["metric", "test", "control", "variant", "difference", "ci_low",
                              "ci_high", "p_value", "n_control", "n_variant", "needed_per_arm",
                              "verdict"]  # fmt: skip
    assert_whole(tests[0], "n_control", "n_variant", "needed_per_arm")


@pytest.mark.parametrize(
    ("model", "doc", "named"),
    [
        (KeyRecord, {"id": "1a2b3c4d", "name": "app"}, "prefix"),
        (KeyRecord, {**WELL_FORMED_KEY, "state": "sleeping"}, "state"),
        (KeyList, {"id": "1a2b3c4d"}, "the answer"),
        (AccessRule, {"call": "app"}, "call"),
        (DeploymentVariants, {"name": "iris", "variants": [{"variant": "primary"}]}, "variants.0"),
        (DeploymentView, {**WELL_FORMED_DEPLOYMENT, "status": "Sleeping"}, "status"),
        (DeploymentHistory, {"name": "x", "since_s": 60, "bucket_s": 60, "rows": [{}]}, "rows.0"),
        (PriceTable, {"cpu_hour": "cheap"}, "cpu_hour"),
        (JobView, {"id": "1", "state": "asleep"}, "deployment"),
        (
            DeploymentView,
            {
                **WELL_FORMED_DEPLOYMENT,
                "traffic": {"rules": [{"header": "x-tier", "variant": "b"}]},
            },
            "traffic.rules.0.values",
        ),
        (DriftView, {"name": "x", "status": "drifting"}, "window_s"),
        (
            AbReport,
            {
                "name": "x",
                "window_s": None,
                "control": "primary",
                "alpha": 0.05,
                "power": 0.8,
                "minimum_effect": 0.05,
                "variants": {"primary": {}},
                "comparisons": {},
                "verdict": "",
            },
            "variants.primary.requests",
        ),
        (
            DeploymentView,
            {**WELL_FORMED_DEPLOYMENT, "spec": {**SPEC, "min_replicas": -1}},
            "spec.min_replicas",
        ),
    ],
)
def test_a_malformed_answer_is_refused_where_it_enters_naming_the_field(
    model: type[BaseModel], doc: object, named: str
) -> None:
    with pytest.raises(NstarxError, match=rf"GET /x with a malformed {model.__name__} .*{named}"):
        parse_answer(model, doc, "GET /x")


async def test_the_openapi_document_shows_the_answers_closed_values(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert schemas["KeyRecord"]["properties"]["state"]["enum"] == ["active", "expired", "revoked"]
    metrics = schemas["DeploymentMetrics"]
    assert {"p50_ms", "resources", "samples"} <= set(metrics["properties"])
    assert "samples" not in metrics["required"]
    assert {"variants", "comparisons", "verdict"} <= set(schemas["AbReport"]["properties"])
    assert schemas["DriftHistogram"]["properties"]["kind"]["enum"] == ["numeric", "categorical"]
