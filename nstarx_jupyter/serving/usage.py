"""Resource use per model version: CPU seconds, memory, threads and GPU, sampled off the path.

What the request path contributes is one float add per predict call (`ModelUsage.add`); the rest
is read here, when asked or every `interval_s` by a background task: the server's and each
worker process's resident memory and threads from `/proc` (Linux; zero elsewhere), the request
counters of the Prometheus registry, and GPUs through NVML where `nvidia-ml-py` is installed and
a GPU answers (none: `gpu` says why). Snapshots over the last hour give the figures of a window
(CPU and memory used, requests served), which the cost (`monitoring/cost.py`) and the per-minute
rollups (`serving/trends.py`) are computed from.

Memory of models that run in the server process cannot be told apart: the server's resident
memory is split evenly between the in-process versions loaded (an allocation rule, stated in
each answer as `shared`); an isolated model's is its worker process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nstarx_jupyter.serving.background import LoopTask
from nstarx_jupyter.serving.worker import ModelWorker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from prometheus_client.core import Metric

    from nstarx_jupyter.serving.repository import ModelRepository

__all__ = ["GpuProbe", "ProcessFigures", "Reading", "UsageMonitor", "WindowUsage"]

log = logging.getLogger(__name__)

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """A process's resident memory, threads and CPU seconds (user + system) from `/proc`."""

    rss_bytes: int = 0
    threads: int = 0
    cpu_s: float = 0.0


def process_figures(pid: int | None = None) -> ProcessFigures:
    """Read `/proc/PID/stat` (this process by default); zeros where it cannot be read."""
    try:
        text = Path(f"/proc/{pid or 'self'}/stat").read_text()
        fields = text.rsplit(")", 1)[1].split()
        # after the name: state is field 3, utime 14, stime 15, num_threads 20, rss 24 (man 5 proc)
        cpu_s = (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
        return ProcessFigures(int(fields[21]) * _PAGE_BYTES, int(fields[17]), cpu_s)
    except (OSError, ValueError, IndexError):
        return ProcessFigures()


class GpuProbe:
    """GPUs through NVML (`nvidia-ml-py`, imported if present); `reason` says why there are none."""

    def __init__(self, module: str = "pynvml") -> None:
        self.reason = ""
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            nvml = importlib.import_module(module)
        except ImportError:
            self.reason = "no GPU figures: no NVML (pip install 'nstarx-jupyter[gpu]')"
            return
        try:
            nvml.nvmlInit()
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i)
                             for i in range(nvml.nvmlDeviceGetCount())]  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - NVMLError and its many subclasses: no GPU here
            self.reason = f"no GPU: NVML did not start ({exc})"
            return
        if not self._handles:
            self.reason = "no GPU: NVML found none"
            return
        self._nvml = nvml

    @property
    def available(self) -> bool:
        """Whether at least one GPU answers."""
        return self._nvml is not None

    def devices(self) -> list[dict[str, float | int]]:
        """Per GPU: its index, utilisation (0-1) and memory used and total (bytes)."""
        out: list[dict[str, float | int]] = []
        for index, handle in enumerate(self._handles if self.available else []):
            with contextlib.suppress(Exception):
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                out.append({"index": index, "utilization": float(rates.gpu) / 100,
                            "memory_used_bytes": int(memory.used),
                            "memory_total_bytes": int(memory.total)})  # fmt: skip
        return out

    def memory_by_pid(self) -> dict[int, int]:
        """GPU memory (bytes) each process holds, over every GPU."""
        held: dict[int, int] = {}
        for handle in self._handles if self.available else []:
            with contextlib.suppress(Exception):
                for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    used = int(proc.usedGpuMemory or 0)
                    held[int(proc.pid)] = held.get(int(proc.pid), 0) + used
        return held


@dataclass(frozen=True, slots=True)
class Reading:
    """One model version's cumulative figures at one moment (memory: at that moment)."""

    cpu_s: float = 0.0
    calls: int = 0
    requests: int = 0
    """Requests the version answered, its shadow copies included."""
    shadow: int = 0
    """Of those, shadow copies (not the deployment's traffic)."""
    errors: int = 0
    rss_bytes: int = 0
    threads: int = 0
    gpu_memory_bytes: int = 0
    isolated: bool = False
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """What one model version used over a window: the inputs of a cost."""

    version: str
    covered_s: float
    """Seconds of the window the snapshots cover (less than asked right after a start)."""
    requests: int
    shadow: int
    errors: int
    cpu_s: float
    memory_gb_s: float
    """Resident memory integrated over the window, in GB x seconds (GB = 1e9 bytes)."""
    gpu_s: float = 0.0
    """GPU seconds (always 0 locally: no GPU time is attributed per model yet)."""


