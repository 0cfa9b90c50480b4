"""Batch jobs: a file of rows through a deployment or pipeline, chunked, parallel and resumable.

A job reads its input (CSV, Parquet or JSON lines) from a folder the server may read, cuts it
into chunks of `chunk_size` rows and sends at most `parallelism` chunks at once through the same
`DataPlane.predict` path as a REST request (batching, limits and metrics apply). Chunk `i`'s
answer, with the columns the model does not take passed through, is written to its own part file
atomically (a temporary name, fsync, rename): a chunk is done iff its part file exists. The
output is assembled from the parts in order, atomically too. A job's record lives in
`state_dir/jobs/ID/job.json`; after a crash or a restart a queued or running job resumes from the
parts it has, so a `kill -9` at any point loses no row and duplicates none.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from nstarx_jupyter.config import atomic_write
from nstarx_jupyter.errors import ErrorKind, InvalidInputError, NstarxError
from nstarx_jupyter.protocol import v1
from nstarx_jupyter.protocol.control import JobFormat, JobState, JobView
from nstarx_jupyter.protocol.datatypes import as_array
from nstarx_jupyter.protocol.records import records_to_tensors, tensors_to_records
from nstarx_jupyter.protocol.signature import bind_inputs

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from nstarx_jupyter.protocol.signature import ModelSignature
    from nstarx_jupyter.runtimes.base import Tensors
    from nstarx_jupyter.serving.dataplane import DataPlane

__all__ = [
    "FORMATS",
    "Job",
    "JobRequest",
    "JobRunner",
    "answer_table",
    "read_table",
]

log = logging.getLogger(__name__)

Format = JobFormat
FORMATS: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
                              ".jsonl": "jsonl", ".ndjson": "jsonl"}  # fmt: skip
"""File suffixes and the format each names (when the request gives none)."""
State = JobState
FINISHED = ("succeeded", "failed", "cancelled")
RUNNING_JOBS = 2
"""Jobs reading and predicting at once; later ones wait, `queued`."""
_RETRIED = (ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.RATE_LIMITED)
RETRY_S = 120.0
"""How long a chunk the server turns away (a full queue, a model still loading) is retried."""


class JobRequest(BaseModel):
    """`POST /nstarx/v1/jobs`: a file of rows through a deployment or a pipeline."""

    model_config = ConfigDict(extra="forbid")

    deployment: str = Field(min_length=1, max_length=253)
    """The deployment, model or pipeline that predicts."""
    input: str = Field(min_length=1, max_length=4096)
    """A local file in a folder the server may read ($NSTARX_HOME, `--allow-path DIR`)."""
    output: str | None = Field(default=None, min_length=1, max_length=4096)
    """Where the output goes (default `state_dir/jobs/ID/output.FORMAT`); its suffix names its
    format, else the input's."""
    format: Format | None = None
    """The input's format (default: from its suffix)."""
    chunk_size: int = Field(default=2000, ge=1, le=1_000_000)
    parallelism: int = Field(default=2, ge=1, le=32)
    """Chunks in flight at once."""
    passthrough: list[str] | None = Field(default=None, max_length=1000)
    """Columns copied to the output and not sent (default: those the model does not take)."""


