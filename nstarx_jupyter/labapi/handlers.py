"""The REST handlers: small, authenticated, each one call of the service on a worker thread.

`LabHandler` is the base: it reads and checks JSON bodies against the API's models, writes
answers, and maps every error to a status and the body `{"error": "..."}` in one place. A
client's mistake is a 4xx with a message that names the field, never a 500.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError
from tornado import web

from nstarx_jupyter.deployment.service import TARGETS
from nstarx_jupyter.errors import (
    HTTP_STATUS,
    ErrorKind,
    InvalidInputError,
    NstarxError,
    first_problem,
)
from nstarx_jupyter.labapi.models import (
    DeployRequest,
    KeyCreate,
    PipelineCheck,
    PipelineRun,
    PipelineSave,
    TrafficChange,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from nstarx_jupyter.labapi.service import LabService, Where

__all__ = ["STATUS", "LabHandler"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

STATUS: dict[ErrorKind, int] = {**HTTP_STATUS, ErrorKind.UNAUTHENTICATED: 502}
"""The status of each kind of domain error (`errors.HTTP_STATUS`), but a 401 from the local
server is a 502 here: the server refused the extension, not the lab user's login."""


class LabHandler(APIHandler):
    """The base of every handler: JSON in and out, errors mapped once."""

    service: LabService

    def initialize(self, service: LabService) -> None:
        """Keep the extension's service (tornado passes the route's keyword arguments)."""
        self.service = service

    async def call(self, work: Callable[..., T], *args: Any) -> T:
        """Run a blocking service call on a worker thread, off Jupyter's event loop."""
        return await asyncio.to_thread(work, *args)

    def where(self) -> Where:
        """Which deployments the call means: `?target=kserve&context=NAME&namespace=NS`.

        Default: the local server's.
        """
        target = self.get_query_argument("target", "local")
        if target not in TARGETS:
            raise InvalidInputError(f"target: '{target}' is not one of {', '.join(TARGETS)}")
        context = self.get_query_argument("context", None) or None
        namespace = self.get_query_argument("namespace", None) or None
        return (target, context, namespace)

    def body(self, model: type[M]) -> M:
        """The request's JSON body checked against `model` (`InvalidInputError` naming a field)."""
        try:
            doc = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise InvalidInputError(f"the body is not JSON: {exc}") from None
        try:
            return model.model_validate(doc)
        except ValidationError as exc:
            raise InvalidInputError(first_problem(exc, "body")) from None

    def reply(self, answer: BaseModel | list[Any] | dict[str, Any], status: int = 200) -> None:
        """Write `answer` (an API model, a list of them, or a plain dict) as JSON."""
        if isinstance(answer, BaseModel):
            doc: Any = answer.model_dump(mode="json")
        elif isinstance(answer, list):
            doc = [a.model_dump(mode="json") if isinstance(a, BaseModel) else a for a in answer]
        else:
            doc = answer
        self.set_status(status)
        self.finish(json.dumps(doc))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as `{"error": message}`, with the status its kind maps to."""
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, NstarxError):
            self.set_status(STATUS.get(error.kind, 500))
            message = error.message
        elif isinstance(error, web.HTTPError):  # as tornado formats it: `log_message % args`
            logged = error.log_message
            if logged and error.args:
                logged = logged % error.args
            message = logged or error.reason or self._reason
        elif error is not None:
            message = f"internal error: {type(error).__name__}: {error}"
        else:
            message = self._reason
        self.finish(json.dumps({"error": message}))

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """A client's mistake is logged in one line; only server faults get a traceback."""
        if isinstance(value, NstarxError) and STATUS.get(value.kind, 500) < 500:
            self.log.info("%s %s: %s", self.request.method, self.request.path, value.message)
            return
        super().log_exception(typ, value, tb)


class ServerHandler(LabHandler):
    """`server`: whether the local server runs (GET) and starting it (POST)."""

    @web.authenticated
    async def get(self) -> None:
        """The local server's state."""
        self.reply(await self.call(self.service.server_info))

    @web.authenticated
    async def post(self) -> None:
        """Start the local server."""
        self.reply(await self.call(self.service.start_server))


class ModelsHandler(LabHandler):
    """`models?search=TEXT`: the catalog."""

    @web.authenticated
    async def get(self) -> None:
        """The registered models that match `search`."""
        search = self.get_query_argument("search", "")
        self.reply(await self.call(self.service.models, search))


class ModelVersionsHandler(LabHandler):
    """`models/NAME/versions`."""

    @web.authenticated
    async def get(self, name: str) -> None:
        """A model's versions, newest first."""
        self.reply(await self.call(self.service.model_versions, name))


class DeploymentsHandler(LabHandler):
    """`deployments`: the list (GET) and the deploy form (POST)."""

    @web.authenticated
    async def get(self) -> None:
        """Every deployment (of `?target=kserve&context=NAME&namespace=NS`; default local).

        None while the local server is stopped.
        """
        self.reply(await self.call(self.service.deployments, *self.where()))

    @web.authenticated
    async def post(self) -> None:
        """Deploy a registry version; the answer holds the key minted for it, once."""
        request = self.body(DeployRequest)
        self.reply(await self.call(self.service.deploy, request, self.where()), 201)


