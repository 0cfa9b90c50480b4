"""REST routes other than inference: health, metadata, repository extension, V1 list, metrics."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nstarx_jupyter.errors import InvalidInputError, NstarxError
from nstarx_jupyter.protocol import v2
from nstarx_jupyter.security import ANONYMOUS, RefusedCaller
from nstarx_jupyter.serving.http_errors import nstarx_error_response, unexpected_error_response
from nstarx_jupyter.serving.inference_http import route_table
from nstarx_jupyter.serving.request_body import read_request_body

if TYPE_CHECKING:
    from nstarx_jupyter.serving.dataplane import DataPlane

__all__ = ["PRINCIPAL", "RestHandlers"]

Endpoint = Callable[[Request], Awaitable[Response]]
PRINCIPAL = "nstarx.principal"
"""Where a route's checked caller is kept in the ASGI scope."""


def _json(doc: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json"
    )


class RestHandlers:
    """The REST endpoints over one `DataPlane`."""

    def __init__(self, dataplane: DataPlane, max_body_bytes: int) -> None:
        self.dataplane = dataplane
        self.max_body_bytes = max_body_bytes
        self._openapi: bytes | None = None

    def routes(self) -> list[Route]:
        """Return every route; the inference routes are served by `InferenceApp` in front.

        Each names what the caller must be allowed (see `Guard.require`); only live health (a
        liveness probe carries no key) and the OpenAPI document (the same for every server,
        naming no model) are open.
        """
        table: list[tuple[str, Endpoint, str, str | None]] = [
            ("/v2/health/live", self.live, "GET", None),
            ("/v2/health/ready", self.ready, "GET", "any"),
            ("/v2", self.server_metadata, "GET", "any"),
            ("/v2/models/{name}", self.model_metadata, "GET", "read"),
            ("/v2/models/{name}/versions/{version}", self.model_metadata, "GET", "read"),
            ("/v2/models/{name}/ready", self.model_ready, "GET", "read"),
            ("/v2/models/{name}/versions/{version}/ready", self.model_ready, "GET", "read"),
            ("/v2/repository/index", self.repository_index, "POST", "any"),
            ("/v2/repository/models/{name}/load", self.repository_load, "POST", "manage"),
            ("/v2/repository/models/{name}/unload", self.repository_unload, "POST", "manage"),
            ("/v1/models", self.v1_models, "GET", "any"),
            ("/v1/models/{name}", self.v1_model, "GET", "read"),
            ("/v1/models/{name}/feedback", self.feedback, "POST", "predict"),
            ("/metrics", self.metrics, "GET", "metrics"),
            ("/openapi.json", self.openapi, "GET", None),
        ]
        return [Route(path, self._guarded(fn, action), methods=[method])
                for path, fn, method, action in table]  # fmt: skip

    def _guarded(self, handler: Endpoint, action: str | None) -> Endpoint:
        """Check the caller for `action`, answer domain errors with their status, audit."""
        dataplane = self.dataplane
        name = handler.__name__

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            principal = ANONYMOUS
            params = request.path_params
            try:
                if action is not None:
                    principal = dataplane.guard.require(
                        request.headers.get("authorization"), action, params.get("name")
                    )
                    request.scope[PRINCIPAL] = principal
                response = await handler(request)
            except NstarxError as exc:
                if isinstance(exc, RefusedCaller):  # a known key refused: the record names it
                    principal = exc.principal
                response = nstarx_error_response(request, exc)
            except Exception as exc:  # noqa: BLE001 - request boundary: log it, answer 500
                response = unexpected_error_response(request, exc)
            record = principal.record
            if record is not None and record.rate_limit is not None:
                response.headers.update(dict(dataplane.guard.rate_limit_headers(principal)))
            if action is not None:
                client = request.client
                dataplane.audit.call(principal, name, "rest", params.get("name", ""),
                                     params.get("version", ""), response.status_code, started,
                                     client=client.host if client else "")  # fmt: skip
            return response

        return endpoint

    def _visible(self, request: Request, names: list[str]) -> list[str]:
        """The models of `names` the caller may read (listings show no more than that)."""
        guard = self.dataplane.guard
        principal = request.scope.get(PRINCIPAL, ANONYMOUS)
        return [name for name in names if guard.may(principal, "read", name)]

    async def _body(self, request: Request) -> bytes:
        return await read_request_body(request)

    async def live(self, request: Request) -> Response:
        """`GET /v2/health/live`."""
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        """`GET /v2/health/ready`: 200 when every model can serve, 503 otherwise."""
        ready = self.dataplane.ready()
        return _json({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        """`GET /v2`."""
        return _json(self.dataplane.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        """`GET /v2/models/{name}[/versions/{version}]`."""
        params = request.path_params
        return _json(await self.dataplane.model_metadata(params["name"], params.get("version")))

    async def model_ready(self, request: Request) -> Response:
        """`GET /v2/models/{name}[/versions/{version}]/ready`: 200 when ready, 503 when not.

        A model that is not ready says its state (and a `FAILED` one its reason).
        """
        name, version = request.path_params["name"], request.path_params.get("version")
        ready = self.dataplane.model_ready(name, version)
        doc: dict[str, Any] = {"name": name, "ready": ready}
        if not ready and self.dataplane.pipelines.get(name) is None:
            entry = self.dataplane.repository.entry(name, version)
            doc["state"] = entry.state.value  # FAILED, with its reason, says why
            if entry.reason:
                doc["reason"] = entry.reason
        return _json(doc, 200 if ready else 503)

    async def repository_index(self, request: Request) -> Response:
        """`POST /v2/repository/index`, optionally `{"ready": true}` to list ready models only."""
        body = await self._body(request)
        doc = v2.loads(body) if body.strip() else {}
        if not isinstance(doc, dict):
            raise InvalidInputError("the index request is a JSON object")
        index = self.dataplane.repository_index(ready_only=bool(doc.get("ready")))
        allowed = set(self._visible(request, [model["name"] for model in index]))
        return _json([model for model in index if model["name"] in allowed])

    async def repository_load(self, request: Request) -> Response:
        """`POST /v2/repository/models/{name}/load`."""
        name = request.path_params["name"]
        await self.dataplane.repository.load(name)
        return _json({"name": name, "load": True})

    async def repository_unload(self, request: Request) -> Response:
        """`POST /v2/repository/models/{name}/unload`."""
        name = request.path_params["name"]
        await self.dataplane.repository.unload(name)
        return _json({"name": name, "unload": True})

    async def v1_models(self, request: Request) -> Response:
        """`GET /v1/models`."""
        return _json({"models": self._visible(request, self.dataplane.repository.names())})

    async def v1_model(self, request: Request) -> Response:
        """`GET /v1/models/{name}`."""
        name = request.path_params["name"]
        return _json({"name": name, "ready": self.dataplane.model_ready(name)})

    async def feedback(self, request: Request) -> Response:
        """`POST /v1/models/{name}/feedback`: the outcome of a past prediction, by request id.

        Body: `{"request_id": "...", "value": 1.0}` (a reward, or true/false for a conversion)
        or `{"request_id": "...", "label": "setosa"}` (the ground truth).
        """
        name = request.path_params["name"]
        doc = v2.loads(await self._body(request))
        if not isinstance(doc, dict) or not isinstance(doc.get("request_id"), str):
            raise InvalidInputError("feedback: a JSON object with a 'request_id' string")
        unknown = set(doc) - {"request_id", "value", "label"}
        if unknown:
            raise InvalidInputError(f"feedback: unknown field '{sorted(unknown)[0]}'")
        entry = self.dataplane.feedback(name, doc["request_id"], value=doc.get("value"),
                                        label=doc.get("label"))  # fmt: skip
        return _json({"request_id": doc["request_id"], "model_version": entry.version,
                      "outcome": entry.outcome})  # fmt: skip

    async def metrics(self, request: Request) -> Response:
        """`GET /metrics` in the Prometheus text format."""
        registry = self.dataplane.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        """`GET /openapi.json`: the OpenAPI document of every route this app answers."""
        if self._openapi is None:  # built on first use: the routes are fixed by then
            from nstarx_jupyter.serving.openapi import openapi_document

            document = openapi_document(route_table(request.app.routes))
            self._openapi = orjson.dumps(document)
        return Response(self._openapi, media_type="application/json")
