"""Process-wide settings: where state lives and the defaults every package starts from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = [
    "DEFAULT_HTTP_PORT",
    "DEFAULT_MAX_BODY_BYTES",
    "STATE_FILE",
    "atomic_write",
    "nstarx_home",
    "server_dir",
]

DEFAULT_HTTP_PORT = 8080
"""KServe's data-plane port."""

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Request bodies over this many bytes are refused with 413 before they are read."""


def nstarx_home() -> Path:
    """Return `$NSTARX_HOME` (default `~/.nstarx`), creating it when missing."""
    home = Path(os.environ.get("NSTARX_HOME") or Path.home() / ".nstarx").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


STATE_FILE = "state.json"
"""In the server's state folder: how clients find it (pid, URLs, admin token); user-only."""


def server_dir() -> Path:
    """The local server's state folder: `$NSTARX_HOME/server` (deployments, state, log)."""
    return nstarx_home() / "server"


def atomic_write(target: Path, data: bytes | str, *, mode: int | None = None) -> Path:
    """Write `data` to `target` whole or not at all: a crash leaves the old file or the new one.

    The bytes reach the disk (fsync) before the rename; `mode` sets the permissions first
    (the temporary file starts as 0600).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
