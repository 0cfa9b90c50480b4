"""The control API's batch job routes (`serving.jobs` runs them).

`POST /jobs` starts a job over a file (the caller must manage the deployment it names), `GET
/jobs` lists the jobs of the deployments the caller manages, `GET /jobs/{id}` shows one (state,
rows done and total, errors, output), `POST /jobs/{id}/cancel` stops one and `DELETE /jobs/{id}`
forgets it. Input and output files must lie in a folder the server may read (`ArtifactPolicy`:
`$NSTARX_HOME`, `nstarx serve --allow-path DIR`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import Route

from nstarx_jupyter.errors import ForbiddenError, InvalidInputError, NotFoundError
from nstarx_jupyter.model_uri import ModelUri
from nstarx_jupyter.protocol.control import JobList
from nstarx_jupyter.serving.control_http import PREFIX, control_endpoint, json_body, model_response
from nstarx_jupyter.serving.jobs import FORMATS, Job, JobRequest, JobRunner, read_table

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.requests import Request

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.control_http import Handler
    from nstarx_jupyter.serving.dataplane import DataPlane
    from nstarx_jupyter.serving.trust import ArtifactPolicy

__all__ = ["JobsApi"]


class JobsApi:
    """The batch job routes of one server, over its `JobRunner`."""

    def __init__(self, dataplane: DataPlane, state_dir: Path, policy: ArtifactPolicy) -> None:
        self.dataplane = dataplane
        self.policy = policy
        self.runner = JobRunner(dataplane, state_dir)

    def routes(self) -> list[Route]:
        """`/jobs`, `/jobs/{id}` and `/jobs/{id}/cancel`."""

        def route(path: str, handler: Handler, audit_as: str, methods: list[str]) -> Route:
            endpoint = control_endpoint(self.dataplane, handler, "any", audit_as)
            return Route(f"{PREFIX}{path}", endpoint, methods=methods)

        return [
            route("/jobs", self._jobs, "jobs", ["GET", "POST"]),
            route("/jobs/{id}", self._one, "job", ["GET", "DELETE"]),
            route("/jobs/{id}/cancel", self._cancel, "job.cancel", ["POST"]),
        ]

    def restore(self) -> None:
        """Resume the jobs a stopped server left queued or running."""
        self.runner.restore()

    async def close(self) -> None:
        """Stop the jobs where they are (they resume on the next start)."""
        await self.runner.close()

    def _known(self, name: str) -> None:
        dataplane = self.dataplane
        if name not in dataplane.repository.names() and dataplane.pipelines.get(name) is None:
            raise NotFoundError(f"no deployment or pipeline '{name}'")

    def _job(self, request: Request, principal: Principal) -> Job:
        """The job in the path, if the caller may manage its deployment (404 either way)."""
        job = self.runner.jobs.get(request.path_params["id"])
        if job is None or not self.dataplane.guard.may(principal, "manage", job.deployment):
            raise NotFoundError(f"no batch job '{request.path_params['id']}'")
        return job

    def _path(self, field: str, text: str) -> Path:
        """A local path in an allowed folder, or a 4xx naming `field`."""
        try:
            found = ModelUri.parse(text)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{field}: {exc.message}") from None
        if found.kind == "remote" or found.is_registry:
            raise InvalidInputError(f"{field}: '{text}' is not a local file path")
        try:
            return self.policy.check_uri(text)
        except ForbiddenError:
            raise ForbiddenError(
                f"{field}: '{text}' is not in a folder this server may read ($NSTARX_HOME, "
                "`nstarx serve --allow-path DIR`)"
            ) from None

    async def _jobs(self, request: Request, principal: Principal) -> Response:
        if request.method == "GET":
            guard = self.dataplane.guard
            jobs = sorted(self.runner.jobs.values(), key=lambda job: job.created, reverse=True)
            mine = [job.view() for job in jobs if guard.may(principal, "manage", job.deployment)]
            return model_response(JobList(mine))
        started = time.perf_counter()
        try:
            body = JobRequest.model_validate(await json_body(request))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "body"
            raise InvalidInputError(f"job: {where}: {error['msg']}") from None
        self._known(body.deployment)
        self.dataplane.guard.check(principal, "manage", body.deployment)
        source = self._path("input", body.input)
        if not source.is_file():
            raise InvalidInputError(f"input: '{body.input}' is not a file")
        fmt = body.format or FORMATS.get(source.suffix.lower())
        if fmt is None:
            raise InvalidInputError(
                f"format: '{source.suffix}' is not a known suffix; give csv, parquet or jsonl"
            )
        target = self._path("output", body.output) if body.output is not None else None
        if target is not None and target.suffix and target.suffix.lower() not in FORMATS:
            raise InvalidInputError(f"output: write to a .csv, .parquet or .jsonl file, not "
                                    f"'{target.suffix}'")  # fmt: skip
        if target is not None and (target == source or target.is_dir()):
            raise InvalidInputError(f"output: '{target}' is the input or a folder")
        loop = asyncio.get_running_loop()
        frame = await loop.run_in_executor(None, read_table, source, fmt)
        if frame.empty:
            raise InvalidInputError(f"input: '{body.input}' has no rows")
        missing = [c for c in body.passthrough or () if c not in frame.columns]
        if missing:
            raise InvalidInputError(f"passthrough: the input has no column '{missing[0]}'")
        job = self.runner.create(body, source, target, frame, fmt)
        # the route's own record names no deployment (its path has none): this one does
        self.dataplane.audit.call(principal, "job.created", "control", body.deployment, job.id,
                                  201, started)  # fmt: skip
        return model_response(job.view(), 201)

    async def _one(self, request: Request, principal: Principal) -> Response:
        job = self._job(request, principal)
        if request.method == "DELETE":
            await self.runner.delete(job)
            return Response(status_code=204)
        return model_response(job.view())

    async def _cancel(self, request: Request, principal: Principal) -> Response:
        job = self._job(request, principal)
        await self.runner.cancel(job)
        return model_response(job.view())
