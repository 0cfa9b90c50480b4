"""The sink workers: one bounded queue and thread per sink, draining to a webhook or files.

`SinkHub` (`serving/sinks.py`) makes them and feeds them; see its module for the whole design.
A webhook worker POSTs batches (CloudEvents headers), retrying with backoff and full jitter and
dead-lettering what still fails; a file worker appends JSON lines or writes Parquet, rotating
by size.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.protocol.datatypes import datatype_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    import numpy as np

    from nstarx_jupyter.pipelines.sinks import FileSink, WebhookSink

__all__ = [
    "BACKOFF_CAP_S",
    "BACKOFF_S",
    "CLOSE_TIMEOUT_S",
    "DEAD_LETTER_MAX_BYTES",
    "DEPLOYMENT",
    "PIPELINE",
    "REQUEST_EVENT",
    "RESPONSE_EVENT",
    "FileWorker",
    "Record",
    "SinkStats",
    "SinkWorker",
    "Tensors",
    "WebhookWorker",
]

log = logging.getLogger(__name__)

BACKOFF_S = 0.1
"""The first retry waits up to this long; each next one up to twice the last (full jitter)."""
BACKOFF_CAP_S = 5.0
"""No single wait between attempts is longer."""
DEAD_LETTER_MAX_BYTES = 256 * 1024 * 1024
"""A dead-letter file stops growing here: later failed batches are counted as dropped."""
CLOSE_TIMEOUT_S = 10.0
"""How long shutting down waits for each sink to send or write what it holds."""
REQUEST_EVENT = "org.kubeflow.serving.inference.request"
RESPONSE_EVENT = "org.kubeflow.serving.inference.response"

Tensors = dict[str, "np.ndarray[Any, Any]"]
# (time, owner kind, version, variant, request id, latency ms, inputs, outputs): a tuple, the
# cheapest thing to build on the request path. Pipeline rows carry the row as inputs.
Record = tuple[float, str, str, str | None, str, float, Any, Any]
DEPLOYMENT, PIPELINE = "deployment", "pipeline"


@dataclass(slots=True)
class SinkStats:
    """Counts of one sink, kept across redeploys so the Prometheus counters never go back.

    `dropped` is counted on the event loop alone (lock-free, on the request path); the sink's
    threads (a retiring one may still deliver beside its successor) count the rest under a lock.
    """

    sent: int = 0
    """Records delivered (POSTed with a 2xx answer, or written)."""
    failed: int = 0
    """Failed attempts (a connection error, a non-2xx answer, a write error)."""
    dropped: int = 0
    """Records dropped because the queue was full."""
    lost: int = 0
    """Records dropped by the sink's thread: the dead-letter file was full, a write failed."""
    dead_lettered: int = 0
    """Records appended to the dead-letter file after every attempt failed."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: str, count: int) -> None:
        """Add to a counter from a sink's thread."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + count)

    def figures(self) -> dict[str, int]:
        """sent, failed, dropped (either way) and dead_lettered."""
        return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped + self.lost,
                "dead_lettered": self.dead_lettered}  # fmt: skip


# -- the request path ----------------------------------------------------------------------------


