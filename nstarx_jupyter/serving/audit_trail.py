"""The server's audit trail: one record per call, batched on the event loop into the audit log."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from nstarx_jupyter.security.audit_log import AuditRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.security.audit_log import AuditLog

__all__ = ["AUDIT_BATCH", "AUDIT_FLUSH_S", "CallAudit"]

log = logging.getLogger(__name__)

AUDIT_FLUSH_S = 0.005
"""How long audit records of the event loop wait to go out together (one write per batch)."""
AUDIT_BATCH = 256
"""Or how many: a full batch is written at once."""


class CallAudit:
    """Every call and management action of one server, appended to `log` (None: not kept)."""

    def __init__(self, log: AuditLog | None = None) -> None:
        self.log = log
        self._pending: list[AuditRecord] = []

    def call(
        self,
        principal: Principal,
        action: str,
        transport: str,
        model: str,
        version: str,
        status: int,
        started: float,
        request_id: str = "",
        client: str = "",
    ) -> None:
        """Append one call to the audit log (`started`: its `time.perf_counter()` start).

        Called on the event loop (every transport records there): records gather for
        `AUDIT_FLUSH_S` (or `AUDIT_BATCH` records) and go out in one write, so a `kill -9` may
        lose the last few milliseconds of records, never corrupt one.
        """
        if self.log is None:
            return
        latency_ms = (time.perf_counter() - started) * 1000.0
        record = AuditRecord(time.time(), principal.key, principal.name, action, transport,
                             model, version, status, round(latency_ms, 3), request_id,
                             client)  # fmt: skip
        pending = self._pending
        pending.append(record)
        if len(pending) == 1:
            asyncio.get_running_loop().call_later(AUDIT_FLUSH_S, self.flush)
        elif len(pending) >= AUDIT_BATCH:
            self.flush()

    def flush(self, *, durable: bool = False) -> None:
        """Write the records queued on the event loop; `durable` also puts them on disk."""
        pending, self._pending = self._pending, []
        self._write(pending)
        if durable and self.log is not None:
            self.log.flush_durable()

    def close(self) -> None:
        """Write what is queued and close the log."""
        self.flush()
        if self.log is not None:
            self.log.close()

    def _write(self, records: Sequence[AuditRecord]) -> None:
        if self.log is None or not records:
            return
        try:
            self.log.record_many(records)
        except (OSError, ValueError) as exc:  # a full disk, or a call ending after shut-down
            log.error("the audit log refused %d records: %s", len(records), exc)
