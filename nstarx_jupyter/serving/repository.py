"""The model repository: which models exist, loading and unloading them, and idle scale to zero."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nstarx_jupyter.batching import AdaptiveBatcher
from nstarx_jupyter.errors import (
    ModelLoadError,
    ModelNotFoundError,
    NstarxError,
    UnavailableError,
)
from nstarx_jupyter.serving._heap import freezes, settle_heap
from nstarx_jupyter.serving.loading import load_runtime
from nstarx_jupyter.serving.predictor import DEFAULT_TIMEOUT_S, ConcurrencyLimiter, Predictor
from nstarx_jupyter.serving.watchdog import Admission, Watchdog
from nstarx_jupyter.serving.worker import ModelWorker, WorkerRuntime, start_worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence
    from concurrent.futures import Executor

    from nstarx_jupyter.protocol.signature import ModelSignature
    from nstarx_jupyter.runtimes.base import Runtime
    from nstarx_jupyter.serving.metrics import ServerMetrics
    from nstarx_jupyter.serving.settings import ModelSettings

__all__ = ["LoadedModel", "ModelEntry", "ModelRepository", "ModelState"]

log = logging.getLogger(__name__)


AUTO_BATCH_ROWS = 32
"""Rows per batch of the default no-wait batching (models with independent rows)."""


class ModelState(enum.Enum):
    """A model version's lifecycle, with the repository extension's state names."""

    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    FAILED = "FAILED"
    """The last load failed (`ModelEntry.reason` says why): requests get 503 naming the reason
    instead of loading it again; an explicit load (`POST /v2/repository/models/NAME/load`, a
    redeploy) tries again."""


@dataclass(slots=True)
class LoadedModel:
    """A ready model and what serves it: predictor, optional batcher and concurrency limit."""

    settings: ModelSettings
    runtime: Runtime
    signature: ModelSignature
    predictor: Predictor | ModelWorker
    batcher: AdaptiveBatcher | None
    limiter: ConcurrencyLimiter | None
    watchdog: Watchdog
    """Answers 504 at the model's deadline (`timeout_s`, 60 s by default)."""
    admission: Admission | None
    """Without `container_concurrency`, the bound on requests in flight (`max_queue`)."""
    freezes_at_load: int = field(default_factory=freezes)
    """The heap's freeze count when it loaded (`_heap.freezes`)."""

    def is_maybe_frozen(self) -> bool:
        """Whether the heap was frozen since it loaded, so its cycles may be in the frozen heap."""
        return freezes() > self.freezes_at_load


