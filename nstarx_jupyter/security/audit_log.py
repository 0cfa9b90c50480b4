"""An append-only audit log: who called what, when and with which outcome; never a key or a payload.

Records are JSON lines in numbered segments (`audit-000001.jsonl`, ...) in a user-only folder. Each
record is one `write(2)` on a descriptor opened with `O_APPEND`, so it lands after every earlier
record: a `kill -9` of the server loses nothing already recorded. It may cut the one record being
written (Linux checks for a fatal signal between the pages a write copies, so a record across a
page boundary can stop at it). There is no fsync per record (the log is on the request hot path), so
a power loss may lose the last records or leave a torn last line, but never damages earlier ones.
Readers skip a torn line, and the next `AuditLog` ends it with a newline before writing anything
else, in the segment it tore (also when its first write starts a new segment), so a torn line never
joins a whole one. `flush_durable()` puts what is written on disk.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, NamedTuple

import orjson

from nstarx_jupyter.errors import InvalidInputError, require
from nstarx_jupyter.security.keys import KEY_PREFIX, key_prefix

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path
    from types import TracebackType

    import pandas as pd

__all__ = ["AuditLog", "AuditRecord", "AuditRow", "read_audit", "to_dataframe"]

AuditRow = dict[str, str | int | float]
"""One record as read back: the `AuditRecord` field names and their values."""

_log = logging.getLogger(__name__)
_SEGMENT = "audit-{:06d}.jsonl"
_MAX_KEY_ID = 16  # a key id is 8 hex; anything longer may be a whole key and is cut to its id
_MAX_TEXT = 256  # model names, request ids and the like come from the caller: cap what they cost
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class AuditRecord(NamedTuple):
    """One call or management action: a fixed set of fields, so no key or payload can get in.

    A named tuple, not a frozen dataclass: one is built per request, and a frozen dataclass
    costs four times as much to build.
    """

    ts: float
    """When, in epoch seconds."""
    key: str
    """The key id (`1a2b3c4d`), `"admin"` for the admin token, `"-"` when anonymous."""
    principal: str
    """The key's name, or `""`."""
    action: str
    """What: `"predict"`, `"infer"`, `"metadata"`, `"deploy"`, `"keys.create"`, ..."""
    transport: str
    """`"rest"`, `"v1"`, `"v2"`, `"grpc"` or `"control"`."""
    model: str
    """The model or deployment, or `""`."""
    version: str
    """The model version, or `""`."""
    status: int
    """The HTTP status (the caller maps gRPC codes to their HTTP equivalent)."""
    latency_ms: float
    """How long the call took."""
    request_id: str
    """The request id, or `""`."""
    client: str
    """The remote address, or `""`."""


# Field name -> the short key it has in the files.
_WIRE = {"ts": "ts", "key": "key", "principal": "who", "action": "act", "transport": "via",
         "model": "model", "version": "ver", "status": "status", "latency_ms": "ms",
         "request_id": "rid", "client": "client"}  # fmt: skip


def _key_id(value: str) -> str:
    """The id of a whole `nsx_<id>_<secret>` key, so a caller's slip never writes a secret."""
    if value.startswith(KEY_PREFIX):
        return key_prefix(value).removeprefix(KEY_PREFIX)[:_MAX_KEY_ID]
    return "?"


def _encode(rec: AuditRecord) -> bytes:
    """One JSON line for `rec`."""
    key = rec.key if len(rec.key) <= _MAX_KEY_ID else _key_id(rec.key)
    return orjson.dumps(
        {"ts": rec.ts, "key": key, "who": rec.principal[:_MAX_TEXT], "act": rec.action,
         "via": rec.transport, "model": rec.model[:_MAX_TEXT], "ver": rec.version[:_MAX_TEXT],
         "status": rec.status, "ms": rec.latency_ms, "rid": rec.request_id[:_MAX_TEXT],
         "client": rec.client[:_MAX_TEXT]},
        option=orjson.OPT_APPEND_NEWLINE,
    )  # fmt: skip