@dataclass
class Job:
    """One job's record; the part files on disk say which chunks are done."""

    id: str
    deployment: str
    input: str
    output: str
    format: Format
    output_format: Format
    chunk_size: int
    parallelism: int
    passthrough: list[str] | None
    folder: Path
    state: State = "queued"
    rows_total: int | None = None
    errors: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    stamp: list[float] = field(default_factory=list)
    """The input's size and mtime when the job began: a changed file is refused on resume."""
    done: set[int] = field(default_factory=set)
    assembling: bool = False
    """Every chunk is done and the output is being written: too late to cancel."""

    @property
    def parts(self) -> Path:
        """Where chunk answers are kept, one file each."""
        return self.folder / "parts"

    def part(self, index: int) -> Path:
        """Chunk `index`'s part file."""
        return self.parts / f"{index:08d}.{self.output_format}"

    @property
    def chunks_total(self) -> int | None:
        """Chunks of the input (None before it is read)."""
        return None if self.rows_total is None else math.ceil(self.rows_total / self.chunk_size)

    def rows_done(self) -> int:
        """Rows answered so far (the parts on disk)."""
        if self.rows_total is None:
            return 0
        size, last = self.chunk_size, (self.chunks_total or 1) - 1
        return sum(self.rows_total - last * size if i == last else size for i in self.done)

    def view(self) -> JobView:
        """The job as the control API shows it."""
        keys = ("id", "deployment", "state", "input", "output", "format", "output_format",
                "chunk_size", "parallelism", "rows_total", "errors", "created", "started",
                "finished")  # fmt: skip
        doc = {key: getattr(self, key) for key in keys}
        return JobView(**doc, rows_done=self.rows_done(), chunks_total=self.chunks_total,
                       chunks_done=len(self.done), passthrough=self.passthrough)  # fmt: skip

    def save(self) -> None:
        """Write the record whole or not at all."""
        doc = {**self.view().model_dump(), "stamp": self.stamp}
        for key in ("rows_done", "chunks_total", "chunks_done"):
            doc.pop(key)
        atomic_write(self.folder / "job.json", json.dumps(doc, indent=1))

    @classmethod
    def load(cls, folder: Path) -> Job:
        """A record written by `save`; the part files on disk are its progress."""
        doc = json.loads((folder / "job.json").read_text())
        job = cls(**doc, folder=folder)
        job.done = {int(p.name.split(".")[0]) for p in job.parts.glob(f"*.{job.output_format}")}
        return job


def read_table(path: Path, fmt: Format) -> pd.DataFrame:
    """The rows of a file, or `InvalidInputError` saying why they cannot be read."""
    import pandas as pd

    try:
        if fmt == "csv":
            return pd.read_csv(path)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except ImportError as exc:
        raise InvalidInputError(f"input: {fmt} needs {exc.name} on the server") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"input: '{path}' cannot be read as {fmt}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - parsers raise their own kinds (pyarrow's)
        raise InvalidInputError(f"input: '{path}' cannot be read as {fmt}: {exc}") from None