@dataclass(slots=True)
class ModelEntry:
    """One model version known to the repository, loaded or not."""

    settings: ModelSettings
    state: ModelState = ModelState.UNAVAILABLE
    reason: str = ""
    loaded: LoadedModel | None = None
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while no request holds the model."""
    auto_load: bool = True
    """Load on the next request; False after an explicit unload until an explicit load."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ModelRepository:
    """Holds every model version; loads on start, on demand and after scale to zero."""

    def __init__(
        self,
        models: Iterable[ModelSettings],
        metrics: ServerMetrics,
        executor: Executor | None = None,
        threads: int = 1,
    ) -> None:
        self.metrics = metrics
        self._executor = executor
        self._threads = threads
        self._entries: dict[str, dict[str, ModelEntry]] = {}
        self._latest: dict[str, ModelEntry] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.failed: list[ModelEntry] = []
        """Models that failed to load at start-up."""
        for settings in models:
            self.add(settings)

    def add(self, settings: ModelSettings) -> ModelEntry:
        """Register a model version (not loaded yet); a name and version may appear once."""
        versions = self._entries.setdefault(settings.name, {})
        if settings.version in versions:
            raise ModelLoadError(f"model '{settings.name}' version '{settings.version}' twice")
        entry = versions[settings.version] = ModelEntry(settings)
        self._latest[settings.name] = versions[max(versions, key=_version_key)]
        return entry

    async def replace(self, settings: ModelSettings) -> ModelEntry:
        """Serve `settings` as the only version of its name, without dropping a request."""
        return (await self.replace_all(settings.name, [settings], settings.version))[0]

    async def replace_all(
        self,
        name: str,
        models: Sequence[ModelSettings],
        default: str,
        on_swap: Callable[[], None] | None = None,
    ) -> list[ModelEntry]:
        """Serve exactly `models` under `name` (`default` answers unversioned requests).

        A version whose settings did not change keeps its loaded model. New versions load first
        (unless they scale from zero); only then do new requests see them, in one step with
        `on_swap` (where the caller switches traffic), while requests already holding a version
        that goes away finish before it unloads. When a new version fails to load, nothing
        changes and the error is raised.
        """
        current = self._entries.get(name, {})
        entries = self._reuse(name, models, default)
        fresh = [entry for version, entry in entries.items() if current.get(version) is not entry]
        try:
            for entry in fresh:
                if entry.settings.min_replicas > 0:
                    await self._load(entry)
        except BaseException:
            for entry in fresh:
                await self._unload(entry)
            raise
        old = [entry for version, entry in self._entries.get(name, {}).items()
               if entries.get(version) is not entry]  # fmt: skip
        self._entries[name] = entries
        self._latest[name] = entries[default]
        if on_swap is not None:
            on_swap()
        for previous in old:
            await self._unload(previous)
        return list(entries.values())

    def _reuse(
        self, name: str, models: Sequence[ModelSettings], default: str
    ) -> dict[str, ModelEntry]:
        """Entries for `models`: the current one where its settings are unchanged, else new."""
        current = self._entries.get(name, {})
        entries: dict[str, ModelEntry] = {}
        for settings in models:
            if settings.name != name or settings.version in entries:
                raise ValueError(f"replace_all: {settings.name}/{settings.version} is unexpected")
            kept = current.get(settings.version)
            same = kept is not None and kept.settings == settings
            keep = same and kept is not None and kept.state is ModelState.READY
            entries[settings.version] = kept if keep and kept else ModelEntry(settings)
        if default not in entries:
            raise ValueError(f"replace_all: default version {default} is not among the models")
        return entries

    async def remove(self, name: str) -> None:
        """Stop serving every version of `name`, after the requests holding them finish."""
        old = self._versions(name)
        del self._entries[name], self._latest[name]
        for entry in old:
            await self._unload(entry)

    def names(self) -> list[str]:
        """Return every model name."""
        return list(self._entries)

    def entries(self) -> list[ModelEntry]:
        """Return every model version."""
        return [entry for versions in self._entries.values() for entry in versions.values()]

    def entry(self, name: str, version: str | None = None) -> ModelEntry:
        """Find a model version (the newest when `version` is None) or raise ModelNotFoundError."""
        if version is None:
            latest = self._latest.get(name)
            if latest is None:
                raise ModelNotFoundError(name)
            return latest
        versions = self._entries.get(name)
        if not versions:
            raise ModelNotFoundError(name)
        try:
            return versions[version]
        except KeyError:
            raise ModelNotFoundError(name, version) from None

    def versions(self, name: str) -> list[str]:
        """Return a model's versions, oldest first."""
        self.entry(name)
        return sorted(self._entries[name], key=_version_key)

    @contextlib.asynccontextmanager
    async def use(self, name: str, version: str | None = None) -> AsyncIterator[LoadedModel]:
        """Hold a ready model for one request, loading it first when scaled to zero.

        The caller waits through a cold start instead of getting an error; the model is not
        unloaded while the request holds it.
        """
        entry = self.entry(name, version)
        entry.in_flight += 1
        entry.idle.clear()
        try:
            loaded = entry.loaded if entry.state is ModelState.READY else None
            if loaded is None:
                try:
                    loaded = await self._load(entry)
                except ModelLoadError as exc:  # the server's model, not the caller's mistake
                    raise _failed(entry) from exc
            yield loaded
        finally:
            entry.in_flight -= 1
            entry.last_used = time.monotonic()
            if not entry.in_flight:
                entry.idle.set()

    async def load(self, name: str) -> None:
        """Load (or reload) every version of a model; a failed one is tried again."""
        for entry in self._versions(name):
            entry.auto_load = True
            await self._load(entry, retry=True)

    async def unload(self, name: str) -> None:
        """Unload every version of a model after its requests finish; it stays registered."""
        for entry in self._versions(name):
            entry.auto_load = False
            await self._unload(entry)

    async def start(self) -> list[ModelEntry]:
        """Load every model whose `min_replicas` is 1, start the idle reaper, return failures.

        A model that does not load stays registered as `FAILED` with its reason (status,
        metadata and readiness say so) while the others serve.
        """
        failed = []
        for entry in self.entries():
            if entry.settings.min_replicas > 0:
                try:
                    await self._load(entry, settle=False)
                except NstarxError as exc:
                    settings = entry.settings
                    log.error("model %s version %s FAILED to load, serving the others without it: "
                              "%s", settings.name, settings.version, exc.message)  # fmt: skip
                    failed.append(entry)
        if any(entry.loaded is not None for entry in self.entries()):
            settle_heap(unfreeze=False)  # once for all
        self._reaper = asyncio.create_task(self._reap_idle())
        self.failed = failed
        return failed

    async def close(self) -> None:
        """Stop the reaper and unload everything."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        unloaded = [await self._unload(entry, settle=False) for entry in self.entries()]
        models = [loaded for loaded in unloaded if loaded is not None]
        if models:
            settle_heap(unfreeze=any(loaded.is_maybe_frozen() for loaded in models))

    def _versions(self, name: str) -> list[ModelEntry]:
        self.entry(name)
        return list(self._entries[name].values())

    async def _load(
        self, entry: ModelEntry, *, retry: bool = False, settle: bool = True
    ) -> LoadedModel:
        async with entry.lock:
            if entry.loaded is not None:
                return entry.loaded
            if not entry.auto_load:
                name = entry.settings.name
                load = f"POST /v2/repository/models/{name}/load"
                raise UnavailableError(f"model '{name}' is unloaded; load it with {load}")
            if entry.state is ModelState.FAILED and not retry:
                raise _failed(entry)
            entry.state, entry.reason = ModelState.LOADING, ""
            started = time.perf_counter()
            try:
                if entry.settings.isolation == "process":
                    timeout_s = entry.settings.timeout_s or DEFAULT_TIMEOUT_S
                    runtime, signature = await start_worker(entry.settings, timeout_s)
                else:
                    runtime, signature = await asyncio.get_running_loop().run_in_executor(
                        self._executor, load_runtime, entry.settings
                    )
            except Exception as exc:
                message = exc.message if isinstance(exc, NstarxError) else repr(exc)
                entry.state, entry.reason = ModelState.FAILED, message
                raise
            settings = entry.settings
            self.metrics.load_seconds.labels(settings.name, settings.version).observe(
                time.perf_counter() - started
            )
            entry.loaded = self._serve(settings, runtime, signature)
            entry.state = ModelState.READY
            entry.last_used = time.monotonic()
            self._count_loaded()
            if settle:
                settle_heap(unfreeze=False)
            log.info("loaded model %s version %s", settings.name, settings.version)
            return entry.loaded

    def _serve(
        self, settings: ModelSettings, runtime: Runtime, signature: ModelSignature
    ) -> LoadedModel:
        timeout_s = settings.timeout_s or DEFAULT_TIMEOUT_S
        predictor: Predictor | ModelWorker
        usage = self.metrics.usage_of(settings.name, settings.version)
        if isinstance(runtime, WorkerRuntime):  # process isolation: its worker predicts
            predictor = runtime.worker
            predictor.usage = usage
        else:
            # a pool of its own: a thread stuck in one model cannot starve another
            predictor = Predictor(runtime, None, self._threads, timeout_s=timeout_s, usage=usage)
        depth = self.metrics.queue_depth.labels(settings.name, settings.version)
        batcher = None
        rows, wait_ms = settings.max_batch_size, settings.max_latency_ms
        if rows is None:  # the runtime decides: no-wait batching when rows are independent
            rows, wait_ms = (AUTO_BATCH_ROWS, 0.0) if runtime.rows_independent() else (0, 0.0)
        if rows > 1:
            sizes = self.metrics.batch_size.labels(settings.name, settings.version)
            batcher = AdaptiveBatcher(
                predictor, max_batch_size=rows, max_latency_ms=wait_ms, on_batch=sizes.observe
            )
        limiter, admission = None, None
        if settings.container_concurrency > 0:
            limiter = ConcurrencyLimiter(
                settings.container_concurrency, settings.max_queue, depth.set
            )
        else:  # no limit asked for: still a bound, so a stuck model sheds instead of piling up
            admission = Admission(max(1, settings.max_queue))
        return LoadedModel(settings, runtime, signature, predictor, batcher, limiter,
                           Watchdog(timeout_s), admission)  # fmt: skip

    async def _unload(self, entry: ModelEntry, *, settle: bool = True) -> LoadedModel | None:
        """Unload `entry` if it is loaded; return what was loaded."""
        async with entry.lock:
            loaded = entry.loaded
            if loaded is None:
                return None
            entry.state = ModelState.UNLOADING
            await _drain(entry)
            entry.loaded = None
            if loaded.batcher is not None:
                await loaded.batcher.close()
            loaded.predictor.close()
            loaded.watchdog.close()
            await asyncio.get_running_loop().run_in_executor(self._executor, loaded.runtime.unload)
            entry.state = ModelState.UNAVAILABLE
            self._count_loaded()
            if settle:
                settle_heap(unfreeze=loaded.is_maybe_frozen())
            log.info("unloaded model %s version %s", entry.settings.name, entry.settings.version)
            return loaded

    def _count_loaded(self) -> None:
        """Report how many models are loaded."""
        self.metrics.models_loaded.set(sum(e.loaded is not None for e in self.entries()))

    async def _reap_idle(self) -> None:
        while True:
            idle = [e for e in self.entries() if e.settings.min_replicas == 0 and e.loaded]
            now = time.monotonic()
            for entry in idle:
                quiet = entry.in_flight == 0 and not entry.lock.locked()
                if quiet and now - entry.last_used >= entry.settings.idle_timeout_s:
                    await self._unload(entry)
            timeouts = [e.settings.idle_timeout_s for e in self.entries()]
            await asyncio.sleep(min([1.0, *(t / 4 for t in timeouts)]))


def _failed(entry: ModelEntry) -> UnavailableError:
    """The 503 a request to a `FAILED` model gets: the reason, and how to try again."""
    name, version = entry.settings.name, entry.settings.version
    return UnavailableError(
        f"model '{name}' version {version} FAILED to load: {entry.reason} (fix it, then load "
        f"it with POST /v2/repository/models/{name}/load)"
    )


async def _drain(entry: ModelEntry, limit_s: float = 30.0) -> None:
    if entry.in_flight:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                await entry.idle.wait()


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)
