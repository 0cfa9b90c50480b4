"""`/openapi.json` covers every route, and schemathesis over every operation finds no 5xx.

The fuzz run is in process (schemathesis' ASGI transport) with the admin token, positive cases
for every operation and negative ones for those that take a query or a body: at least 100 per
operation that takes any input, 4,000 in all, derandomized so CI runs the same cases every time.
"""

from __future__ import annotations

import collections
import time
import typing
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
import skops.io
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from nstarx_jupyter.protocol.control import AuditRow
from nstarx_jupyter.protocol.datatypes import DATATYPES
from nstarx_jupyter.security.audit_log import AuditRecord
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.bodies import Datatype
from nstarx_jupyter.serving.openapi import OPERATIONS, WEBSOCKETS
from nstarx_jupyter.serving.settings import ModelSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from schemathesis.schemas import APIOperation
    from sklearn.linear_model import LogisticRegression

    Op = APIOperation[Any, Any, Any, Any]

    from nstarx_jupyter.serving.inference_http import InferenceApp

ADMIN_TOKEN = "fuzz-admin-token"  # noqa: S105 - a test credential
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXAMPLES_PER_OPERATION = 100
"""Cases per operation and generation mode (an operation without input has one case)."""
MIN_CASES = 4000
SERVED = ("iris", "fraud")
"""A model of the server's and a deployment of its control API (made before the fuzz run)."""


def make_app(iris_path: Path, state: Path) -> InferenceApp:
    config = ServingConfig(
        state_dir=state / "state",
        security_dir=state / "security",
        audit_dir=state / "audit",
        admin_token=ADMIN_TOKEN,
        allow_hosts=("testserver",),  # the Host schemathesis' ASGI client sends
    )
    return create_app([ModelSettings(name="iris", path=iris_path)], config)