@dataclass(slots=True)
class _Snapshot:
    at: float
    readings: dict[tuple[str, str], Reading] = field(default_factory=dict)


class UsageMonitor:
    """Each model version's resource use, now and over windows of the last `keep_s` seconds."""

    def __init__(
        self,
        repository: ModelRepository,
        *,
        interval_s: float = 5.0,
        keep_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        gpu: GpuProbe | None = None,
    ) -> None:
        self.repository = repository
        self.metrics = repository.metrics
        self.interval_s = interval_s
        self.keep_s = keep_s
        self.clock = clock
        self.gpu = gpu or GpuProbe()
        self._snapshots: deque[_Snapshot] = deque(maxlen=int(keep_s / interval_s) + 2)
        self._background = LoopTask(self._run)

    # -- reading -------------------------------------------------------------------------------

    def _counts(self) -> dict[tuple[str, str], tuple[int, int, int]]:
        """(requests, shadow copies, errors) per model version, from the request counter."""
        counts: dict[tuple[str, str], tuple[int, int, int]] = {}
        for metric in self.metrics.requests.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                labels = sample.labels
                key = (labels["model"], labels["version"])
                n = int(sample.value)
                requests, shadow, errors = counts.get(key, (0, 0, 0))
                counts[key] = (requests + n, shadow + n * (labels["protocol"] == "shadow"),
                               errors + n * (labels["status"] != "ok"))  # fmt: skip
        return counts

    def read(self) -> dict[tuple[str, str], Reading]:
        """Every model version's figures now (loaded or not: a meter outlives its model)."""
        server = process_figures()
        gpu_memory = self.gpu.memory_by_pid() if self.gpu.available else {}
        workers: dict[tuple[str, str], int | None] = {}
        in_process = 0
        for entry in self.repository.entries():
            loaded = entry.loaded
            if loaded is None:
                continue
            key = (entry.settings.name, entry.settings.version)
            if isinstance(loaded.predictor, ModelWorker):
                workers[key] = loaded.predictor.pid
            else:
                workers[key] = None
                in_process += 1
        share = server.rss_bytes // max(1, in_process)
        own_gpu = gpu_memory.get(os.getpid(), 0) // max(1, in_process)
        counts = self._counts()
        readings: dict[tuple[str, str], Reading] = {}
        for key in {*self.metrics.usage, *counts, *workers}:
            if key[0] == "_unknown_":
                continue
            meter = self.metrics.usage.get(key)
            requests, shadow, errors = counts.get(key, (0, 0, 0))
            rss, threads, gpu, isolated, pid = 0, 0, 0, False, None
            if key in workers:
                pid = workers[key]
                isolated = pid is not None
                if pid is not None:
                    figures = process_figures(pid)
                    rss, threads, gpu = figures.rss_bytes, figures.threads, gpu_memory.get(pid, 0)
                else:
                    rss, threads, gpu = share, server.threads, own_gpu
            readings[key] = Reading(
                meter.cpu_s if meter else 0.0, meter.calls if meter else 0, requests, shadow,
                errors, rss, threads, gpu, isolated, pid,
            )  # fmt: skip
        return readings

    def resources(self, name: str) -> dict[str, Any]:
        """A deployment's resource figures now: per version, and the server process's."""
        server = process_figures()
        versions = []
        for (model, version), reading in sorted(self.read().items()):
            if model != name:
                continue
            versions.append({
                "version": version, "isolated": reading.isolated, "pid": reading.pid,
                "cpu_s": reading.cpu_s, "calls": reading.calls, "rss_bytes": reading.rss_bytes,
                "shared": not reading.isolated and reading.rss_bytes > 0,
                "threads": reading.threads,
                "gpu_memory_bytes": reading.gpu_memory_bytes if self.gpu.available else None,
            })  # fmt: skip
        return {
            "cpu_s": sum(v["cpu_s"] for v in versions),
            "rss_bytes": sum(v["rss_bytes"] for v in versions),
            "versions": versions,
            "server": {
                "pid": os.getpid(),
                "rss_bytes": server.rss_bytes,
                "threads": server.threads,
                "cpu_s": server.cpu_s,
            },
            "gpus": self.gpu.devices() if self.gpu.available else [],
            "gpu_note": self.gpu.reason or None,
        }

    # -- windows -------------------------------------------------------------------------------

    def sample(self) -> None:
        """Take a snapshot now (the background task does every `interval_s`)."""
        now = self.clock()
        while self._snapshots and self._snapshots[0].at < now - self.keep_s - self.interval_s:
            self._snapshots.popleft()
        self._snapshots.append(_Snapshot(now, self.read()))

    def window(self, name: str, window_s: float) -> list[WindowUsage]:
        """What each version of `name` used over the last `window_s` seconds (up to `keep_s`).

        From the oldest snapshot inside the window to now (read at this call); memory is the
        mean of the snapshots in between, times the seconds covered.
        """
        now = _Snapshot(self.clock(), self.read())
        since = now.at - window_s
        inside = [snap for snap in self._snapshots if since <= snap.at < now.at]
        base = inside[0] if inside else now
        covered_s = now.at - base.at
        out = []
        for key, last in sorted(now.readings.items()):
            if key[0] != name:
                continue
            first = base.readings.get(key, Reading())
            memory = [snap.readings.get(key, Reading()).rss_bytes for snap in inside[1:]]
            memory.append(last.rss_bytes)
            out.append(WindowUsage(
                key[1], covered_s, last.requests - first.requests, last.shadow - first.shadow,
                last.errors - first.errors, max(0.0, last.cpu_s - first.cpu_s),
                sum(memory) / len(memory) / 1e9 * covered_s,
            ))  # fmt: skip
        return out

    def start(self) -> None:
        """Snapshot now and every `interval_s` on the event loop (a few hundred µs each)."""
        self.sample()
        self._background.start()

    async def close(self) -> None:
        """Stop sampling."""
        await self._background.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.sample()
            except Exception:  # a task boundary: sampling must not stop for good
                log.exception("sampling resource use failed")

    # -- Prometheus ----------------------------------------------------------------------------

    def collector(self) -> ResourceCollector:
        """A Prometheus collector reading these figures at each scrape."""
        return ResourceCollector(self)