class SinkWorker:
    """One sink: a bounded queue and the thread that drains it."""

    def __init__(
        self, owner: str, label: str, config: WebhookSink | FileSink, stats: SinkStats, root: Path
    ) -> None:
        self.owner, self.label, self.config, self.stats = owner, label, config, stats
        self.root = root
        self.queue: deque[Record] = deque()
        self.capacity = config.queue_size
        self._batch = config.batch_size
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"nstarx-sink-{owner}-{label}",
                                        daemon=True)  # fmt: skip

    def start(self) -> None:
        """Start draining."""
        self._thread.start()

    def offer(self, record: Record) -> bool:
        """Queue `record` unless the queue is full (then count it dropped). Never blocks."""
        queue = self.queue
        if len(queue) >= self.capacity:
            self.stats.dropped += 1
            return False
        queue.append(record)
        if len(queue) == self._batch:
            self._wake.set()
        return True

    def offer_row(self, row: dict[str, Any], request_id: str) -> bool:
        """Queue a pipeline record (its public fields) (`SinkFeed`)."""
        public = {key: value for key, value in row.items() if not key.startswith("_")}
        return self.offer((time.time(), PIPELINE, "", None, request_id, 0.0, public, None))

    def stop(self) -> None:
        """Ask the thread to deliver what is queued and end (does not wait)."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    # -- the sink's thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                if not stopping and len(self.queue) < self._batch:
                    self._wake.wait(self.config.flush_s)
                    self._wake.clear()
                while self.queue:
                    batch = [self.queue.popleft()
                             for _ in range(min(self._batch, len(self.queue)))]  # fmt: skip
                    self._deliver_safely(batch)
                self.tick(stopping)
                if stopping:
                    return
        finally:
            self.close()

    def _deliver_safely(self, batch: list[Record]) -> None:
        try:
            self.deliver(batch)
        except Exception:  # a bug must not end the thread and silently fill the queue
            log.exception("sink %s of %s failed on %d records", self.label, self.owner, len(batch))
            self.stats.add("failed", 1)
            self.stats.add("lost", len(batch))

    def deliver(self, batch: list[Record]) -> None:
        """Send or write one batch (the sink's thread)."""
        raise NotImplementedError

    def tick(self, stopping: bool) -> None:
        """Time-based work after each wake-up (Parquet rotation)."""

    def close(self) -> None:
        """Release what the sink holds (the sink's thread, once at the end)."""

    def documents(self, batch: Sequence[Record]) -> list[dict[str, Any]]:
        """The JSON documents of a batch."""
        return [_document(self.owner, record, getattr(self.config, "mode", "all"))
                for record in batch]  # fmt: skip


def _document(owner: str, record: Record, mode: str = "all") -> dict[str, Any]:
    """One record as JSON: who answered, when, how fast, what came in and what went out."""
    stamp, kind, version, variant, request_id, latency_ms, inputs, outputs = record
    request_id = request_id or uuid.uuid4().hex  # made here, off the request path
    when = dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="milliseconds")
    if kind == PIPELINE:
        return {"pipeline": owner, "time": when, "request_id": request_id, "record": inputs}
    doc: dict[str, Any] = {"deployment": owner, "version": version, "variant": variant,
                           "request_id": request_id, "time": when,
                           "latency_ms": round(latency_ms, 3)}  # fmt: skip
    if mode != "response":
        doc["inputs"] = _tensors(inputs)
    if mode != "request":
        doc["outputs"] = _tensors(outputs)
    return doc


def _tensors(tensors: Tensors | None) -> dict[str, Any]:
    return {name: _plain(array.tolist()) for name, array in (tensors or {}).items()}


def _plain(value: Any) -> Any:
    """Lists with bytes (BYTES tensors) made JSON: bytes become text."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _json_line(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, separators=(",", ":"), default=str, allow_nan=True) + "\n").encode()


def _append(path: Path, data: bytes) -> None:
    """Append `data` in one `write` (O_APPEND): readers never see part of a batch's last line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


# -- webhook -------------------------------------------------------------------------------------