@pytest.fixture
async def client(iris_path: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(iris_path, tmp_path)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def test_the_openapi_document_covers_every_route_the_app_answers(
    iris_path: Path, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    table = set(make_app(iris_path, tmp_path).route_table())
    assert table == set(OPERATIONS)  # a route without an entry in OPERATIONS fails here
    doc = (await client.get("/openapi.json")).json()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == table | {("GET", path) for path in WEBSOCKETS}
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    assert not [op for ops in doc["paths"].values() for op in ops.values()
                if op["tags"] == ["undocumented"]]  # fmt: skip


async def test_the_stream_route_is_documented_as_a_websocket_upgrade(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert set(WEBSOCKETS) == {"/v2/models/{name}/stream"}
    stream = doc["paths"]["/v2/models/{name}/stream"]
    assert list(stream) == ["get"]  # OpenAPI has no WebSocket operation: a GET that upgrades
    operation = stream["get"]
    assert operation["x-websocket"] is True
    assert {"101", "426", "default"} <= set(operation["responses"])
    assert "content" not in operation["responses"]["101"]
    assert "1009" in operation["description"]
    upgrade = [p for p in operation["parameters"] if p["in"] == "header"]
    assert upgrade == [{"name": "Upgrade", "in": "header", "required": True,
                        "schema": {"type": "string", "enum": ["websocket"]}}]  # fmt: skip
    plain = await client.get("/v2/models/iris/stream", headers=ADMIN)  # no WebSocket handshake
    assert plain.status_code == 426
    assert plain.headers["upgrade"] == "websocket"
    assert "WebSocket" in plain.json()["error"]
    assert (await client.get("/v2/models/iris/streams", headers=ADMIN)).status_code == 404


async def test_the_openapi_document_is_open_and_the_routes_it_describes_are_not(
    client: httpx.AsyncClient,
) -> None:
    doc = await client.get("/openapi.json")
    assert doc.status_code == 200
    assert doc.headers["content-type"] == "application/json"
    open_ops = {(method.upper(), path) for path, ops in doc.json()["paths"].items()
                for method, op in ops.items() if op.get("security") == []}  # fmt: skip
    assert open_ops == {("GET", "/openapi.json"), ("GET", "/v2/health/live")}
    assert (await client.get("/v2/models/iris")).status_code == 401
    assert (await client.get("/nstarx/v1/keys")).status_code == 401


def test_the_documented_datatypes_are_the_ones_the_codec_decodes() -> None:
    assert set(typing.get_args(Datatype)) == DATATYPES


@pytest.fixture
def schema(
    iris_path: Path, iris_model: LogisticRegression, tmp_path: Path, nstarx_home: Path
) -> Iterator[schemathesis.schemas.BaseSchema]:
    """The app's schema, the app serving `iris` (a model) and `fraud` (a deployment)."""
    app = make_app(iris_path, tmp_path)
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        artifact = nstarx_home / "models" / "fraud.skops"  # skops: loads without trusting code
        artifact.parent.mkdir(parents=True)
        skops.io.dump(iris_model, artifact)
        with asgi.get_client(loaded.app) as session:
            spec = {"storage_uri": str(artifact)}
            made = session.put("/nstarx/v1/deployments/fraud", json=spec,
                               headers=ADMIN)  # fmt: skip
            assert made.status_code == 201, made.text
        yield loaded
    finally:
        asgi.shutdown_lifespans()  # the app's shut-down: models, executor, audit log


def has_input(operation: Op) -> bool:
    return bool(operation.path_parameters or operation.query or operation.body)


def strategy(operation: Op, mode: GenerationMode) -> st.SearchStrategy[Any]:
    """Cases of `operation`; of those naming a model, two in three name one the server has."""
    cases = operation.as_strategy(generation_mode=mode, headers=ADMIN)
    names = {param.name for param in operation.path_parameters}
    if mode is GenerationMode.POSITIVE and "name" in names:
        version = {"version": "1"} if "version" in names else {}
        served = [operation.as_strategy(generation_mode=mode, headers=ADMIN,
                                        path_parameters={"name": name, **version})
                  for name in SERVED]  # fmt: skip
        return st.one_of(cases, *served)
    return cases


def destructive(operation: Op) -> bool:
    """Whether the operation removes what the others should find (they run first)."""
    return operation.method.upper() == "DELETE" or operation.path.endswith("/unload")


class Tally:
    """What the fuzz run saw: cases per operation, statuses, check failures."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.failures: list[str] = []


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def fuzz(
    operation: Op,
    mode: GenerationMode,
    tally: Tally,
    session: asgi.ASGIClient,
) -> None:
    """Run the cases of one operation in one generation mode, every answer checked."""

    @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None,
              deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy(operation, mode))
    def run(case: Any) -> None:
        tally.counts[operation.label] += 1
        response = case.call(session=session)
        tally.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=ADMIN)
        except (AssertionError, FailureGroup) as exc:  # every failure is reported, not the first
            tally.failures.append(f"{operation.label} {response.status_code}: {exc}"[:2000])

    run()


# About 60 s of CPU (4,800 cases); the wall time grows with the machine's load.
@pytest.mark.timeout(900)
def test_schemathesis_finds_no_server_error_in_any_operation(
    schema: schemathesis.schemas.BaseSchema,
) -> None:
    tally = Tally()
    started, cpu_started = time.perf_counter(), time.process_time()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    operations.sort(key=destructive)
    with asgi.get_client(schema.app) as session:  # one session: a fresh one per call costs more
        for operation in operations:
            fuzz(operation, GenerationMode.POSITIVE, tally, session)
            if operation.query or operation.body:
                fuzz(operation, GenerationMode.NEGATIVE, tally, session)
    elapsed_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    counts = tally.counts
    statuses = dict(sorted(tally.statuses.items()))
    print(f"schemathesis: {sum(counts.values())} cases over {len(operations)} operations in "
          f"{elapsed_s:.1f} s ({cpu_s:.1f} s of CPU); statuses {statuses}")  # fmt: skip
    assert not tally.failures, "\n\n".join(tally.failures[:20])
    assert not [status for status in tally.statuses if status >= 500]
    assert len(operations) == len(OPERATIONS) + len(WEBSOCKETS) - 1  # all but the document
    with_input = [op.label for op in operations if has_input(op)]
    assert {label: counts[label] for label in with_input if counts[label] < 100} == {}
    assert sum(counts.values()) >= MIN_CASES


def test_the_audit_schema_names_every_field_of_an_audit_record_with_its_type() -> None:
    """The OpenAPI model of an audit row and the record the server writes cannot drift apart."""
    described = {name: field.annotation for name, field in AuditRow.model_fields.items()}
    assert described == typing.get_type_hints(AuditRecord)
