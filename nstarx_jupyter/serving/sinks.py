"""Results sent to other systems: webhooks and files fed from the request path, drained off it.

A deployment's `sinks` (and KServe's `logger`, read as a CloudEvents webhook) each get a bounded
queue and a thread. The request path builds one small tuple per answered request (the decoded
input tensors and the outputs, by reference: nothing is copied or encoded there) and appends
it to each queue; a full queue drops the record and counts it, so a slow receiver never slows
a request. The thread takes batches (`batch_size` records, or what came within `flush_s`),
encodes them and:

- webhook: POSTs them with httpx, retrying connection errors, 5xx and 429 with exponential
  backoff and full jitter, within `max_attempts` and `deadline_s`; a batch that still fails is
  appended to a dead-letter file (`SINK_ROOT/dead-letter/OWNER.SINK.jsonl`, whole lines only).
- file: appends JSON lines (one write per batch, so a line is never half there) and rotates by
  size, or writes a Parquet file per rotation under a temporary name and renames it into place.

Counters per sink (sent, failed attempts, dropped, dead-lettered) are in `/metrics`. A sink's
folder lies under the sink root (`STATE/sinks` or `nstarx serve --sink-dir`) unless the spec is
`trusted` (the admin's word): a deploy key cannot make the server write where it chooses.

The workers are in `sink_workers`; this module holds the hub that makes, feeds and counts them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nstarx_jupyter.config import nstarx_home
from nstarx_jupyter.errors import ForbiddenError, InvalidInputError
from nstarx_jupyter.pipelines.sinks import FileSink, WebhookSink, sink_label

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from prometheus_client.core import Metric

    from nstarx_jupyter.pipelines.sinks import SinkFeed

from nstarx_jupyter.serving.sink_workers import (
    BACKOFF_CAP_S,
    BACKOFF_S,
    CLOSE_TIMEOUT_S,
    DEAD_LETTER_MAX_BYTES,
    DEPLOYMENT,
    REQUEST_EVENT,
    RESPONSE_EVENT,
    FileWorker,
    Record,
    SinkStats,
    SinkWorker,
    Tensors,
    WebhookWorker,
)

__all__ = [
    "BACKOFF_CAP_S",
    "BACKOFF_S",
    "DEAD_LETTER_MAX_BYTES",
    "REQUEST_EVENT",
    "RESPONSE_EVENT",
    "DeploymentFeed",
    "SinkHub",
    "SinkStats",
]

log = logging.getLogger(__name__)

# -- per deployment ------------------------------------------------------------------------------


class DeploymentFeed:
    """The sinks of one deployment, fed by `DataPlane.predict` with each answered request."""

    __slots__ = ("workers",)

    def __init__(self, workers: list[SinkWorker]) -> None:
        self.workers = workers

    def offer(
        self,
        version: str,
        variant: str | None,
        request_id: str,
        started: float,
        inputs: Tensors | None,
        outputs: Tensors,
    ) -> None:
        """Queue one answered request for every sink (a tuple each; about a microsecond)."""
        record: Record = (time.time(), DEPLOYMENT, version, variant, request_id,
                          (time.perf_counter() - started) * 1000.0, inputs, outputs)  # fmt: skip
        for worker in self.workers:
            worker.offer(record)


class SinkHub:
    """Every sink of one server: deployments' feeds, pipeline steps' sinks, and their counters."""

    def __init__(self, root: Path | None = None, denied: Iterable[Path] = ()) -> None:
        self.root = root
        """The folder file sinks and dead-letter files live under (None: `$NSTARX_HOME/sinks`)."""
        self.denied = tuple(Path(os.path.realpath(p)) for p in denied)
        """Folders no sink may write to, trusted or not (the security folder)."""
        self.feeds: dict[str, DeploymentFeed] = {}
        """Deployments with sinks (the request path looks its name up here)."""
        self._stats: dict[tuple[str, str], SinkStats] = {}
        self._owned: dict[str, list[SinkWorker]] = {}
        self._retired: list[SinkWorker] = []
        self._configs: dict[str, tuple[list[WebhookSink | FileSink], list[Path | None]]] = {}
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        """The sink root in use."""
        if self.root is None:
            return nstarx_home() / "sinks"
        return self.root

    # -- checks ----------------------------------------------------------------------------

    def check(
        self, owner: str, sinks: Sequence[WebhookSink | FileSink], *, trusted: bool = False
    ) -> list[Path | None]:
        """Each file sink's folder, refused when outside what the owner allowed.

        Raises:
            ForbiddenError: a folder outside the sink root (unless `trusted`), or in a denied one.
            InvalidInputError: Parquet without pyarrow.
        """
        folders: list[Path | None] = []
        for i, sink in enumerate(sinks):
            if not isinstance(sink, FileSink):
                folders.append(None)
                continue
            if sink.format == "parquet":
                try:
                    import pyarrow.parquet  # noqa: F401
                except ImportError:
                    why = "parquet needs pyarrow (pip install 'nstarx-jupyter[parquet]')"
                    raise InvalidInputError(f"sinks[{i}].format: {why}") from None
            folders.append(self._folder(f"sinks[{i}].path", sink.path or owner, trusted))
        return folders

    def _folder(self, where: str, text: str, trusted: bool) -> Path:
        root = Path(os.path.realpath(self.folder))
        refused = ForbiddenError(
            f"{where}: '{text}' is outside the sink folder {root}; name a folder inside it (a "
            "relative path), or ask the server's owner (`nstarx serve --sink-dir`)"
        )
        given = Path(text).expanduser() if trusted else Path(text)
        if given.is_absolute() and not trusted:
            raise refused
        lexical = Path(os.path.normpath(root / given))  # an absolute `given` replaces the root
        real = Path(os.path.realpath(lexical))  # symlinks inside that lead outside
        if not trusted and not (lexical.is_relative_to(root) and real.is_relative_to(root)):
            raise refused
        if any(path.is_relative_to(denied) for denied in self.denied for path in (lexical, real)):
            raise refused
        return real

    # -- deployments -----------------------------------------------------------------------

    def configure(
        self, owner: str, sinks: Sequence[WebhookSink | FileSink], *, trusted: bool = False
    ) -> None:
        """Start `owner`'s sinks (replacing its previous ones, which finish in the background)."""
        folders = self.check(owner, sinks, trusted=trusted)
        wanted = (list(sinks), folders)
        if self._configs.get(owner) == wanted:
            return  # a traffic change, say: the running sinks go on with their queues
        self._configs[owner] = wanted
        workers = self._start(owner, sinks, folders)
        with self._lock:
            old = self._owned.pop(owner, [])
            if not workers:
                self._configs.pop(owner, None)
            if workers:
                self._owned[owner] = workers
                self.feeds[owner] = DeploymentFeed(workers)
            else:
                self.feeds.pop(owner, None)
        self._retire(old)

    def remove(self, owner: str) -> None:
        """Stop `owner`'s sinks and its pipeline steps' (they deliver what they hold first)."""
        self.configure(owner, [])
        with self._lock:
            keys = [key for key in self._owned if key.startswith(f"{owner}/")]
            old = [worker for key in keys for worker in self._owned.pop(key)]
        self._retire(old)

    def _start(
        self, owner: str, sinks: Sequence[WebhookSink | FileSink], folders: Sequence[Path | None]
    ) -> list[SinkWorker]:
        workers: list[SinkWorker] = []
        taken: set[str] = set()
        root = self.folder
        for i, (sink, folder) in enumerate(zip(sinks, folders, strict=True)):
            label = sink_label(sink, i, taken)
            taken.add(label)
            stats = self._stats.setdefault((owner, label), SinkStats())
            if isinstance(sink, WebhookSink):
                worker: SinkWorker = WebhookWorker(owner, label, sink, stats, root)
            else:
                assert folder is not None  # noqa: S101 - `check` gave every file sink one
                worker = FileWorker(owner, label, sink, stats, root, folder=folder)
            worker.start()
            workers.append(worker)
        return workers

    def _retire(self, workers: list[SinkWorker]) -> None:
        for worker in workers:
            worker.stop()
        with self._lock:
            self._retired = [w for w in self._retired if w._thread.is_alive()] + workers

    def stats(self, owner: str) -> dict[str, dict[str, int]]:
        """Counters of each sink `owner` has had, by sink name."""
        return {label: s.figures() for (who, label), s in self._stats.items() if who == owner}

    # -- pipelines -------------------------------------------------------------------------

    def opener(self, owner: str, *, trusted: bool = False) -> PipelineSinks:
        """What a pipeline's `sink` steps open their sinks with (`Context.sinks`)."""
        return PipelineSinks(self, owner, trusted)

    # -- lifetime --------------------------------------------------------------------------

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop every sink and wait (up to `timeout_s` in all) while they deliver what they hold.

        Blocking: the server calls it in a thread at shutdown.
        """
        with self._lock:
            workers = [w for ws in self._owned.values() for w in ws] + self._retired
            self._owned.clear()
            self._configs.clear()
            self.feeds.clear()
            self._retired = []
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + timeout_s
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def collector(self) -> Collector:
        """Prometheus counters per sink, read from the plain counts when scraped."""
        return _SinkCollector(self)


class PipelineSinks:
    """`SinkOpener` of one served pipeline: its steps' sinks, named after the step."""

    def __init__(self, hub: SinkHub, owner: str, trusted: bool) -> None:
        self.hub, self.owner, self.trusted = hub, owner, trusted

    def open(self, node_id: str, sink: WebhookSink | FileSink) -> SinkFeed:
        """Start the sink of step `node_id` (replacing that step's previous one).

        Raises:
            ForbiddenError: its folder is outside the sink root and the pipeline is not trusted.
        """
        hub = self.hub
        label = sink.name or node_id.lower()[:40]
        (folder,) = hub.check(self.owner, [sink], trusted=self.trusted)
        (worker,) = hub._start(self.owner, [sink.model_copy(update={"name": label})], [folder])
        with hub._lock:
            old = hub._owned.pop(f"{self.owner}/{label}", [])
            hub._owned[f"{self.owner}/{label}"] = [worker]
        hub._retire(old)
        return worker


