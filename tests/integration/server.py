"""Start `nstarx serve` as a real process on free ports and stop it afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[2]
_BANNER = re.compile(r"nstarx serving at (\S+)(?: \(V2 gRPC on (\S+)\))?")


@dataclass
class ServerProcess:
    """A running server: its URL, gRPC address and process."""

    url: str
    grpc: str | None
    process: subprocess.Popen[str]
    output: list[str]
    reader: threading.Thread | None = None

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_server(
    *args: str,
    timeout_s: float = 60.0,
    auth: bool = False,
    preexec_fn: Callable[[], object] | None = None,
) -> ServerProcess:
    """Run `nstarx serve ARGS --port 0` and wait for the line announcing its URL.

    Protocol tests run it with `--no-auth`; `auth=True` keeps the default (every route but
    live health needs a key), which the security tests check. `preexec_fn` runs in the child
    before the server starts (to lower a resource limit).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    extra = () if auth else ("--no-auth",)
    if "--drain-s" not in args:  # tests stop servers at once; the drain has tests of its own
        extra = (*extra, "--drain-s", "0")
    process = subprocess.Popen(
        [sys.executable, "-m", "nstarx_jupyter.cli", "serve", "--port", "0", *extra, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = _BANNER.search(line)
        if match:
            # Keep reading so a chatty server never blocks on a full pipe.
            reader = threading.Thread(target=_drain, args=(process.stdout, seen), daemon=True)
            reader.start()
            return ServerProcess(match.group(1), match.group(2), process, seen, reader)
    ServerProcess("", None, process, seen).stop()
    raise RuntimeError("server did not start:\n" + "".join(seen))


def _drain(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line)
