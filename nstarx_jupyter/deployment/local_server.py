"""The local server's process: its state file, a detached start, and the trust it serves with.

`LocalBackend` (`deployment/local.py`) drives the server's control API; this module only finds
the server (`read_state`), starts one that outlives the notebook kernel (`spawn_server`) and
tells which certificate it serves (`local_trust`).
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from nstarx_jupyter.client.inference import tls_context
from nstarx_jupyter.errors import UnavailableError

__all__ = ["LOG_FILE", "ServerState", "alive", "local_trust", "read_state", "spawn_server",
           "state_cert"]  # fmt: skip

LOG_FILE = "server.log"


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the running server wrote into its state file."""

    pid: int
    url: str
    token: str
    grpc: str | None = None


def read_state(state_file: Path) -> ServerState | None:
    """The state file's server (None when the file is missing or unreadable; alive or not)."""
    try:
        doc = json.loads(state_file.read_text())
        return ServerState(int(doc["pid"]), str(doc["url"]), str(doc["token"]), doc.get("grpc"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def spawn_server(state_dir: Path) -> int:
    """Start `nstarx serve` on a free port for `state_dir`, detached; its pid."""
    return _spawn_detached(
        [sys.executable, "-m", "nstarx_jupyter.cli", "serve", "--port", "0",
         "--state-dir", str(state_dir), "--log-level", "warning"],
        state_dir / LOG_FILE,
    )  # fmt: skip


def state_cert(state_file: Path) -> str | None:
    """The certificate file the local server serves, as its state file names it (or None)."""
    try:
        cert = json.loads(state_file.read_text()).get("cert")
    except (OSError, ValueError, AttributeError):
        return None
    return str(cert) if cert else None


def local_trust(state_file: Path) -> ssl.SSLContext:
    """The system's CAs, plus the certificate the local server serves (named in its state file).

    A server started with `--tls-cert` (a self-signed one from `nstarx tls-cert`, say) records
    the file; the backend, which only calls that server, trusts it besides the system's CAs.
    """
    cert = state_cert(state_file)
    if not cert:
        return tls_context()
    context = ssl.create_default_context()
    with contextlib.suppress(OSError):  # a certificate gone since: the system's CAs decide
        context.load_verify_locations(cafile=cert)
    return context


_LAUNCHER = """
import subprocess, sys
with open(sys.argv[1], "ab") as log:
    child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
print(child.pid)
"""


def _spawn_detached(command: list[str], log: Path) -> int:
    """Start `command` as a grandchild in its own session and return its pid.

    The launcher in between exits at once, so the server belongs to init, not to the notebook
    kernel: it outlives the kernel and never lingers as our zombie.
    """
    launched = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _LAUNCHER, str(log), *command], capture_output=True, text=True,
        check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=30,
    )  # fmt: skip
    if launched.returncode != 0 or not launched.stdout.strip().isdigit():
        raise UnavailableError(f"cannot start the local server: {launched.stderr.strip()}")
    return int(launched.stdout.strip())


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited) still "exists": read its state where we can.
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    return True
