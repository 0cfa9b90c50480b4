"""State in a JSON file that every process of one `$NSTARX_HOME` shares (keys, access rules).

Writers take a file lock, re-read the file, change it and replace it atomically; readers look at
the file's identity (inode, mtime, size) at most every `RELOAD_S` and reload when it changed, so
a change made by `nstarx keys revoke` in a terminal reaches a running server within a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import atomic_write
from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["RELOAD_S", "SharedFile"]

log = logging.getLogger(__name__)

RELOAD_S = 0.5
"""How often a reader looks at the file for changes made by another process."""


class SharedFile:
    """Base of the shared stores; `path=None` keeps the state in memory only.

    Subclasses say how to take the parsed file (`_load`, None when there is no file) and what to
    write (`_dump`).
    """

    what = "state file"
    """What the file is, for error messages."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._checked = 0.0
        self._seen: tuple[int, int, int] | None = None
        self._load(None)
        self._reload()

    def _load(self, doc: Any) -> None:
        raise NotImplementedError

    def _dump(self) -> Any:
        raise NotImplementedError

    def refresh(self) -> None:
        """Reload the file when another process changed it (looked at every `RELOAD_S`)."""
        if self.path is None:
            return
        now = time.monotonic()
        if now - self._checked < RELOAD_S:
            return
        self._checked = now
        if self._stamp() != self._seen:
            try:
                self._reload()
            except InvalidInputError as exc:  # a broken edit: keep what was read before
                log.error("%s; keeping what was read before", exc.message)

    def _stamp(self) -> tuple[int, int, int] | None:
        assert self.path is not None  # noqa: S101 - callers check
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def _reload(self) -> None:
        if self.path is None:
            return
        stamp = self._stamp()
        doc = None
        if stamp is not None:
            try:
                doc = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise InvalidInputError(f"{self.path}: not a {self.what} ({exc})") from exc
        try:
            self._load(doc)
        except (ValueError, KeyError, TypeError, AttributeError, InvalidInputError) as exc:
            raise InvalidInputError(f"{self.path}: not a {self.what} ({exc})") from exc
        self._seen = stamp

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the file lock, start from the file as it is, write the result back after."""
        if self.path is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._reload()
            yield
            atomic_write(self.path, json.dumps(self._dump(), indent=1), mode=0o600)
            self._seen = self._stamp()
        finally:
            os.close(lock)  # closing releases the lock