def _segments(folder: Path) -> list[tuple[int, Path]]:
    """The folder's segments as `(number, path)`, oldest first."""
    found = []
    for path in folder.glob("audit-*.jsonl"):
        number = path.name[6:-6]
        if number.isdigit():
            found.append((int(number), path))
    return sorted(found)


def _open_segment(path: Path) -> tuple[int, int]:
    """Open (or create) a segment for appending, user-only; return its descriptor and size."""
    fd = os.open(path, _FLAGS, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when the file existed with other permissions
        return fd, os.fstat(fd).st_size
    except OSError:
        os.close(fd)
        raise


def _ends_torn(path: Path, size: int) -> bool:
    """Whether a segment ends in half a line, the trace of a crash in the middle of a write."""
    if not size:
        return False
    with path.open("rb") as segment:
        segment.seek(size - 1)
        return segment.read(1) != b"\n"


def _fsync_path(path: Path) -> None:
    """Flush a file or folder to disk through a fresh descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditLog:
    """Appends `AuditRecord`s to segments in `folder`; safe to share between threads."""

    def __init__(
        self, folder: Path, *, segment_bytes: int = 64 * 2**20, keep_segments: int = 16
    ) -> None:
        if segment_bytes <= 0:
            raise InvalidInputError(f"segment_bytes must be positive, not {segment_bytes}")
        if keep_segments < 2:
            raise InvalidInputError(f"keep_segments must be 2 or more, not {keep_segments}")
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.keep_segments = keep_segments
        """Retention: past this many segments the oldest is deleted whole (1 GiB by default;
        about 5 million records). Records are never changed, only aged out a segment at a time."""
        # One lock for write, size and rotation: writing without it could race a rotation that
        # closes the descriptor, and a reused descriptor number would take the record elsewhere.
        self._lock = threading.Lock()
        self._unsynced: list[Path] = [folder]
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        existing = _segments(folder)
        self._number = existing[-1][0] if existing else 1
        self._fd, self._size = _open_segment(self.path)
        self._torn = _ends_torn(self.path, self._size)  # a crash mid-write

    @property
    def path(self) -> Path:
        """The segment being written."""
        return self.folder / _SEGMENT.format(self._number)

    def record(self, rec: AuditRecord) -> None:
        """Append `rec` as one line with one write; raises `OSError` when the disk refuses it."""
        self.record_many((rec,))

    def record_many(self, recs: Iterable[AuditRecord]) -> None:
        """Append `recs` with one write (whole lines: a crash cuts at most the last one)."""
        line = b"".join(map(_encode, recs))
        if not line:
            return
        with self._lock:
            if self._fd < 0:
                raise ValueError("the audit log is closed")
            if self._size and self._size + len(line) > self.segment_bytes:
                self._rotate()
            if self._torn:  # start on a fresh line after half a line left by a crash or an error
                line = b"\n" + line
            self._write(line)

    def flush_durable(self) -> None:
        """Put every record written so far on disk, for actions that must survive a power loss."""
        with self._lock:
            if self._fd < 0:
                raise ValueError("the audit log is closed")
            fd = os.dup(self._fd)  # fsync outside the lock: a rotation may close `self._fd`
            pending, self._unsynced = self._unsynced, []
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        # Segments closed by a rotation, then the folder (its entries for new segments).
        for path in dict.fromkeys(pending):
            _fsync_path(path)

    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        key: str | None = None,
        action: str | None = None,
        model: str | None = None,
        status: int | str | None = None,
        limit: int | None = None,
    ) -> list[AuditRow]:
        """`read_audit` on this log's folder."""
        return read_audit(self.folder, since=since, until=until, key=key, action=action,
                          model=model, status=status, limit=limit)  # fmt: skip

    def close(self) -> None:
        """Close the current segment; later `record` calls raise."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write(self, line: bytes) -> None:
        """Write all of `line` (the caller holds the lock); a failure marks the line torn."""
        written = 0
        try:
            while written < len(line):  # one write, unless the disk fills or a signal cuts it
                written += os.write(self._fd, line[written:])
        finally:
            self._size += written
            self._torn = 0 < written < len(line)

    def _rotate(self) -> None:
        """Start the next segment (the caller holds the lock)."""
        # Open the next segment before closing this one, so a failure leaves a usable log.
        fd, size = _open_segment(self.folder / _SEGMENT.format(self._number + 1))
        if self._torn:  # end the torn line where it is, or it would stay open in the middle
            with contextlib.suppress(OSError):  # a full disk: readers skip the open line anyway
                os.write(self._fd, b"\n")
        os.close(self._fd)
        self._unsynced[:0] = [self.path]
        self._unsynced.append(self.folder)
        self._number += 1
        self._fd, self._size, self._torn = fd, size, False
        for _, old in _segments(self.folder)[: -self.keep_segments]:
            with contextlib.suppress(FileNotFoundError):  # another writer aged it out first
                old.unlink()
            self._unsynced = [p for p in self._unsynced if p != old]


def read_audit(
    folder: Path,
    *,
    since: float | None = None,
    until: float | None = None,
    key: str | None = None,
    action: str | None = None,
    model: str | None = None,
    status: int | str | None = None,
    limit: int | None = None,
) -> list[AuditRow]:
    """The records in `folder` that match every filter given, oldest first.

    Args:
        folder: The audit log's folder.
        since: Keep records at or after this epoch time.
        until: Keep records before this epoch time.
        key: A key id (`1a2b3c4d` or `nsx_1a2b3c4d`), `"admin"` or `"-"`.
        action: An action such as `"predict"` or `"deploy"`.
        model: A model name.
        status: An HTTP status (`404`) or a class (`"4xx"`).
        limit: Keep only the newest `limit` matches.

    Torn or unreadable lines (a crash mid-write) are skipped, and their number logged.
    """
    if limit is not None and limit < 0:
        raise InvalidInputError(f"limit must be zero or more, not {limit}")
    wanted = _status_filter(status)
    key_id = None if key is None else key.removeprefix(KEY_PREFIX)
    kept: collections.deque[AuditRow] = collections.deque(maxlen=limit)
    skipped = 0
    for row in _rows(folder):
        if row is None:
            skipped += 1
        elif (
            (since is None or float(row["ts"]) >= since)
            and (until is None or float(row["ts"]) < until)
            and (key_id is None or row["key"] == key_id)
            and (action is None or row["action"] == action)
            and (model is None or row["model"] == model)
            and wanted(int(row["status"]))
        ):
            kept.append(row)
    if skipped:
        _log.warning("skipped %d torn or unreadable audit lines in %s", skipped, folder)
    return list(kept)


def _status_filter(status: int | str | None) -> Callable[[int], bool]:
    """A test on a record's status: any, an exact code, or a class like `"4xx"`."""
    if status is None:
        return lambda _: True
    if isinstance(status, int):
        return lambda code: code == status
    if len(status) == 3 and status[0] in "12345" and status[1:].lower() == "xx":
        hundreds = int(status[0])
        return lambda code: code // 100 == hundreds
    if status.isdigit():
        return lambda code: code == int(status)
    raise InvalidInputError(f"status must be a code like 404 or a class like '4xx', not {status!r}")


def _rows(folder: Path) -> Iterator[AuditRow | None]:
    """Every line of every segment in order, decoded, or None for a torn or unreadable one."""
    for _, path in _segments(folder):
        with path.open("rb") as segment:
            for line in segment:
                if line.endswith(b"\n"):
                    if line.strip():
                        yield _decode(line)
                else:
                    yield None  # no newline: a torn write, or one not finished yet


def _decode(line: bytes) -> AuditRow | None:
    """The record on `line`, or None when it is not one."""
    try:
        raw = orjson.loads(line)
        row: AuditRow = {name: raw[short] for name, short in _WIRE.items()}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(row["ts"], (int, float)) or not isinstance(row["status"], int):
        return None
    return row


def to_dataframe(records: list[AuditRow]) -> pd.DataFrame:
    """Records as a pandas DataFrame, `ts` turned into a UTC `time` column placed first."""
    pandas = require("pandas", "mlflow")  # the extra that installs pandas
    frame = pandas.DataFrame.from_records(records, columns=list(_WIRE))
    frame.insert(0, "time", pandas.to_datetime(frame.pop("ts").astype(float), unit="s", utc=True))
    return frame