class DeploymentHandler(LabHandler):
    """`deployments/NAME`."""

    @web.authenticated
    async def get(self, name: str) -> None:
        """One deployment."""
        self.reply(await self.call(self.service.deployment, name, self.where()))

    @web.authenticated
    async def delete(self, name: str) -> None:
        """Stop serving it."""
        await self.call(self.service.delete, name, self.where())
        self.set_status(204)
        self.finish()


class TrafficHandler(LabHandler):
    """`deployments/NAME/traffic`: the canary's share."""

    @web.authenticated
    async def put(self, name: str) -> None:
        """Move the canary's share of traffic."""
        change = self.body(TrafficChange)
        self.reply(await self.call(self.service.set_canary_percent, name, change, self.where()))


class RolloutHandler(LabHandler):
    """`deployments/NAME/promote` and `deployments/NAME/rollback`."""

    @web.authenticated
    async def post(self, name: str, action: str) -> None:
        """Promote the canary, or roll back to the stable revision."""
        self.reply(await self.call(self.service.roll, name, action, self.where()))


class SnippetsHandler(LabHandler):
    """`deployments/NAME/snippets`."""

    @web.authenticated
    async def get(self, name: str) -> None:
        """The calls in cURL and Python, the key left as `$NSTARX_API_KEY`."""
        self.reply(await self.call(self.service.snippets, name, self.where()))


class LogsHandler(LabHandler):
    """`deployments/NAME/logs`."""

    @web.authenticated
    async def get(self, name: str) -> None:
        """A deployment's events."""
        self.reply(await self.call(self.service.logs, name, self.where()))


class ContextsHandler(LabHandler):
    """`contexts`: the kubeconfig's contexts, for the sidebar's backend picker."""

    @web.authenticated
    async def get(self) -> None:
        """Every context (none, with the reason, when no cluster is configured)."""
        self.reply(await self.call(self.service.contexts))


class KeysHandler(LabHandler):
    """`keys`: list (GET) and mint (POST)."""

    @web.authenticated
    async def get(self) -> None:
        """Every key by prefix."""
        self.reply(await self.call(self.service.keys))

    @web.authenticated
    async def post(self) -> None:
        """Mint a key; the answer holds it, once."""
        request = self.body(KeyCreate)
        self.reply(await self.call(self.service.create_key, request), 201)


class KeyHandler(LabHandler):
    """`keys/ID`."""

    @web.authenticated
    async def delete(self, key_id: str) -> None:
        """Revoke a key; the answer is its record, revoked."""
        self.reply(await self.call(self.service.revoke_key, key_id))


class PipelineLibraryHandler(LabHandler):
    """`pipelines/library`: the palette."""

    @web.authenticated
    async def get(self) -> None:
        """Components, palette sections and port rules."""
        self.reply(await self.call(self.service.pipelines.library))


class PipelineCheckHandler(LabHandler):
    """`pipelines/check`."""

    @web.authenticated
    async def post(self) -> None:
        """Every problem of the spec, and its nodes' ports."""
        request = self.body(PipelineCheck)
        self.reply(await self.call(self.service.pipelines.check, request))


class PipelineRunHandler(LabHandler):
    """`pipelines/run`: a test run; a failing pipeline is an answer with `error`, not a 4xx."""

    @web.authenticated
    async def post(self) -> None:
        """Run the sample through the spec here."""
        request = self.body(PipelineRun)
        self.reply(await self.call(self.service.pipelines.run, request))


class PipelineDeployHandler(LabHandler):
    """`pipelines/deploy`."""

    @web.authenticated
    async def post(self) -> None:
        """Serve the spec on the local server."""
        request = self.body(PipelineRun)
        self.reply(await self.call(self.service.pipelines.deploy, request))


class PipelineVersionsHandler(LabHandler):
    """`pipelines/NAME/versions`: list (GET) and save (POST)."""

    @web.authenticated
    async def get(self, name: str) -> None:
        """The saved versions, newest first."""
        self.reply(await self.call(self.service.pipelines.versions, name))

    @web.authenticated
    async def post(self, name: str) -> None:
        """Save the spec as the next version."""
        request = self.body(PipelineSave)
        self.reply(await self.call(self.service.pipelines.save, name, request), 201)


class PipelineVersionHandler(LabHandler):
    """`pipelines/NAME/versions/N`."""

    @web.authenticated
    async def get(self, name: str, version: str) -> None:
        """A saved version's spec."""
        self.reply(await self.call(self.service.pipelines.load, name, int(version)))


class TrendHandler(LabHandler):
    """`deployments/NAME/trend?since=hour|day`: per-minute rollups for the sparklines."""

    @web.authenticated
    async def get(self, name: str) -> None:
        """The last hour's or day's rollups."""
        since = self.get_query_argument("since", "hour")
        self.reply(await self.call(self.service.trend, name, since))
