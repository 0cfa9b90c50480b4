"""The OpenAPI 3.1 document of every REST route, served at `GET /openapi.json`.

The paths and methods come from the app's route table (`route_table`); what each operation takes
and answers comes from `OPERATIONS`, whose bodies are the pydantic models of `bodies` (and
`DeploymentSpec`, `PipelineSpec`). A route without an entry still appears, marked undocumented,
and tests/unit/test_openapi.py fails until it has one. The document names no model or key: it is
the same for every server, so it is served without a key (as KServe serves its docs).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel as PydanticModel
from pydantic.json_schema import models_json_schema

from nstarx_jupyter import __version__
from nstarx_jupyter.deployment.backend import DeploymentList, DeploymentView
from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.pipelines import PipelineSpec
from nstarx_jupyter.pipelines import served as s
from nstarx_jupyter.pipelines.inference_graph import GraphSpec
from nstarx_jupyter.protocol import control as p
from nstarx_jupyter.serving import bodies as b
from nstarx_jupyter.serving import control_bodies as c
from nstarx_jupyter.serving.control_http import PREFIX
from nstarx_jupyter.serving.jobs import JobRequest
from nstarx_jupyter.serving.stream import STREAM_PATH

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pydantic import BaseModel
    from pydantic.json_schema import JsonSchemaMode

__all__ = ["OPERATIONS", "WEBSOCKETS", "Operation", "Query", "openapi_document"]

_JSON = "application/json"
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter."""

    name: str
    kind: str = "number"
    """Its JSON Schema type: number, integer or string."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Operation:
    """What one (method, path) takes and answers."""

    summary: str
    tag: str
    answer: type[BaseModel] | None
    """The success body (None: no body, or `media` text)."""
    status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: tuple[Query, ...] = ()
    open: bool = False
    """No key needed."""
    media: str = _JSON
    also: tuple[int, ...] = ()
    """Other success statuses with the same body (201 for a creation)."""
    not_ready: bool = False
    """503 answers with the `answer` body (readiness)."""


_WINDOW = Query("window_s", description="seconds of recent requests, in (0, 300] (60)")
_AUDIT_QUERY = (
    Query("since", description="epoch seconds"),
    Query("until", description="epoch seconds"),
    Query("key", "string", "a key id, `admin` or `-`"),
    Query("action", "string"),
    Query("model", "string"),
    Query("status", "string", "a status (404) or a class (4xx)"),
    Query("limit", "integer", "the newest N records (1000)"),
)
_AB_QUERY = (
    Query("window_s", description="seconds of the request log (all of it)"),
    Query("control", "string", "the variant the others are compared with"),
    Query("alpha"),
    Query("power"),
    Query("minimum_effect"),
)
_V2 = "/v2/models/{name}"
_DEPLOYMENT = f"{PREFIX}/deployments/{{name}}"

OPERATIONS: dict[tuple[str, str], Operation] = {
    # Inference (the bare-ASGI hot path)
    ("POST", f"{_V2}/infer"): Operation("V2 inference", "inference", b.V2InferResponse,
                                        body=b.V2InferRequest),
    ("POST", f"{_V2}/versions/{{version}}/infer"): Operation(
        "V2 inference on one version", "inference", b.V2InferResponse, body=b.V2InferRequest),
    ("POST", "/v1/models/{name}:predict"): Operation("KServe V1 prediction", "inference",
                                                     b.V1Predictions, body=b.V1PredictRequest),
    ("POST", "/v1/models/{name}/predict"): Operation("Records in, every output per record out",
                                                     "inference", b.RecordsReply,
                                                     body=b.RecordsRequest),
    ("POST", "/v1/models/{name}/versions/{version}/predict"): Operation(
        "Records on one version", "inference", b.RecordsReply, body=b.RecordsRequest),
    # Health, metadata, repository
    ("GET", "/v2/health/live"): Operation("Liveness", "health", b.Live, open=True),
    ("GET", "/v2/health/ready"): Operation("Readiness of every model", "health", b.Ready,
                                           not_ready=True),
    ("GET", "/v2"): Operation("Server metadata", "metadata", b.ServerMetadata),
    ("GET", _V2): Operation("Model metadata", "metadata", b.ModelMetadata),
    ("GET", f"{_V2}/versions/{{version}}"): Operation("Model version metadata", "metadata",
                                                      b.ModelMetadata),
    ("GET", f"{_V2}/ready"): Operation("Model readiness", "health", b.ModelReady, not_ready=True),
    ("GET", f"{_V2}/versions/{{version}}/ready"): Operation(
        "Model version readiness", "health", b.ModelReady, not_ready=True),
    ("POST", "/v2/repository/index"): Operation("Repository index", "repository",
                                                b.RepositoryIndex, body=b.RepositoryIndexRequest,
                                                body_required=False),
    ("POST", "/v2/repository/models/{name}/load"): Operation("Load a model", "repository",
                                                             b.RepositoryLoaded),
    ("POST", "/v2/repository/models/{name}/unload"): Operation("Unload a model", "repository",
                                                               b.RepositoryUnloaded),
    ("GET", "/v1/models"): Operation("V1 model list", "metadata", b.ModelList),
    ("GET", "/v1/models/{name}"): Operation("V1 model status", "metadata", b.ModelStatus),
    ("POST", "/v1/models/{name}/feedback"): Operation("Feedback on a past prediction",
                                                      "inference", b.FeedbackResult,
                                                      body=b.FeedbackRequest),
    ("GET", "/metrics"): Operation("Prometheus metrics", "metrics", None, media="text/plain"),
    ("GET", "/openapi.json"): Operation("This document", "metadata", None, open=True),
    # The control API: deployments
    ("GET", f"{PREFIX}/deployments"): Operation("The deployments the caller manages",
                                                "deployments", DeploymentList),
    ("GET", _DEPLOYMENT): Operation("A deployment", "deployments", DeploymentView),
    ("PUT", _DEPLOYMENT): Operation(
        "Create or replace a deployment (a new revision)", "deployments", DeploymentView,
        body=DeploymentSpec, also=(201,),
        query=(Query("if_revision", "integer", "apply only while this revision is current"),)),
    ("DELETE", _DEPLOYMENT): Operation("Delete a deployment", "deployments", None, status=204),
    ("GET", f"{_DEPLOYMENT}/metrics"): Operation(
        "Recent requests and latency", "deployments", p.DeploymentMetrics,
        query=(_WINDOW, Query("samples", "string", "'true': each request's latency and outcome "
                              "too (to merge several servers' figures)"))),
    ("GET", f"{_DEPLOYMENT}/logs"): Operation("A deployment's events", "deployments",
                                              p.DeploymentLogs),
    ("POST", f"{_DEPLOYMENT}/logs"): Operation("Add a note to a deployment's events",
                                               "deployments", None, status=204, body=c.LogNote),
    ("GET", f"{_DEPLOYMENT}/variants"): Operation("Per variant: share and recent requests",
                                                  "deployments", p.DeploymentVariants,
                                                  query=(_WINDOW,)),
    ("GET", f"{_DEPLOYMENT}/ab"): Operation("A/B test of the variants", "deployments",
                                            p.AbReport, query=_AB_QUERY),
    # Resource use, cost, trends
    ("GET", f"{_DEPLOYMENT}/cost"): Operation(
        "Cost over a window, per 1,000 predictions and per day, per variant", "usage",
        p.DeploymentCost,
        query=(Query("window_s", description="seconds, in (0, 2592000] (3600); past "
                     "3600 from the per-minute rollups, without variants"),)),
    ("GET", f"{_DEPLOYMENT}/history"): Operation(
        "Per-minute rollups (requests, errors, latency, resources, cost), 30 days kept",
        "usage", p.DeploymentHistory,
        query=(Query("since_s", description="seconds back, in (0, 2592000] (86400)"),)),
    # Drift
    ("GET", f"{_DEPLOYMENT}/drift"): Operation(
        "Drift of live traffic from the reference, per feature and test", "drift", p.DriftView,
        query=(Query("window", "string", "a duration (1h, 15m, or seconds) up to 6h (1h)"),)),
    ("GET", f"{_DEPLOYMENT}/drift/reference"): Operation(
        "What drift is measured against", "drift", p.DriftReferenceView),
    ("PUT", f"{_DEPLOYMENT}/drift/reference"): Operation(
        "Set the drift reference: a sample of the data, or a window of past traffic", "drift",
        p.DriftReferenceView, body=c.DriftReferenceBody),
    ("DELETE", f"{_DEPLOYMENT}/drift/reference"): Operation(
        "Remove the drift reference", "drift", None, status=204),
    # Explanations
    ("POST", f"{_DEPLOYMENT}/explain"): Operation(
        "SHAP values of up to 100 rows (tree, linear or kernel explainer, as fits the model)",
        "explain", p.ExplainView, body=c.ExplainBody),
    ("GET", f"{_DEPLOYMENT}/importance"): Operation(
        "Mean |SHAP value| per feature over a window's sampled live rows", "explain",
        p.ImportanceView,
        query=(Query("window", "string", "a duration (1h, 15m, or seconds) up to 6h (1h)"),)),
    ("GET", f"{PREFIX}/prices"): Operation("The price table", "usage", p.PriceTable),
    ("PUT", f"{PREFIX}/prices"): Operation("Set the price table", "usage", p.PriceTable,
                                           body=c.PricesBody),
    # Batch jobs
    ("GET", f"{PREFIX}/jobs"): Operation("The batch jobs of the deployments the caller manages",
                                         "jobs", p.JobList),
    ("POST", f"{PREFIX}/jobs"): Operation("Start a batch job over a file (CSV, Parquet, JSONL)",
                                          "jobs", p.JobView, status=201, body=JobRequest),
    ("GET", f"{PREFIX}/jobs/{{id}}"): Operation("A batch job: state, rows done, errors, output",
                                                "jobs", p.JobView),
    ("DELETE", f"{PREFIX}/jobs/{{id}}"): Operation("Cancel a batch job and forget it", "jobs",
                                                   None, status=204),
    ("POST", f"{PREFIX}/jobs/{{id}}/cancel"): Operation("Cancel a batch job", "jobs", p.JobView),
    # Pipelines
    ("GET", f"{PREFIX}/pipelines"): Operation("The pipelines the caller manages", "pipelines",
                                              s.PipelineList),
    ("GET", f"{PREFIX}/pipelines/{{name}}"): Operation("A pipeline", "pipelines", s.PipelineView),
    ("PUT", f"{PREFIX}/pipelines/{{name}}"): Operation("Serve a pipeline", "pipelines",
                                                       s.PipelineView, body=PipelineSpec,
                                                       also=(201,)),
    ("DELETE", f"{PREFIX}/pipelines/{{name}}"): Operation("Stop a pipeline", "pipelines", None,
                                                          status=204),
    # KServe InferenceGraphs (`nstarx apply -f`)
    ("GET", f"{PREFIX}/graphs"): Operation("The inference graphs the caller manages", "graphs",
                                           s.GraphList),
    ("GET", f"{PREFIX}/graphs/{{name}}"): Operation("An inference graph", "graphs", s.GraphView),
    ("PUT", f"{PREFIX}/graphs/{{name}}"): Operation("Serve an inference graph", "graphs",
                                                    s.GraphView, body=GraphSpec, also=(201,)),
    ("DELETE", f"{PREFIX}/graphs/{{name}}"): Operation("Stop an inference graph", "graphs", None,
                                                       status=204),
    # Keys, access rules, audit (admin)
    ("GET", f"{PREFIX}/keys"): Operation("Every API key's record", "security", p.KeyList),
    ("POST", f"{PREFIX}/keys"): Operation("Mint an API key", "security", p.KeyCreated,
                                          status=201, body=c.KeyCreateRequest),
    ("DELETE", f"{PREFIX}/keys/{{key}}"): Operation("Revoke a key", "security", p.KeyRecord),
    ("POST", f"{PREFIX}/keys/{{key}}/rotate"): Operation("Rotate a key", "security",
                                                         p.KeyRotated, status=201,
                                                         body=c.KeyRotateRequest,
                                                         body_required=False),
    ("GET", f"{PREFIX}/access"): Operation("Every registry model's access rule", "security",
                                           p.AccessRules),
    ("GET", f"{PREFIX}/access/{{model}}"): Operation("A registry model's access rule",
                                                     "security", p.AccessRule),
    ("PUT", f"{PREFIX}/access/{{model}}"): Operation("Set a registry model's access rule",
                                                     "security", p.AccessRule, body=p.AccessRule),
    ("GET", f"{PREFIX}/audit"): Operation("The audit log", "security", p.AuditRows,
                                          query=_AUDIT_QUERY),
}  # fmt: skip
"""Every REST operation the server answers, by (method, path template)."""

_UNDOCUMENTED = Operation("Undocumented (add it to serving/openapi.py)", "undocumented", None)

WEBSOCKETS: dict[str, str] = {
    STREAM_PATH: "A WebSocket stream to a model, pipeline or graph: send records, "
    '`{"id": ID, "records": ...}` or V2 inference requests, one per text message; each is '
    "answered by one message, in the order sent, as `/predict` (records) or `/infer` (V2) "
    'answer them; a message the server cannot answer gets `{"error": ..., "status": ...}` and '
    "the stream goes on. The key is checked on the upgrade (401, 403, 404 refuse it) and for "
    "each message. Closes: 1009 for a message over the body limit, 1001 after the idle limit, "
    "1013 when the client leaves its answers unread. A plain HTTP request gets 426.",
}
"""WebSocket routes, by path. OpenAPI has no WebSocket operation; as FastAPI and AsyncAPI's
bridges do, each is a GET whose 101 answer is the upgrade (`x-websocket: true` marks it)."""


def openapi_document(table: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes in `table` ((method, path template) pairs)."""
    refs, schemas = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for method, path in table:
        operation = OPERATIONS.get((method, path), _UNDOCUMENTED)
        paths.setdefault(path, {})[method.lower()] = _operation(operation, method, path, refs)
    for path, description in WEBSOCKETS.items():
        paths.setdefault(path, {})["get"] = _websocket(path, description, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nstarx serve",
            "version": __version__,
            "description": "KServe's V1 and V2 REST protocols, the records API and the control "
            "API (`/nstarx/v1`) of a local nstarx server.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the admin token ($NSTARX_HOME/security/admin-token) "
                    "or an API key (nsx_...)",
                },
            },
        },
        "security": [{"bearer": []}],
    }


