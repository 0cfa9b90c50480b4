"""Process isolation: a model loaded and predicting in a worker process of its own.

The server starts `python -m nstarx_jupyter.serving.worker`, sends it the model's settings, and
then one request at a time over the child's stdin and stdout (the child moves both off fds 0 and
1, so a model that prints cannot corrupt the channel). Every message both ways is a frame: a
4-byte length, a JSON header, then the raw bytes of each tensor, which the header describes by
name, NumPy dtype and shape. Nothing from the worker is unpickled: the server rebuilds arrays
with `np.frombuffer` and refuses object, structured and unknown dtypes, so a compromised model
process cannot run code in the server.

The worker is restarted when it dies (a segfault, `os.abort()`), when a call overruns the
model's deadline (killed at it: the answer is 504) and when its resident memory passes
`max_rss_mb` (a leaking model; checked after each call, on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import numpy as np

from nstarx_jupyter.errors import (
    DeadlineExceededError,
    ErrorKind,
    InvalidInputError,
    ModelError,
    ModelLoadError,
    NstarxError,
    UnavailableError,
)
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors
from nstarx_jupyter.serving.loading import load_runtime
from nstarx_jupyter.serving.settings import ModelSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nstarx_jupyter.serving.metrics import ModelUsage

__all__ = ["ModelWorker", "WorkerRuntime", "start_worker"]

log = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 300.0
"""Longest a worker may take to start and load its model."""
MAX_HEADER_BYTES = 1 << 20
"""A frame header longer than this is refused (the worker is not trusted)."""
MAX_FRAME_BYTES = 1 << 31
"""Tensor bytes one frame may declare; more is refused before anything is read."""
_LENGTH = struct.Struct(">I")
_SAFE_KINDS = frozenset("biufcSU")
"""NumPy dtype kinds rebuilt from raw bytes: numbers, booleans and fixed-width strings."""


# ---- frames (both sides) ---------------------------------------------------------------------


def encode_frame(header: dict[str, Any], tensors: Tensors | None = None) -> bytes:
    """One message: length, JSON header (with a `tensors` list describing them), raw bytes."""
    arrays = [(name, _plain(array)) for name, array in (tensors or {}).items()]
    described = [{"name": name, "dtype": array.dtype.str, "shape": list(array.shape)}
                 for name, array in arrays]  # fmt: skip
    header = {**header, "tensors": described}
    text = json.dumps(header).encode()
    return b"".join([_LENGTH.pack(len(text)), text, *(array.tobytes() for _, array in arrays)])


def _plain(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The array with a dtype that travels as raw bytes (object arrays of text become str)."""
    array = np.ascontiguousarray(array)
    if array.dtype.kind == "O":
        array = array.astype(str)
    return array


_Spec = tuple[str, np.dtype[Any], tuple[int, ...]]


def parse_header(data: bytes) -> tuple[dict[str, Any], list[_Spec]]:
    """Read a frame header; check every tensor's dtype and shape before its bytes are read."""
    header = json.loads(data)
    if not isinstance(header, dict) or not isinstance(header.get("tensors", []), list):
        raise ValueError("a frame header is a JSON object with a tensors list")
    try:
        specs = [_spec(item) for item in header.get("tensors", [])]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a malformed tensor in a frame header: {exc!r}") from None
    total = sum(_nbytes(dtype, shape) for _, dtype, shape in specs)
    if total > MAX_FRAME_BYTES:
        raise ValueError(f"a frame declares {total} bytes of tensors")
    return header, specs


def _spec(item: dict[str, Any]) -> _Spec:
    dtype = np.dtype(str(item["dtype"]))
    if dtype.kind not in _SAFE_KINDS or dtype.hasobject or dtype.fields is not None:
        raise ValueError(f"dtype {dtype} does not travel as raw bytes")
    shape = tuple(int(n) for n in item["shape"])
    if any(n < 0 for n in shape):
        raise ValueError("a negative dimension in a frame header")
    return str(item["name"]), dtype, shape


def _nbytes(dtype: np.dtype[Any], shape: tuple[int, ...]) -> int:
    return math.prod(shape) * dtype.itemsize


