"""Per-deployment rollups per minute, kept 30 days in SQLite (stdlib `sqlite3`, WAL).

One row per deployment and minute: requests, errors, p50/p95/p99 latency, CPU seconds, mean
resident memory, cost, and a `drift` column left NULL here (drift detection fills it). Every
write is one transaction (all the rows of a minute, or none after a crash) from one writer, a
thread of its own, never the event loop; readers open their own connections (WAL lets them read
while it writes). Rows older than `keep_s` are deleted as the writer goes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

__all__ = ["BUCKET_S", "KEEP_S", "Rollup", "TrendStore"]

BUCKET_S = 60
"""Seconds per rollup row."""
KEEP_S = 30 * 86400
"""Rollups older than this are pruned: 30 days."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollups (
    name TEXT NOT NULL,
    minute INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    p50_ms REAL,
    p95_ms REAL,
    p99_ms REAL,
    cpu_s REAL NOT NULL,
    rss_bytes INTEGER NOT NULL,
    cost REAL NOT NULL,
    drift REAL,
    PRIMARY KEY (name, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_minute ON rollups (minute);
"""


@dataclass(frozen=True, slots=True)
class Rollup:
    """One deployment's minute."""

    name: str
    minute: int
    """The minute's start, epoch seconds (a multiple of `BUCKET_S`)."""
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    cpu_s: float
    rss_bytes: int
    cost: float
    drift: float | None = None
    """The deployment's drift score for the minute (written by drift detection; NULL here)."""

    def to_json(self) -> dict[str, Any]:
        """The row as JSON, `t` for its minute."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        doc["t"] = doc.pop("minute")
        return doc


_COLUMNS = "name, minute, requests, errors, p50_ms, p95_ms, p99_ms, cpu_s, rss_bytes, cost, drift"
"""The columns in `Rollup`'s field order (a test checks)."""
_UPSERT = (
    "INSERT INTO rollups (name, minute, requests, errors, p50_ms, p95_ms, p99_ms, cpu_s, "
    "rss_bytes, cost, drift) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (name, minute) DO UPDATE SET requests = excluded.requests, "
    "errors = excluded.errors, p50_ms = excluded.p50_ms, p95_ms = excluded.p95_ms, "
    "p99_ms = excluded.p99_ms, cpu_s = excluded.cpu_s, rss_bytes = excluded.rss_bytes, "
    "cost = excluded.cost, drift = COALESCE(excluded.drift, rollups.drift)"
)
_MERGE = (
    "INSERT INTO rollups (name, minute, requests, errors, p50_ms, p95_ms, p99_ms, cpu_s, "
    "rss_bytes, cost, drift) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (name, minute) DO UPDATE SET requests = rollups.requests + excluded.requests, "
    "errors = rollups.errors + excluded.errors, "
    "p50_ms = CASE WHEN excluded.requests > 0 THEN excluded.p50_ms ELSE rollups.p50_ms END, "
    "p95_ms = CASE WHEN excluded.requests > 0 THEN excluded.p95_ms ELSE rollups.p95_ms END, "
    "p99_ms = CASE WHEN excluded.requests > 0 THEN excluded.p99_ms ELSE rollups.p99_ms END, "
    "cpu_s = rollups.cpu_s + excluded.cpu_s, rss_bytes = MAX(rollups.rss_bytes, "
    "excluded.rss_bytes), cost = rollups.cost + excluded.cost, "
    "drift = COALESCE(excluded.drift, rollups.drift)"
)
"""A minute that an earlier server process wrote part of (it stopped, this one started in
the same minute): counts, CPU and cost add up; the percentiles are this process's (they cannot
be merged) unless it saw no request."""
_SELECT = (
    "SELECT name, minute, requests, errors, p50_ms, p95_ms, p99_ms, cpu_s, rss_bytes, cost, "
    "drift FROM rollups WHERE name = ? AND minute >= ? AND minute <= ? ORDER BY minute"
)


class TrendStore:
    """The rollups file: `write` from the one writer thread, `read` from any thread."""

    def __init__(
        self, path: Path, *, keep_s: float = KEEP_S, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.keep_s = keep_s
        self.clock = clock
        self._writer: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses no committed row
        connection.executescript(_SCHEMA)
        return connection

    def write(self, rows: Iterable[Rollup], *, merge: bool = False) -> int:
        """Store `rows` (replacing the same deployment's minute) and prune, in one transaction.

        With `merge`, a row already stored for the minute is added to instead (`_MERGE`).
        Returns how many old rows were pruned.
        """
        with self._lock:
            if self._writer is None:
                self._writer = self._connect()
            connection = self._writer
            with connection:  # BEGIN ... COMMIT, or ROLLBACK on any error: all rows or none
                connection.executemany(_MERGE if merge else _UPSERT,
                                       [astuple(row) for row in rows])  # fmt: skip
                pruned = connection.execute(
                    "DELETE FROM rollups WHERE minute < ?", (self.clock() - self.keep_s,)
                ).rowcount
        return int(pruned)

    def read(self, name: str, since: float, until: float | None = None) -> list[Rollup]:
        """`name`'s rows from epoch second `since` (to `until`), oldest first."""
        if not self.path.exists():
            return []
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            found = connection.execute(
                _SELECT, (name, since, until if until is not None else 1e18)
            ).fetchall()
        except sqlite3.OperationalError:  # no table yet: nothing written
            return []
        finally:
            connection.close()
        return [Rollup(*row) for row in found]

    def close(self) -> None:
        """Close the writer's connection."""
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