class WebhookWorker(SinkWorker):
    """POST batches (or KServe CloudEvents) with retries; what fails goes to the dead letter."""

    config: WebhookSink

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        import httpx

        self._httpx = httpx
        self._client = httpx.Client(timeout=self.config.timeout_s, follow_redirects=False)
        self._headers = {"content-type": "application/json", **self.config.headers}

    def deliver(self, batch: list[Record]) -> None:
        """One POST per batch (`nstarx`), or one per event (`cloudevents`)."""
        documents = self.documents(batch)
        if self.config.format == "nstarx":
            body = json.dumps({"records": documents}, default=str).encode()
            self._send(body, self._headers, documents)
            return
        failed = ""
        for record, document in zip(batch, documents, strict=True):
            for event_type, body in self._events(record, document):
                event = [{**document, "event": event_type}]
                if failed:  # the receiver is down: the batch's other events are not retried
                    self._dead_letter(event, failed)
                    continue
                cloud = _cloud_headers(self.owner, record, document["request_id"], event_type)
                failed = self._send(body, {**self._headers, **cloud}, event) or ""

    def _events(self, record: Record, doc: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
        """KServe's logger payloads: the V2 request, then the V2 response."""
        mode = self.config.mode
        if mode in ("all", "request") and record[1] == DEPLOYMENT:
            inputs = [_v2_tensor(name, array) for name, array in (record[6] or {}).items()]
            yield REQUEST_EVENT, json.dumps({"id": doc["request_id"], "inputs": inputs}).encode()
        if mode in ("all", "response") and record[1] == DEPLOYMENT:
            outputs = [_v2_tensor(name, array) for name, array in (record[7] or {}).items()]
            body = {"model_name": self.owner, "model_version": record[2],
                    "id": doc["request_id"], "outputs": outputs}  # fmt: skip
            yield RESPONSE_EVENT, json.dumps(body).encode()
        if record[1] == PIPELINE:
            yield REQUEST_EVENT, json.dumps(doc, default=str).encode()

    def _send(
        self, body: bytes, headers: dict[str, str], documents: list[dict[str, Any]]
    ) -> str | None:
        """POST (with retries); what still fails goes to the dead letter. The error, if any."""
        error = self._post(body, headers)
        if error is None:
            self.stats.add("sent", len(documents))
            return None
        # what went wrong, never the headers (they may hold credentials)
        log.warning("sink %s of %s: %d records to the dead-letter file after %s", self.label,
                    self.owner, len(documents), error)  # fmt: skip
        self._dead_letter(documents, error)
        return error

    def _post(self, body: bytes, headers: dict[str, str]) -> str | None:
        """POST until a 2xx; None when delivered, else the last error."""
        config = self.config
        deadline = time.monotonic() + config.deadline_s
        error = ""
        for attempt in range(config.max_attempts):
            try:
                answer = self._client.post(config.url, content=body, headers=headers)
            except self._httpx.HTTPError as exc:  # connection refused, reset, timed out...
                error = type(exc).__name__
            else:
                if answer.status_code < 300:
                    return None
                error = f"HTTP {answer.status_code}"
                if answer.status_code < 500 and answer.status_code != 429:
                    self.stats.add("failed", 1)
                    return error  # the receiver refuses this body: sending it again won't help
            self.stats.add("failed", 1)
            if attempt + 1 == config.max_attempts:
                break
            delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_S * 2**attempt))  # noqa: S311
            if time.monotonic() + delay > deadline:
                error += " (deadline)"
                break
            if self._stop.wait(delay):  # shutting down: no more waiting, keep it in the letter
                error += " (server stopping)"
                break
        return error

    def _dead_letter(self, documents: list[dict[str, Any]], error: str) -> None:
        path = self.root / "dead-letter" / f"{self.owner}.{self.label}.jsonl"
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        data = b"".join(_json_line({**doc, "dead_letter": {"error": error, "time": stamp}})
                        for doc in documents)  # fmt: skip
        try:
            size = path.stat().st_size if path.exists() else 0
            if size + len(data) > DEAD_LETTER_MAX_BYTES:
                raise OSError(f"{path} is full ({DEAD_LETTER_MAX_BYTES} bytes)")
            _append(path, data)
        except OSError as exc:
            log.error("sink %s of %s: %d records lost: %s", self.label, self.owner,
                      len(documents), exc)  # fmt: skip
            self.stats.add("lost", len(documents))
            return
        self.stats.add("dead_lettered", len(documents))

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def _cloud_headers(owner: str, record: Record, request_id: str, event_type: str) -> dict[str, str]:
    """Binary-mode CloudEvent attributes, with the extensions KServe's logger adds."""
    stamp, _, version, variant, *_ = record
    when = dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="milliseconds")
    return {"ce-specversion": "1.0", "ce-id": request_id, "ce-type": event_type,
            "ce-source": f"urn:nstarx:{owner}", "ce-time": when.replace("+00:00", "Z"),
            "ce-inferenceservicename": owner, "ce-component": "predictor",
            "ce-endpoint": variant or "", "ce-modelversion": version}  # fmt: skip


