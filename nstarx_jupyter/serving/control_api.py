"""The control API's deployment routes (`/nstarx/v1/deployments`) over `ControlPlane`.

`ControlPlane` (`serving/control.py`) is the transport-free service: deployments, their
revisions, persistence and queries. This module reads requests and writes responses for it, and
puts the routes of the control plane's parts (pipelines, graphs, security, usage, drift,
explanations, jobs) together, with an audited 404/405 for any other path under the prefix.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from starlette.responses import Response
from starlette.routing import Match, Route

from nstarx_jupyter.deployment.backend import DeploymentList
from nstarx_jupyter.errors import InvalidInputError, NotFoundError
from nstarx_jupyter.protocol.control import DeploymentLogs
from nstarx_jupyter.serving.control_http import (
    PREFIX,
    control_endpoint,
    json_body,
    json_response,
    model_response,
    query_number,
)
from nstarx_jupyter.serving.http_errors import error_response

if TYPE_CHECKING:
    from starlette.requests import Request

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.control import ControlPlane
    from nstarx_jupyter.serving.control_http import Handler

__all__ = ["ControlApi"]


class ControlApi:
    """The HTTP side of a `ControlPlane`."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def routes(self) -> list[Route]:
        """The control API's routes: deployments here, then those of the control plane's parts."""
        control = self.control

        def route(path: str, handler: Handler, action: str, audit_as: str,
                  methods: list[str]) -> Route:  # fmt: skip
            endpoint = control_endpoint(control.dataplane, handler, action, audit_as)
            return Route(f"{PREFIX}{path}", endpoint, methods=methods)

        routes = [
            route("/deployments", self._list, "any", "deployments", ["GET"]),
            route("/deployments/{name}", self._one, "manage", "deployment",
                  ["GET", "PUT", "DELETE"]),
            route("/deployments/{name}/metrics", self._metrics, "manage", "metrics", ["GET"]),
            route("/deployments/{name}/logs", self._logs, "manage", "logs", ["GET", "POST"]),
            route("/deployments/{name}/variants", self._variants, "manage", "variants", ["GET"]),
            route("/deployments/{name}/ab", self._ab, "manage", "ab", ["GET"]),
            *control.pipelines.routes(),
            *control.graphs.routes(),
            *control.security.routes(),
            *control.usage.routes(),
            *control.drift.routes(),
            *control.explain.routes(),
            *control.jobs.routes(),
        ]  # fmt: skip
        # Last: any other path or method under the prefix, so its 404 or 405 is audited too.
        unrouted = functools.partial(_unrouted, routes)
        endpoint = control_endpoint(control.dataplane, unrouted, "any", "unrouted")
        every = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
        rest = Route(f"{PREFIX}/{{path:path}}", endpoint, methods=every, include_in_schema=False)
        return [*routes, rest]

    async def _metrics(self, request: Request, principal: Principal) -> Response:
        samples = request.query_params.get("samples", "false")
        if samples not in ("true", "false"):
            raise InvalidInputError(f"samples: 'true' or 'false', not '{samples}'")
        return model_response(self.control.metrics(request.path_params["name"], _window(request),
                                                   samples=samples == "true"))  # fmt: skip

    async def _ab(self, request: Request, principal: Principal) -> Response:
        query = request.query_params
        numbers = {key: query_number(query, key) for key in ("alpha", "power", "minimum_effect")
                   if key in query}  # fmt: skip
        window = query_number(query, "window_s") if "window_s" in query else None
        report = await self.control.ab_report(request.path_params["name"], window_s=window,
                                      control=query.get("control"), **numbers)  # fmt: skip
        # Serialised as it always was (orjson), so the JSON is unchanged; the model checks it.
        return json_response(report.model_dump(mode="json"))

    async def _variants(self, request: Request, principal: Principal) -> Response:
        return model_response(self.control.variants(request.path_params["name"], _window(request)))

    async def _logs(self, request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        if request.method == "POST":  # a note from a client (an automated rollout's decision)
            self.control.note(name, (await json_body(request)).get("text"))
            return Response(status_code=204)
        return model_response(DeploymentLogs(name=name, lines=self.control.history(name)))

    async def _list(self, request: Request, principal: Principal) -> Response:
        control = self.control
        mine = [name for name in control.names() if control.guard.may(principal, "manage", name)]
        listed = DeploymentList([control.describe(name) for name in mine])
        return model_response(listed, exclude_defaults=True)

    async def _one(self, request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            return model_response(self.control.describe(name), exclude_defaults=True)
        if request.method == "DELETE":
            await self.control.delete(name)
            return Response(status_code=204)
        doc = await json_body(request)
        if doc.setdefault("name", name) != name:
            raise InvalidInputError(f"name: the body says '{doc['name']}', the URL '{name}'")
        raw = request.query_params.get("if_revision")
        if raw is not None and not raw.isdigit():
            raise InvalidInputError(f"if_revision: '{raw}' is not a revision number")
        existed = name in self.control.names()
        revision = int(raw) if raw is not None else None
        described = await self.control.deploy_as(principal, doc, if_revision=revision)
        return model_response(described, 200 if existed else 201, exclude_defaults=True)


async def _unrouted(routes: list[Route], request: Request, principal: Principal) -> Response:
    """404 for a path no control route has, 405 (with `Allow`) for a method it does not take."""
    allowed = sorted({method for route in routes
                      if route.matches(request.scope)[0] is Match.PARTIAL
                      for method in route.methods or ()})  # fmt: skip
    if allowed:
        return error_response(405, "Method Not Allowed", {"Allow": ", ".join(allowed)})
    raise NotFoundError(f"no control route {request.url.path}")


def _window(request: Request) -> float:
    raw = request.query_params.get("window_s", "60")
    try:
        return float(raw)
    except ValueError:
        raise InvalidInputError(f"window_s: '{raw}' is not a number") from None