def _encode(frame: pd.DataFrame, fmt: Format, header: bool) -> bytes:
    if fmt == "csv":
        return str(frame.to_csv(index=False, header=header)).encode()
    if fmt == "jsonl":
        return str(frame.to_json(orient="records", lines=True)).encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _assemble(job: Job, target: Path) -> None:
    """The parts in order, as one file written atomically (no part read twice)."""
    chunks = job.chunks_total or 0
    tmp = target.with_name(f".{target.name}.{job.id}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    if job.output_format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(job.part(i)) for i in range(chunks)]
        if tables:
            pq.write_table(pa.concat_tables(tables, promote_options="default"), tmp)
        else:
            tmp.write_bytes(b"")
    else:
        with tmp.open("wb") as out:
            for index in range(chunks):
                with job.part(index).open("rb") as part:
                    shutil.copyfileobj(part, out)
    with tmp.open("rb+") as written:
        os.fsync(written.fileno())
    tmp.replace(target)


class JobRunner:
    """The server's batch jobs: created, run, resumed after a restart, cancelled."""

    def __init__(self, dataplane: DataPlane, state_dir: Path) -> None:
        self.dataplane = dataplane
        self.folder = state_dir / "jobs"
        self.jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(RUNNING_JOBS)

    def restore(self) -> None:
        """Load every job's record; queued and running ones go on from their parts."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for record in sorted(self.folder.glob("*/job.json")):
            try:
                job = Job.load(record.parent)
            except (OSError, ValueError, TypeError) as exc:
                log.error("cannot restore batch job from %s: %s", record, exc)
                continue
            self.jobs[job.id] = job
            if job.state not in FINISHED:
                self._start(job, None)

    def create(self, request: JobRequest, source: Path, target: Path | None,
               frame: pd.DataFrame, fmt: Format) -> Job:  # fmt: skip
        """Record a new job over the rows of `frame` (read from `source`) and start it."""
        job_id = uuid.uuid4().hex[:16]
        folder = self.folder / job_id
        out_fmt = FORMATS.get(target.suffix.lower(), fmt) if target is not None else fmt
        output = target or folder / f"output.{out_fmt}"
        stat = source.stat()
        job = Job(job_id, request.deployment, str(source), str(output), fmt, out_fmt,
                  request.chunk_size, request.parallelism, request.passthrough, folder,
                  rows_total=len(frame), stamp=[stat.st_size, stat.st_mtime])  # fmt: skip
        job.parts.mkdir(parents=True, exist_ok=True)
        job.save()
        self.jobs[job_id] = job
        self._start(job, frame)
        return job

    def _start(self, job: Job, frame: pd.DataFrame | None) -> None:
        task = asyncio.create_task(self._run(job, frame), name=f"nstarx-job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))

    async def cancel(self, job: Job) -> None:
        """Stop a job that has not finished; its parts stay until it is deleted.

        A job writing its output goes on to the end (its rows are all answered).
        """
        if job.state in FINISHED or job.assembling:
            return
        job.state, job.finished = "cancelled", time.time()
        job.save()
        task = self._tasks.get(job.id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def delete(self, job: Job) -> None:
        """Cancel the job and forget it: its record and parts go (an output named goes on)."""
        await self.cancel(job)
        task = self._tasks.get(job.id)  # one writing its output: let it end first
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        self.jobs.pop(job.id, None)
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, job.folder, True)

    async def close(self) -> None:
        """Stop every job as it is: they resume when the server starts again."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: Job, frame: pd.DataFrame | None) -> None:
        loop = asyncio.get_running_loop()
        async with self._slots:
            try:
                if frame is None:
                    frame = await loop.run_in_executor(None, self._reread, job)
                job.state, job.started = "running", job.started or time.time()
                job.save()
                await self._chunks(job, frame)
                job.assembling = True
                await loop.run_in_executor(None, _assemble, job, Path(job.output))
                job.state = "succeeded"
            except asyncio.CancelledError:
                raise
            except NstarxError as exc:
                job.state, job.errors = "failed", [*job.errors, exc.message]
            except Exception as exc:
                log.exception("batch job %s crashed", job.id)
                job.state, job.errors = "failed", [*job.errors, f"internal error: {exc}"]
            job.finished = time.time()
            job.save()

    def _reread(self, job: Job) -> pd.DataFrame:
        """The input again, after a restart; refused when the file changed since the start."""
        for stale in job.parts.glob(".*"):  # a part being written when the server died
            stale.unlink(missing_ok=True)
        source = Path(job.input)
        try:
            stat = source.stat()
        except OSError as exc:
            raise InvalidInputError(f"input: '{source}' is gone: {exc.strerror}") from None
        if job.stamp and [stat.st_size, stat.st_mtime] != job.stamp:
            raise InvalidInputError(f"input: '{source}' changed since the job started")
        return read_table(source, job.format)

    async def _chunks(self, job: Job, frame: pd.DataFrame) -> None:
        """Every chunk not yet done, at most `parallelism` at once, in order of index."""
        todo = iter([i for i in range(job.chunks_total or 0) if i not in job.done])

        async def worker() -> None:
            for index in todo:  # the workers share one iterator: each chunk goes once
                await self._chunk(job, frame, index)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(job.parallelism, len(frame) or 1)):
                    group.create_task(worker())
        except ExceptionGroup as failed:  # the first chunk's error says why; others stopped
            first = failed.exceptions[0]
            raise first if isinstance(first, Exception) else failed from None

    async def _chunk(self, job: Job, frame: pd.DataFrame, index: int) -> None:
        start = index * job.chunk_size
        rows = frame.iloc[start : start + job.chunk_size]
        give_up, attempt = time.monotonic() + RETRY_S, 0
        while True:
            try:
                answers, taken = await self._predict(job, rows)
                break
            except NstarxError as exc:
                if exc.kind not in _RETRIED or time.monotonic() > give_up:
                    failed = NstarxError(f"rows {start}-{start + len(rows) - 1}: {exc.message}")
                    failed.kind = exc.kind
                    raise failed from None
            await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
            attempt += 1
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._write_part, job, index, rows, answers,
                                   taken)  # fmt: skip
        job.done.add(index)

    async def _predict(
        self, job: Job, rows: pd.DataFrame
    ) -> tuple[Callable[[], pd.DataFrame], set[str]]:
        """The answers to `rows` by the same path as a REST request, as a table to be made.

        The table (one row per row, the records API's columns) is made off the event loop, with
        the part file; with it, the columns the model took (a pipeline's: every column sent).
        """
        name = job.deployment
        sent = rows.drop(columns=[c for c in job.passthrough or () if c in rows.columns])
        if self.dataplane.pipelines.get(name) is not None:
            result = await self.dataplane.pipelines.run(name, sent.to_dict("records"), "batch")
            output = result.output
            if not isinstance(output, list) or len(output) != len(rows):
                raise InvalidInputError(f"pipeline '{name}' did not answer one record per row")
            answers = [item if isinstance(item, dict) else {"prediction": item} for item in output]
            return functools.partial(_normalized, answers), set(sent.columns)
        taken: set[str] = set(sent.columns)

        def decode(signature: ModelSignature) -> Tensors:
            names = _feature_names(signature)
            if names is None:  # rows in the model's feature order
                return v1.decode_instances({"instances": sent.to_numpy().tolist()}, signature)
            missing = [column for column in names if column not in sent.columns]
            if missing:
                raise InvalidInputError(
                    f"the input has no column '{missing[0]}' (the model takes {', '.join(names)})"
                )
            taken.intersection_update(names)
            columns = sent[list(names)]
            numeric = all(dtype.kind in "biuf" for dtype in columns.dtypes)
            if len(signature.inputs) == 1 and numeric:
                spec = signature.inputs[0]  # numbers: one array, no per-row records
                array = as_array(columns.to_numpy(), spec.datatype, spec.name)
                return bind_inputs(signature, {spec.name: array})
            return records_to_tensors(columns.to_dict("records"), signature)

        served = await self.dataplane.predict(name, None, "batch", decode, all_outputs=True)
        return functools.partial(answer_table, served.outputs, served.model.signature), taken

    def _write_part(self, job: Job, index: int, rows: pd.DataFrame,
                    answers: Callable[[], pd.DataFrame], taken: set[str]) -> None:  # fmt: skip
        import pandas as pd

        answered = answers()
        answered.index = rows.index
        keep = job.passthrough
        if keep is None:  # the columns the model did not take
            keep = [column for column in rows.columns if column not in taken]
        kept = [c for c in keep if c in rows.columns and c not in answered.columns]
        frame = pd.concat([rows[kept], answered], axis=1) if kept else answered
        atomic_write(job.part(index), _encode(frame, job.output_format, header=index == 0))