def _array(data: bytes, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    return np.frombuffer(bytearray(data), dtype=dtype).reshape(shape)


# ---- the server's side -----------------------------------------------------------------------


class ModelWorker:
    """A model's worker process seen from the server: start, predict, restart, stop.

    Calls are serialized (one worker, one call at a time); callers wait on a lock, bounded by
    the model's admission limit and deadline like any model's.
    """

    def __init__(self, settings: ModelSettings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.max_rss_bytes = (settings.max_rss_mb or 0) * 1024 * 1024
        self.signature: ModelSignature | None = None
        self.rows_independent = False
        self.restarts = 0
        """How many times the worker was replaced (died, overran, outgrew its memory cap)."""
        self.usage: ModelUsage | None = None
        """Where the CPU seconds the worker reports for each call are added."""
        self._process: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The worker's process id (None while it restarts)."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the worker and load the model in it; raise `ModelLoadError` when it cannot."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nstarx_jupyter.serving.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )  # fmt: skip
        try:
            _pipe(process).write(encode_frame({"settings": self.settings.model_dump(mode="json")}))
            async with asyncio.timeout(LOAD_TIMEOUT_S):
                await _pipe(process).drain()
                header, _ = await _read_frame(process)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            await _kill(process)
            code = process.returncode
            raise ModelLoadError(
                f"model '{self.settings.name}': its worker process ended while loading "
                f"(exit code {code}): {type(exc).__name__}"
            ) from None
        if not header.get("ok"):
            await _kill(process)
            raise ModelLoadError(str(header.get("message", "the worker could not load the model")))
        self.signature = _signature(header["signature"])
        self.rows_independent = bool(header.get("rows_independent"))
        self._process = process

    async def __call__(self, inputs: Tensors, outputs: tuple[str, ...] | None) -> Tensors:
        """Predict in the worker; a worker that dies or overruns is replaced."""
        async with self._lock:
            process = await self._ready()
            try:
                async with asyncio.timeout(self.timeout_s):
                    _pipe(process).write(encode_frame({"outputs": outputs}, inputs))
                    await _pipe(process).drain()
                    header, tensors = await _read_frame(process)
            except TimeoutError:
                self._replace(process, "it overran its deadline")
                raise DeadlineExceededError(
                    f"model '{self.settings.name}' did not answer within {self.timeout_s:g} s"
                ) from None
            except asyncio.CancelledError:  # the request's deadline: its answer would be stale
                self._replace(process, "its request was cancelled mid-call")
                raise
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self._replace(process, f"it died ({type(exc).__name__})")
                raise ModelError(
                    f"model '{self.settings.name}' failed: its worker process died; restarting"
                ) from None
            if self.max_rss_bytes and _rss_bytes(process.pid) > self.max_rss_bytes:
                self._replace(process, f"it passed its memory cap of {self.settings.max_rss_mb} MB")
        if self.usage is not None:
            self.usage.add(_number(header.get("cpu_s")))
        if not header.get("ok"):
            raise _error(header)
        return tensors

    def close(self) -> None:
        """Stop the worker (the model is unloading)."""
        self._closed = True
        if self._starting is not None:
            self._starting.cancel()
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process = None

    async def _ready(self) -> asyncio.subprocess.Process:
        if self._process is not None and self._process.returncode is not None:
            self._replace(self._process, f"it exited (code {self._process.returncode})")
        if self._process is None and self._starting is None and not self._closed:
            self._starting = asyncio.get_running_loop().create_task(self._restart())
        if self._starting is not None:
            # shielded: a request cancelled at its deadline must not cancel the restart
            await asyncio.shield(self._starting)
        if self._process is None:
            raise UnavailableError(f"model '{self.settings.name}': its worker is not running", 1)
        return self._process

    def _replace(self, process: asyncio.subprocess.Process, why: str) -> None:
        """Kill the worker now and start a new one in the background."""
        log.warning("model %s: replacing its worker process (pid %s): %s",
                    self.settings.name, process.pid, why)  # fmt: skip
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        if process.stdin is not None:
            process.stdin.close()
        self._process = None
        if not self._closed:
            self._starting = asyncio.get_running_loop().create_task(self._restart(process))

    async def _restart(self, old: asyncio.subprocess.Process | None = None) -> None:
        try:
            if old is not None:
                await old.wait()  # reaped, not left a zombie
            self.restarts += 1
            await self.start()
        except NstarxError as exc:
            log.error("model %s: its worker could not restart: %s", self.settings.name,
                      exc.message)  # fmt: skip
        finally:
            self._starting = None


class WorkerRuntime(Runtime):
    """What the repository holds for a process-isolated model: the worker's signature."""

    runtime_name: ClassVar[str] = "worker"

    def __init__(self, worker: ModelWorker) -> None:
        super().__init__(None)
        self.worker = worker
        self.ready = True

    def load(self) -> None:
        """Loaded by the worker already."""

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Not called: the server awaits `ModelWorker` instead."""
        raise ModelError("a process-isolated model predicts through its worker")

    def metadata(self) -> ModelSignature:
        """The signature the worker reported."""
        if self.worker.signature is None:
            raise ModelError("the model's worker has not started")
        return self.worker.signature

    def rows_independent(self) -> bool:
        """What the runtime in the worker said."""
        return self.worker.rows_independent

    def unload(self) -> None:
        """Stopped by `ModelWorker.close` on the event loop."""


async def start_worker(settings: ModelSettings, timeout_s: float) -> tuple[Runtime, ModelSignature]:
    """Start a worker process for `settings`; returns its stand-in runtime and signature."""
    worker = ModelWorker(settings, timeout_s)
    await worker.start()
    runtime = WorkerRuntime(worker)
    return runtime, runtime.metadata()


async def _read_frame(process: asyncio.subprocess.Process) -> tuple[dict[str, Any], Tensors]:
    stdout = process.stdout
    if stdout is None:
        raise OSError("the worker has no stdout pipe")
    (length,) = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"a frame header of {length} bytes")
    header, specs = parse_header(await stdout.readexactly(length))
    tensors = {}
    for name, dtype, shape in specs:
        tensors[name] = _array(await stdout.readexactly(_nbytes(dtype, shape)), dtype, shape)
    return header, tensors


def _pipe(process: asyncio.subprocess.Process) -> asyncio.StreamWriter:
    if process.stdin is None:
        raise OSError("the worker has no stdin pipe")
    return process.stdin


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def _error(header: dict[str, Any]) -> NstarxError:
    message = str(header.get("message", "the model failed"))
    if header.get("kind") == ErrorKind.INVALID_INPUT.value:
        return InvalidInputError(message)
    return ModelError(message)


def _signature(doc: dict[str, Any]) -> ModelSignature:
    def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(str(item["name"]), str(item["datatype"]), tuple(map(int, item["shape"])))
            for item in items
        )

    names, labels = doc.get("feature_names"), doc.get("class_labels")
    return ModelSignature(
        platform=str(doc["platform"]),
        inputs=specs(doc["inputs"]),
        outputs=specs(doc["outputs"]),
        default_outputs=tuple(str(name) for name in doc.get("default_outputs", ())),
        feature_names=tuple(str(name) for name in names) if names is not None else None,
        class_labels=tuple(labels) if labels is not None else None,
    )


def _number(value: object) -> float:
    """A finite, non-negative number from the worker, else 0 (the worker is not trusted)."""
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return 0.0


def _rss_bytes(pid: int) -> int:
    """Resident memory of `pid` (Linux /proc; 0 where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# ---- the worker's side -----------------------------------------------------------------------


def _signature_json(signature: ModelSignature) -> dict[str, Any]:
    labels = signature.class_labels
    return {
        "platform": signature.platform,
        "inputs": [spec.to_json() for spec in signature.inputs],
        "outputs": [spec.to_json() for spec in signature.outputs],
        "default_outputs": list(signature.default_outputs),
        "feature_names": list(signature.feature_names) if signature.feature_names else None,
        "class_labels": np.asarray(labels).tolist() if labels is not None else None,
    }


def _read_blocking(stream: BinaryIO) -> tuple[dict[str, Any], Tensors] | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    header, specs = parse_header(stream.read(length))
    tensors = {name: _array(stream.read(_nbytes(dtype, shape)), dtype, shape)
               for name, dtype, shape in specs}  # fmt: skip
    return header, tensors


def _answer(runtime: Runtime, header: dict[str, Any], tensors: Tensors) -> bytes:
    outputs = header.get("outputs")
    # The process's CPU (every thread of it, a BLAS pool's too) that this call used.
    started = time.process_time()
    try:
        result = runtime.predict(tensors, tuple(outputs) if outputs else None)
    except NstarxError as exc:
        return encode_frame({"ok": False, "kind": exc.kind.value, "message": exc.message,
                             "cpu_s": time.process_time() - started})  # fmt: skip
    except Exception as exc:
        log.exception("model predict failed")
        return encode_frame({"ok": False, "kind": "INTERNAL",
                             "message": f"the model failed: {type(exc).__name__}",
                             "cpu_s": time.process_time() - started})  # fmt: skip
    return encode_frame({"ok": True, "cpu_s": time.process_time() - started}, result)


def main() -> None:
    """The worker: load the model named by the first frame, then answer frames until EOF."""
    # The channel keeps its own descriptors; fds 0 and 1 become /dev/null and stderr, so a
    # model that reads stdin or prints cannot corrupt it.
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="worker %(process)d: %(message)s")
    first = _read_blocking(requests)
    if first is None:
        return
    try:
        settings = ModelSettings.build(**first[0]["settings"])
        runtime, signature = load_runtime(settings)
        hello = {"ok": True, "signature": _signature_json(signature),
                 "rows_independent": runtime.rows_independent()}  # fmt: skip
    except NstarxError as exc:
        hello = {"ok": False, "message": exc.message}
    answers.write(encode_frame(hello))
    answers.flush()
    if not hello["ok"]:
        return
    while (frame := _read_blocking(requests)) is not None:
        answers.write(_answer(runtime, *frame))
        answers.flush()


if __name__ == "__main__":
    main()
