"""`Deployment.batch()`: a DataFrame or a file through a deployment as a server-side job.

The local server runs the job (`serving.jobs`: chunked, parallel, resumed after a restart); the
notebook hands it the rows (a DataFrame is written to `$NSTARX_HOME/batch/` first, a folder the
server may read), follows it with a progress bar and reads the output back as a DataFrame.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import nstarx_home
from nstarx_jupyter.deployment.jobs import FINISHED, JobsClient
from nstarx_jupyter.errors import ModelError

if TYPE_CHECKING:
    import pandas as pd

    from nstarx_jupyter.deployment.backend import Backend
    from nstarx_jupyter.protocol.control import JobView

__all__ = ["BatchJob", "BatchMixin"]


class BatchJob:
    """A handle on a server-side batch job: `.wait()` with a progress bar, `.result()`."""

    def __init__(self, client: JobsClient, job: JobView, scratch: Path | None = None) -> None:
        self.client = client
        self.id: str = job.id
        self.job = job
        """The job as last seen (state, rows_done, rows_total, errors, output)."""
        self._scratch = scratch
        """The file a DataFrame was written to for the job: removed once the job ends."""

    def status(self) -> JobView:
        """The job as the server sees it now."""
        self.job = self.client.get(self.id)
        return self.job

    @property
    def state(self) -> str:
        """queued, running, succeeded, failed or cancelled (as last seen)."""
        return self.job.state

    def wait(self, timeout_s: float | None = None, *, progress: bool = True) -> BatchJob:
        """Follow the job to its end, with a progress bar of rows (tqdm's, when installed)."""
        bar = _progress_bar(self.job) if progress and self.job.state not in FINISHED else None

        def show(job: JobView) -> None:
            if bar is not None:
                bar.total = job.rows_total or bar.total
                bar.update(job.rows_done - bar.n)

        try:
            self.job = self.client.wait(self.id, timeout_s=timeout_s, on_progress=show)
        finally:
            if bar is not None:
                bar.close()
        if self._scratch is not None:  # the server has read its last row of it
            self._scratch.unlink(missing_ok=True)
            self._scratch = None
        return self

    def result(self, timeout_s: float | None = None) -> pd.DataFrame:
        """The output as a DataFrame, once the job succeeds (`ModelError` when it did not)."""
        import pandas as pd

        if self.job.state not in FINISHED:
            self.wait(timeout_s)
        if self.job.state != "succeeded":
            errors = "; ".join(self.job.errors) or "no error recorded"
            raise ModelError(f"batch job {self.id} {self.job.state}: {errors}")
        output, fmt = Path(self.job.output), self.job.output_format
        if fmt == "csv":
            return pd.read_csv(output)
        if fmt == "jsonl":
            return pd.read_json(output, lines=True, dtype=False)
        return pd.read_parquet(output)

    def cancel(self) -> BatchJob:
        """Stop the job (its output is not written)."""
        self.job = self.client.cancel(self.id)
        return self

    def __repr__(self) -> str:
        job = self.job
        return f"BatchJob({self.id!r}, {job.state}, {job.rows_done}/{job.rows_total} rows)"


class BatchMixin:
    """`Deployment.batch()`."""

    name: str
    backend: Backend

    def batch(
        self,
        data: pd.DataFrame | str | Path,
        *,
        output: str | Path | None = None,
        chunk_size: int | None = None,
        parallelism: int | None = None,
        passthrough: list[str] | None = None,
        wait: bool = False,
    ) -> BatchJob:
        """Run every row of `data` (a DataFrame, or a CSV, Parquet or JSONL file) as a job.

        Columns the model does not take (an id) pass through to the output. The job runs on the
        server; `.wait()` follows it with a progress bar and `.result()` returns the output.
        """
        client = JobsClient(self.backend)
        scratch = None
        if isinstance(data, str | Path):
            source = Path(data).expanduser().absolute()
        else:
            source = scratch = _write_frame(data)
        target = str(Path(output).expanduser().absolute()) if output else None
        job = client.run(self.name, str(source), chunk_size=chunk_size, parallelism=parallelism,
                         passthrough=passthrough, output=target)  # fmt: skip
        handle = BatchJob(client, job, scratch)
        return handle.wait() if wait else handle


def _write_frame(frame: pd.DataFrame) -> Path:
    """`frame` as a file under `$NSTARX_HOME/batch` (a folder the local server may read)."""
    folder = nstarx_home() / "batch"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import pyarrow  # noqa: F401 - Parquet keeps the column types

        path = folder / f"{uuid.uuid4().hex}.parquet"
        frame.to_parquet(path, index=False)
    except ImportError:
        path = folder / f"{uuid.uuid4().hex}.csv"
        frame.to_csv(path, index=False)
    return path


def _progress_bar(job: JobView) -> Any:
    """A tqdm bar of rows (the notebook's widget under Jupyter), or None without tqdm."""
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return None
    return tqdm(total=job.rows_total, unit="rows", desc=f"batch {job.id[:8]}")
