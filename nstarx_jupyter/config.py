"""Process-wide settings: where state lives and the defaults every package starts from."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_HTTP_PORT", "DEFAULT_MAX_BODY_BYTES", "STATE_FILE", "nstarx_home", "server_dir"]

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