class _SinkCollector(Collector):
    def __init__(self, hub: SinkHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        families = {
            "sent": CounterMetricFamily("nstarx_sink_sent_records",
                                        "Records a sink delivered.", labels=["owner", "sink"]),
            "failed": CounterMetricFamily("nstarx_sink_failed_attempts",
                                          "Failed sends or writes of a sink (each retry counts).",
                                          labels=["owner", "sink"]),
            "dropped": CounterMetricFamily("nstarx_sink_dropped_records",
                                           "Records a sink dropped (queue or dead letter full).",
                                           labels=["owner", "sink"]),
            "dead_lettered": CounterMetricFamily("nstarx_sink_dead_lettered_records",
                                                 "Records a sink appended to its dead-letter "
                                                 "file.", labels=["owner", "sink"]),
        }  # fmt: skip
        for (owner, label), stats in list(self.hub._stats.items()):
            figures = stats.figures()
            for key, family in families.items():
                family.add_metric([owner, label], figures[key])
        yield from families.values()
        queued = GaugeMetricFamily("nstarx_sink_queued_records", "Records waiting in a sink.",
                                   labels=["owner", "sink"])  # fmt: skip
        with self.hub._lock:
            workers = [w for ws in self.hub._owned.values() for w in ws]
        for worker in workers:
            with contextlib.suppress(RuntimeError):
                queued.add_metric([worker.owner, worker.label], len(worker.queue))
        yield queued