def _normalized(answers: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.json_normalize(answers)


def answer_table(outputs: Tensors, signature: ModelSignature) -> pd.DataFrame:
    """A model's outputs as the records API names them, nested fields flattened with `.`.

    `prediction`, `confidence` and `probabilities.LABEL` for a classifier: the columns of
    `pd.json_normalize(tensors_to_records(...))`, built a column at a time.
    """
    import pandas as pd

    columns: dict[str, Any] = {}
    labels = signature.class_labels
    for name, array in outputs.items():
        if name == "predict_proba" and labels is not None:
            columns["confidence"] = array.max(axis=1)
            for index, label in enumerate(labels):
                columns[f"probabilities.{label}"] = array[:, index]
        elif array.ndim == 1 and array.dtype.kind != "O":
            key = "prediction" if name in ("predict", *signature.default_outputs[:1]) else name
            columns[key] = array
        else:  # text, or several values a row: the records API's values
            return pd.json_normalize(tensors_to_records(outputs, signature))
    return pd.DataFrame(columns)


def _feature_names(signature: ModelSignature) -> tuple[str, ...] | None:
    """The names records are matched to: the features of a one-input model, else the inputs."""
    if len(signature.inputs) == 1:
        return signature.feature_names
    return tuple(spec.name for spec in signature.inputs)
