"""Process-wide settings: where state lives and the defaults every package starts from."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_HTTP_PORT", "DEFAULT_MAX_BODY_BYTES", "nstarx_home"]

DEFAULT_HTTP_PORT = 8080
"""KServe's data-plane port."""

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Request bodies over this many bytes are refused with 413 before they are read."""


def nstarx_home() -> Path:
    """Return `$NSTARX_HOME` (default `~/.nstarx`), creating it when missing."""
    home = Path(os.environ.get("NSTARX_HOME") or Path.home() / ".nstarx").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
