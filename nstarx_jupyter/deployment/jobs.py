"""Batch jobs on the local server from Python and the command line (`/nstarx/v1/jobs`).

The server does the work (`serving.jobs`); this module starts jobs, reads their state, follows
them to the end and cancels them. `nstarx batch run|status|cancel` and `Deployment.batch()` use
it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import DeadlineExceededError, InvalidInputError
from nstarx_jupyter.protocol.control import JobList, JobView

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from nstarx_jupyter.deployment.backend import Backend
    from nstarx_jupyter.deployment.local import LocalBackend

__all__ = ["FINISHED", "JobsClient", "batch_command"]

FINISHED = ("succeeded", "failed", "cancelled")
"""States a job does not leave."""


class JobsClient:
    """The local server's batch jobs over its control API (the owner's token)."""

    def __init__(self, backend: Backend) -> None:
        from nstarx_jupyter.deployment.local import LocalBackend

        if not isinstance(backend, LocalBackend):
            raise InvalidInputError(f"batch jobs run on the local server, not {backend.target}")
        self.backend: LocalBackend = backend

    def run(self, deployment: str, input_path: str, **options: Any) -> JobView:
        """Start a job; options: output, format, chunk_size, parallelism, passthrough."""
        body = {"deployment": deployment, "input": input_path,
                **{key: value for key, value in options.items() if value is not None}}  # fmt: skip
        return self.backend._answer(JobView, "POST", "/jobs", body)

    def get(self, job_id: str) -> JobView:
        """A job's state, progress, errors and output path."""
        return self.backend._answer(JobView, "GET", f"/jobs/{job_id}")

    def list(self) -> list[JobView]:
        """Every job the caller may see, newest first."""
        return self.backend._answer(JobList, "GET", "/jobs").root

    def cancel(self, job_id: str) -> JobView:
        """Stop a job (one already finished stays as it is)."""
        return self.backend._answer(JobView, "POST", f"/jobs/{job_id}/cancel")

    def delete(self, job_id: str) -> None:
        """Cancel a job and forget it (an output it wrote stays)."""
        self.backend._call("DELETE", f"/jobs/{job_id}")

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        interval_s: float = 0.25,
        on_progress: Callable[[JobView], None] | None = None,
    ) -> JobView:
        """Poll until the job finishes (or `timeout_s` passes: `DeadlineExceededError`)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.state in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceededError(f"batch job {job_id} still {job.state} after "
                                            f"{timeout_s:g} s")  # fmt: skip
            time.sleep(interval_s)


def describe_job(job: JobView) -> str:
    """One line: id, state, rows done of total, output (and the first error)."""
    total = "?" if job.rows_total is None else str(job.rows_total)
    line = f"{job.id}  {job.deployment}  {job.state}  {job.rows_done}/{total} rows"
    line += f"  {job.output}"
    return f"{line}  error: {job.errors[0]}" if job.errors else line


def batch_command(args: argparse.Namespace, backend: Backend) -> list[str]:
    """`nstarx batch run NAME INPUT [--wait]`, `status [ID]`, `cancel ID`."""
    jobs = JobsClient(backend)
    if args.action == "run":
        output = str(Path(args.output).expanduser().absolute()) if args.output else None
        job = jobs.run(args.name, str(Path(args.input).expanduser().absolute()), output=output,
                       format=args.format, chunk_size=args.chunk_size,
                       parallelism=args.parallelism, passthrough=args.passthrough)  # fmt: skip
        if args.wait:
            job = jobs.wait(job.id)
            if job.state != "succeeded":
                raise InvalidInputError(describe_job(job))
        return [describe_job(job)]
    if args.action == "cancel":
        return [describe_job(jobs.cancel(args.id))]
    if args.id:
        return [describe_job(jobs.get(args.id))]
    return [describe_job(job) for job in jobs.list()] or ["no batch jobs"]
