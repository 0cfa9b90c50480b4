"""The control API's graph routes: serve, describe and stop KServe InferenceGraphs locally.

`PUT /nstarx/v1/graphs/{name}` takes a `GraphSpec` (what `nstarx apply -f` makes of an
InferenceGraph) and serves it at the graph's inference paths (a key with `manage:NAME` or the
admin token); `GET` describes it, `DELETE` stops it. Graphs are kept in
`state_dir/graphs/NAME.json` and served again when the server restarts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson
from starlette.responses import Response
from starlette.routing import Route

from nstarx_jupyter.config import atomic_write
from nstarx_jupyter.errors import InvalidInputError, NstarxError
from nstarx_jupyter.pipelines.inference_graph import GraphSpec
from nstarx_jupyter.pipelines.served import GraphList
from nstarx_jupyter.serving.control_http import PREFIX, control_endpoint, json_body, model_response

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.requests import Request

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane
    from nstarx_jupyter.serving.graphs import GraphHost

__all__ = ["GraphApi"]

log = logging.getLogger(__name__)


class GraphApi:
    """`/nstarx/v1/graphs[/{name}]` over the data plane's `GraphHost`, saved under state_dir."""

    def __init__(self, dataplane: DataPlane, state_dir: Path) -> None:
        self.dataplane = dataplane
        self.host: GraphHost = dataplane.graphs
        self.folder = state_dir / "graphs"

    def restore(self) -> None:
        """Serve the graphs saved by an earlier run; a broken one is logged, not fatal."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for file in sorted(self.folder.glob("*.json")):
            try:
                self.host.put(GraphSpec.parse(orjson.loads(file.read_bytes())))
            except (OSError, ValueError, NstarxError) as exc:
                log.error("cannot restore inference graph from %s: %s", file, exc)

    def routes(self) -> list[Route]:
        """`/graphs` and `/graphs/{name}`."""
        listing = control_endpoint(self.dataplane, self._list, "any", "graphs")
        one = control_endpoint(self.dataplane, self._one, "manage", "graph")
        return [
            Route(f"{PREFIX}/graphs", listing, methods=["GET"]),
            Route(f"{PREFIX}/graphs/{{name}}", one, methods=["GET", "PUT", "DELETE"]),
        ]

    async def _list(self, request: Request, principal: Principal) -> Response:
        guard = self.dataplane.guard
        mine = [name for name in self.host.names() if guard.may(principal, "manage", name)]
        return model_response(
            GraphList([self.host.describe(name) for name in mine]), exclude_defaults=True
        )

    async def _one(self, request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            return model_response(self.host.describe(name), exclude_defaults=True)
        if request.method == "DELETE":
            self.host.delete(name)
            (self.folder / f"{name}.json").unlink(missing_ok=True)
            return Response(status_code=204)
        doc = await json_body(request)
        if doc.setdefault("name", name) != name:
            raise InvalidInputError(f"name: the body says '{doc['name']}', the URL '{name}'")
        spec = GraphSpec.parse(doc)
        existed = self.host.get(name) is not None
        self.host.put(spec)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / f"{name}.json", spec.model_dump_json(exclude_defaults=True))
        return model_response(
            self.host.describe(name), 200 if existed else 201, exclude_defaults=True
        )
