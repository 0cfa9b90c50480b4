"""The control API's pipeline routes: serve, describe and stop pipelines on the local server.

`PUT /nstarx/v1/pipelines/{name}` takes a `PipelineSpec` and serves it at
`/v1/models/{name}/predict` (a key with `manage:NAME` or the admin token; registry models it
brings need the caller's `deploy` permission); `GET` describes it, `DELETE` stops it. Pipelines
are kept in `state_dir/pipelines/NAME.json` and served again when the server restarts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from starlette.responses import Response
from starlette.routing import Route

from nstarx_jupyter.config import atomic_write
from nstarx_jupyter.errors import InvalidInputError, NotFoundError, NstarxError
from nstarx_jupyter.pipelines import PipelineSpec
from nstarx_jupyter.serving.security_api import PREFIX, control_endpoint, json_body, json_response
from nstarx_jupyter.serving.settings import registry_models
from nstarx_jupyter.serving.trust import ArtifactPolicy, default_policy

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.requests import Request

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane
    from nstarx_jupyter.serving.pipelines import HostedPipeline

__all__ = ["PipelineApi"]

log = logging.getLogger(__name__)


class PipelineApi:
    """Pipelines over the data plane's `PipelineHost`, saved under `state_dir/pipelines`."""

    def __init__(
        self, dataplane: DataPlane, state_dir: Path, policy: ArtifactPolicy | None = None
    ) -> None:
        self.dataplane = dataplane
        self.policy = policy or default_policy()
        self.host = dataplane.pipelines
        self.folder = state_dir / "pipelines"

    async def restore(self) -> None:
        """Serve the pipelines saved by an earlier run; a broken one is logged, not fatal."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for file in sorted(self.folder.glob("*.json")):
            try:
                spec = PipelineSpec.parse(file.read_text())
                self._check(spec)
                await self.host.put(spec, trusted=False)
            except (OSError, NstarxError) as exc:
                log.error("cannot restore pipeline from %s: %s", file, exc)

    def routes(self) -> list[Route]:
        """`/pipelines` and `/pipelines/{name}`."""
        listing = control_endpoint(self.dataplane, self._list, "any", "pipelines")
        one = control_endpoint(self.dataplane, self._one, "manage", "pipeline")
        return [
            Route(f"{PREFIX}/pipelines", listing, methods=["GET"]),
            Route(f"{PREFIX}/pipelines/{{name}}", one, methods=["GET", "PUT", "DELETE"]),
        ]

    def _check(self, spec: PipelineSpec) -> None:
        """Refuse model files outside the allowed folders (a pipeline is never `trusted`)."""
        for node in spec.nodes:
            uri = str(node.config.get("model", ""))
            if uri.startswith("file://"):  # read as the host reads it: percent-decoded
                self.policy.check_uri(unquote(urlparse(uri).path))

    def describe(self, hosted: HostedPipeline) -> dict[str, Any]:
        """Name, endpoint, nodes, the models it serves, and the spec."""
        spec = hosted.spec
        return {
            "name": spec.name,
            "url": f"/v1/models/{spec.name}/predict",
            "nodes": len(spec.nodes),
            "models": hosted.own_models,
            "created": hosted.created,
            "spec": spec.model_dump(mode="json"),
        }

    async def _list(self, request: Request, principal: Principal) -> Response:
        guard = self.dataplane.guard
        mine = [name for name in self.host.names() if guard.may(principal, "manage", name)]
        hosted = [self.host.get(name) for name in mine]
        return json_response([self.describe(h) for h in hosted if h is not None])

    async def _one(self, request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            hosted = self.host.get(name)
            if hosted is None:
                raise NotFoundError(f"no pipeline '{name}'")
            return json_response(self.describe(hosted))
        if request.method == "DELETE":
            await self.host.delete(name)
            self.dataplane.guard.keys.revoke_minted_for(name)
            (self.folder / f"{name}.json").unlink(missing_ok=True)
            return Response(status_code=204)
        doc = await json_body(request)
        if doc.setdefault("name", name) != name:
            raise InvalidInputError(f"name: the body says '{doc['name']}', the URL '{name}'")
        spec = PipelineSpec.parse(doc)
        self._check(spec)
        uris = [str(node.config.get("model", "")) for node in spec.nodes]
        self.dataplane.guard.check_models(principal, "deploy", registry_models(uris))
        existed = self.host.get(name) is not None
        hosted = await self.host.put(spec, trusted=False)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / f"{name}.json", spec.to_json())
        return json_response(self.describe(hosted), 200 if existed else 201)