def _v2_tensor(name: str, array: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype_of(array), "shape": list(array.shape),
            "data": _plain(array.reshape(-1).tolist())}  # fmt: skip


# -- files ---------------------------------------------------------------------------------------


class FileWorker(SinkWorker):
    """JSON lines appended and rotated by size, or one Parquet file per rotation."""

    config: FileSink

    def __init__(self, *args: Any, folder: Path) -> None:
        super().__init__(*args)
        self.folder = folder
        self._rotate_bytes = int(self.config.rotate_mb * 1024 * 1024)
        self._rows: list[dict[str, Any]] = []
        self._row_bytes = 0
        self._since = time.monotonic()
        self._seq = 0

    def deliver(self, batch: list[Record]) -> None:
        """Append the batch (JSONL) or keep its rows for the next Parquet file."""
        documents = self.documents(batch)
        if self.config.format == "parquet":
            for doc in documents:
                row = _parquet_row(doc)
                self._row_bytes += sum(len(v) for v in row.values() if isinstance(v, str))
                self._rows.append(row)
            if self._row_bytes >= self._rotate_bytes:
                self._write_parquet()
            return
        data = b"".join(_json_line(doc) for doc in documents)
        current = self.folder / "records.jsonl"
        try:
            if current.exists() and current.stat().st_size + len(data) > self._rotate_bytes:
                current.rename(self.folder / f"records-{_stamp()}-{self._next()}.jsonl")
            _append(current, data)
        except OSError as exc:
            log.error("sink %s of %s: cannot write %s: %s", self.label, self.owner, current, exc)
            self.stats.add("failed", 1)
            self.stats.add("lost", len(documents))
            return
        self.stats.add("sent", len(documents))

    def tick(self, stopping: bool) -> None:
        """Write the kept Parquet rows when `rotate_s` has passed, or the sink is stopping."""
        if self._rows and (stopping or time.monotonic() - self._since >= self.config.rotate_s):
            self._write_parquet()

    def _write_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows, self._rows, self._row_bytes = self._rows, [], 0
        self._since = time.monotonic()
        name = f"part-{_stamp()}-{self._next()}.parquet"
        temporary = self.folder / f".{name}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows, schema=_parquet_schema()), temporary)
            temporary.replace(self.folder / name)  # whole or not there: no reader sees half
        except (OSError, pa.ArrowException) as exc:
            temporary.unlink(missing_ok=True)
            log.error("sink %s of %s: cannot write %s: %s", self.label, self.owner, name, exc)
            self.stats.add("failed", 1)
            self.stats.add("lost", len(rows))
            return
        self.stats.add("sent", len(rows))

    def _next(self) -> int:
        self._seq += 1
        return self._seq


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


_PARQUET_COLUMNS = ("deployment", "pipeline", "version", "variant", "request_id", "time")


def _parquet_row(doc: dict[str, Any]) -> dict[str, Any]:
    """Fixed columns; tensors and pipeline records as JSON text (their shapes vary by model)."""
    row: dict[str, Any] = {key: doc.get(key) for key in _PARQUET_COLUMNS}
    row["latency_ms"] = doc.get("latency_ms")
    for key in ("inputs", "outputs", "record"):
        row[key] = json.dumps(doc[key], default=str) if key in doc else None
    return row


def _parquet_schema() -> Any:
    import pyarrow as pa

    text = [pa.field(key, pa.string()) for key in _PARQUET_COLUMNS]
    tensors = [pa.field(key, pa.string()) for key in ("inputs", "outputs", "record")]
    return pa.schema([*text, pa.field("latency_ms", pa.float64()), *tensors])