class ResourceCollector(Collector):
    """`nstarx_model_cpu_seconds_total`, `nstarx_model_rss_bytes`, threads, GPU, per version."""

    def __init__(self, monitor: UsageMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        """The series, read at scrape time."""
        labels = ["model", "version"]
        cpu = CounterMetricFamily("nstarx_model_cpu_seconds",
                                  "CPU seconds spent in a model version's predict calls.",
                                  labels=labels)  # fmt: skip
        calls = CounterMetricFamily("nstarx_model_predict_calls",
                                    "Predict calls (a batch is one) of a model version.",
                                    labels=labels)  # fmt: skip
        rss = GaugeMetricFamily("nstarx_model_rss_bytes",
                                "Resident memory of a loaded model version (its worker's, or its "
                                "even share of the server's).", labels=labels)  # fmt: skip
        threads = GaugeMetricFamily("nstarx_model_threads",
                                    "Threads of the process serving a loaded model version.",
                                    labels=labels)  # fmt: skip
        gpu = GaugeMetricFamily("nstarx_model_gpu_memory_bytes",
                                "GPU memory held for a loaded model version.",
                                labels=labels)  # fmt: skip
        for (model, version), reading in sorted(self.monitor.read().items()):
            cpu.add_metric([model, version], reading.cpu_s)
            calls.add_metric([model, version], reading.calls)
            if reading.rss_bytes:
                rss.add_metric([model, version], reading.rss_bytes)
                threads.add_metric([model, version], reading.threads)
                if self.monitor.gpu.available:
                    gpu.add_metric([model, version], reading.gpu_memory_bytes)
        server = process_figures()
        yield from (cpu, calls, rss, threads)
        yield GaugeMetricFamily("nstarx_server_rss_bytes", "Resident memory of the server.",
                                value=server.rss_bytes)  # fmt: skip
        yield GaugeMetricFamily("nstarx_server_threads", "Threads of the server process.",
                                value=server.threads)  # fmt: skip
        if self.monitor.gpu.available:
            yield gpu
            yield from _gpu_families(self.monitor.gpu.devices())


def _gpu_families(devices: list[dict[str, float | int]]) -> Iterator[Metric]:
    used = GaugeMetricFamily("nstarx_gpu_memory_used_bytes", "GPU memory in use.",
                             labels=["gpu"])  # fmt: skip
    busy = GaugeMetricFamily(
        "nstarx_gpu_utilization_ratio",
        "Share of the last sample period the GPU was busy.",
        labels=["gpu"],
    )
    for device in devices:
        used.add_metric([str(device["index"])], device["memory_used_bytes"])
        busy.add_metric([str(device["index"])], device["utilization"])
    yield used
    yield busy