def _schemas() -> tuple[dict[tuple[type[BaseModel], str], str], dict[str, Any]]:
    """Every model's schema under components (requests: validation mode; answers: serialization)."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    wanted[(b.ErrorBody, "serialization")] = None
    for operation in OPERATIONS.values():
        if operation.body is not None:
            wanted[(operation.body, "validation")] = None
        if operation.answer is not None:
            wanted[(operation.answer, "serialization")] = None
    mapping, definitions = models_json_schema(list(wanted), ref_template=_REF)
    schemas: dict[str, Any] = definitions.get("$defs", {})
    refs: dict[tuple[type[BaseModel], str], str] = {
        (model, mode): schema["$ref"]
        for (model, mode), schema in mapping.items()
        if isinstance(model, type) and issubclass(model, PydanticModel)
    }
    for spec in (DeploymentSpec, PipelineSpec):  # the name comes from the URL: optional here
        name = refs[(spec, "validation")].rsplit("/", 1)[-1]
        schema = schemas[name] = copy.deepcopy(schemas[name])
        schema["required"] = [field for field in schema.get("required", []) if field != "name"]
        if not schema["required"]:
            del schema["required"]
    return refs, schemas


def _operation(
    operation: Operation, method: str, path: str, refs: dict[tuple[type[BaseModel], str], str]
) -> dict[str, Any]:
    """One operation object."""
    error = {"description": "an error", "content": {_JSON: {"schema": {"$ref": refs[
        (b.ErrorBody, "serialization")]}}}}  # fmt: skip
    doc: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": _operation_id(method, path),
        "tags": [operation.tag],
        "responses": {"default": error},
    }
    if operation.open:
        doc["security"] = []
    parameters = [{"name": part[1:-1], "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1}}
                  for part in _parts(path) if part.startswith("{")]  # fmt: skip
    parameters += [{"name": q.name, "in": "query", "required": False,
                    "schema": {"type": q.kind}, "description": q.description}
                   for q in operation.query]  # fmt: skip
    if parameters:
        doc["parameters"] = parameters
    if operation.body is not None:
        doc["requestBody"] = {
            "required": operation.body_required,
            "content": {_JSON: {"schema": {"$ref": refs[(operation.body, "validation")]}}},
        }
    success: dict[str, Any] = {"description": operation.summary}
    if operation.answer is not None:
        ref = refs[(operation.answer, "serialization")]
        success["content"] = {operation.media: {"schema": {"$ref": ref}}}
    elif operation.media != _JSON:
        success["content"] = {operation.media: {"schema": {"type": "string"}}}
    elif operation is not _UNDOCUMENTED and operation.status != 204:
        success["content"] = {_JSON: {"schema": {"type": "object"}}}
    for status in (operation.status, *operation.also):
        doc["responses"][str(status)] = success
    if operation.not_ready:
        doc["responses"]["503"] = {**success, "description": "not ready"}
    return doc


def _websocket(
    path: str, description: str, refs: dict[tuple[type[BaseModel], str], str]
) -> dict[str, Any]:
    """A WebSocket route as a GET that upgrades (101), and 426 for a request that does not."""
    doc = _operation(Operation("WebSocket stream (upgrade)", "inference", None, status=101),
                     "GET", path, refs)  # fmt: skip
    doc["description"] = description
    doc["x-websocket"] = True
    doc["parameters"].append({"name": "Upgrade", "in": "header", "required": True,
                              "schema": {"type": "string", "enum": ["websocket"]}})  # fmt: skip
    doc["responses"]["101"] = {"description": "Switching Protocols: the stream is open"}
    refused = "Upgrade Required: not a WebSocket handshake"
    doc["responses"]["426"] = {**doc["responses"]["default"], "description": refused}
    return doc


def _parts(path: str) -> list[str]:
    """The path's segments, with `{name}:predict` split at the colon."""
    return [piece for part in path.split("/") for piece in part.replace("}:", "} :").split(" ")]


def _operation_id(method: str, path: str) -> str:
    """`get_v2_models_name_ready` for `GET /v2/models/{name}/ready`."""
    words = "".join(c if c.isalnum() else " " for c in path).split()
    return "_".join([method.lower(), *words])
