"""The control API's pipeline routes: serve, describe and stop pipelines on the local server.

`PUT /nstarx/v1/pipelines/{name}` takes a `PipelineSpec` and serves it at
`/v1/models/{name}/predict` (a key with `manage:NAME` or the admin token; registry models it
brings need the caller's `deploy` permission); `GET` describes it, `DELETE` stops it. Pipelines
are kept in `state_dir/pipelines/NAME.json` and served again when the server restarts.

A pipeline may ship custom components defined in a notebook (`components`, see
`nstarx_jupyter.pipelines.shipping`): that is code the server runs, so it is taken only from the
admin with `trusted: true` (audited as `pipeline.trusted` with the digests), kept in
`state_dir/pipelines/code/NAME.json` and loaded again on restart; anyone else hears 403 before
anything is loaded, with what to do instead.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response
from starlette.routing import Route

from nstarx_jupyter.config import atomic_write
from nstarx_jupyter.errors import ForbiddenError, InvalidInputError, NotFoundError, NstarxError
from nstarx_jupyter.model_uri import ModelUri
from nstarx_jupyter.pipelines import PipelineSpec, component_class
from nstarx_jupyter.pipelines.served import PipelineList, PipelineView
from nstarx_jupyter.pipelines.shipping import HOW_TO_PACKAGE, unpack_components
from nstarx_jupyter.serving.control_http import PREFIX, control_endpoint, json_body, model_response
from nstarx_jupyter.serving.settings import registry_models
from nstarx_jupyter.serving.trust import ArtifactPolicy, default_policy

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.requests import Request

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane
    from nstarx_jupyter.serving.pipeline_host import HostedPipeline

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
                code = self.folder / "code" / file.name  # written only for the admin's word
                trusted = code.is_file()
                if trusted:
                    unpack_components(orjson.loads(code.read_bytes())["components"])
                await self.host.put(spec, trusted=trusted)
            except (OSError, ValueError, KeyError, NstarxError) as exc:
                log.error("cannot restore pipeline from %s: %s", file, exc)

    def routes(self) -> list[Route]:
        """`/pipelines` and `/pipelines/{name}`."""
        listing = control_endpoint(self.dataplane, self._list, "any", "pipelines")
        one = control_endpoint(self.dataplane, self._one, "manage", "pipeline")
        return [
            Route(f"{PREFIX}/pipelines", listing, methods=["GET"]),
            Route(f"{PREFIX}/pipelines/{{name}}", one, methods=["GET", "PUT", "DELETE"]),
        ]

    def _check(self, spec: PipelineSpec, *, trusted: bool = False) -> None:
        """Refuse model files outside the allowed folders (unless the admin said `trusted`)."""
        for node in spec.nodes:
            try:
                found = ModelUri.parse(str(node.config.get("model", "")))
            except InvalidInputError:
                continue  # not a model reference: the pipeline's validation says so
            if found.is_file_url:  # read as the host reads it: `ModelUri.path`
                self.policy.check_uri(found.text, trusted=trusted)

    def describe(self, hosted: HostedPipeline) -> PipelineView:
        """Name, endpoint, nodes, the models it serves, and the spec."""
        spec = hosted.spec
        return PipelineView(name=spec.name, url=f"/v1/models/{spec.name}/predict",
                            nodes=len(spec.nodes), models=hosted.own_models,
                            created=hosted.created, spec=spec)  # fmt: skip

    async def _list(self, request: Request, principal: Principal) -> Response:
        guard = self.dataplane.guard
        mine = [name for name in self.host.names() if guard.may(principal, "manage", name)]
        hosted = [self.host.get(name) for name in mine]
        return model_response(PipelineList([self.describe(h) for h in hosted if h is not None]))

    async def _one(self, request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            hosted = self.host.get(name)
            if hosted is None:
                raise NotFoundError(f"no pipeline '{name}'")
            return model_response(self.describe(hosted))
        if request.method == "DELETE":
            await self.host.delete(name)
            self.dataplane.guard.keys.revoke_minted_for(name)
            (self.folder / f"{name}.json").unlink(missing_ok=True)
            return Response(status_code=204)
        return await self._put(request, principal, name)

    async def _put(self, request: Request, principal: Principal, name: str) -> Response:
        doc = await json_body(request)
        if doc.setdefault("name", name) != name:
            raise InvalidInputError(f"name: the body says '{doc['name']}', the URL '{name}'")
        shipped, trusted = doc.pop("components", None), doc.pop("trusted", False)
        if not isinstance(trusted, bool):
            raise InvalidInputError("trusted: true or false")
        _check_trust(principal, trusted, shipped)
        spec = PipelineSpec.parse(doc)
        self.host.check_name_free(name)  # a clash (409) before what the body holds (400)
        self._check(spec, trusted=trusted)
        uris = [str(node.config.get("model", "")) for node in spec.nodes]
        self.dataplane.guard.check_models(principal, "deploy", registry_models(uris))
        started = time.perf_counter()
        loaded = unpack_components(shipped) if shipped else []  # the admin vouched for it
        for node in spec.nodes:  # a caller's mistake (400), not a missing resource
            try:
                component_class(node.component)
            except NotFoundError as exc:
                raise InvalidInputError(f"node '{node.id}': {exc.message}") from None
        existed = self.host.get(name) is not None
        hosted = await self.host.put(spec, trusted=trusted)
        self.folder.mkdir(parents=True, exist_ok=True)
        code = self.folder / "code" / f"{name}.json"
        if trusted:
            code.parent.mkdir(exist_ok=True)
            atomic_write(code, orjson.dumps({"trusted_by": principal.key,
                                             "components": shipped or []}).decode())  # fmt: skip
            digests = ",".join(f"{e['name']}:{e['sha256'][:16]}" for e in shipped or [])
            self.dataplane.audit.call(principal, "pipeline.trusted", "control", name,
                                      digests or "-", 200, started)  # fmt: skip
        else:
            code.unlink(missing_ok=True)
        atomic_write(self.folder / f"{name}.json", spec.to_json())
        if loaded:
            log.warning("pipeline %s: components %s shipped as trusted code by %s", name,
                        ", ".join(cls.name for cls in loaded), principal.key)  # fmt: skip
        return model_response(self.describe(hosted), 200 if existed else 201)


def _check_trust(principal: Principal, trusted: bool, shipped: Any) -> None:
    """Refuse shipped code, or `trusted`, from anyone but the admin (before anything loads)."""
    if shipped and not trusted:
        raise ForbiddenError(
            "components: a pipeline that ships components runs their code on the server; send "
            f"it with trusted: true and the admin's credentials, or {HOW_TO_PACKAGE}"
        )
    if trusted and not principal.is_admin:
        what = "ship custom components" if shipped else "mark a pipeline trusted"
        raise ForbiddenError(
            f"trusted: only the server's admin may {what} (their code runs on the server); "
            f"{HOW_TO_PACKAGE}, or ask the server's owner to deploy it"
        )
