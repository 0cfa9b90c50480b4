"""Run the server: REST (uvicorn) and V2 gRPC on one event loop, bound before models load."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import uvicorn

from nstarx_jupyter.config import STATE_FILE, atomic_write
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.security.tls import server_ssl_context
from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.edge import (
    ACCEPT_BATCH,
    EdgeLimits,
    connection_cap,
    edge_protocol,
    raise_fd_limit,
)
from nstarx_jupyter.serving.log_limits import limit_log_rate

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable, Iterator, Sequence
    from pathlib import Path

    from nstarx_jupyter.serving.grpc import GrpcServer
    from nstarx_jupyter.serving.inference_http import InferenceApp
    from nstarx_jupyter.serving.settings import ModelSettings

__all__ = ["BoundServer", "announce", "run_server", "serve", "write_state"]

log = logging.getLogger(__name__)

_LISTEN_BACKLOG = 2048
_KEEP_ALIVE_S = 75
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_IN_FLIGHT_GRACE_S = 30.0
"""How long gRPC calls in flight may take to finish once the drain is over."""
_SETTLE_S = 0.2
"""After new connections are refused: time for the loop to accept and read the last ones."""
_SO_ATTACH_FILTER = 26
"""Linux's SO_ATTACH_FILTER (the socket module does not name it)."""


@dataclass(frozen=True, slots=True)
class BoundServer:
    """Where a started server listens."""

    url: str
    grpc_address: str | None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # asyncio turns Nagle off only on sockets created with IPPROTO_TCP; without it uvicorn's
    # separate header and body writes wait for the client's delayed ACK (40 ms per response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(_LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int, *, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _tls_files(config: ServingConfig) -> tuple[Path, Path] | None:
    """The certificate and key to serve TLS with; None serves plain HTTP."""
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise InvalidInputError("TLS needs both a certificate and its key")
    return config.tls_cert, config.tls_key


def _uvicorn_config(
    app: InferenceApp, config: ServingConfig, tls: ssl.SSLContext | None
) -> uvicorn.Config:
    limits = EdgeLimits(config.header_timeout_s, config.body_timeout_s, _KEEP_ALIVE_S,
                        config.max_connections, config.stream_send_timeout_s)  # fmt: skip
    # The edge (serving/edge.py) is uvicorn's httptools protocol with read deadlines and the
    # connection cap; `backlog` is also how many connections asyncio accepts per loop turn, which
    # the cap keeps free below the fd limit (serve() restores the listen queue afterwards).
    http = edge_protocol(limits, connection_cap(config.max_connections, raise_fd_limit()))
    # WebSocket streams (serving/stream.py): a message over --max-body-bytes closes with 1009;
    # no per-message compression (CPU per message, and a small frame can inflate to a large one)
    uv_config = uvicorn.Config(
        app, loop="none", http=http, ws=http.websocket, ws_max_size=config.max_body_bytes,
        ws_per_message_deflate=False, lifespan="on", access_log=False,
        log_level="warning", timeout_keep_alive=_KEEP_ALIVE_S, backlog=ACCEPT_BATCH,
        proxy_headers=False, ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key,
    )  # fmt: skip
    limit_log_rate()  # after uvicorn's logging config made its handlers
    if tls is not None:
        # uvicorn's load() builds a context from the files but has no minimum-version setting;
        # the server then serves whatever `config.ssl` holds, so it gets ours (TLS 1.2 at
        # least). Server.serve skips load() for a config already loaded.
        uv_config.load()
        uv_config.ssl = tls
    return uv_config


async def serve(
    models: Sequence[ModelSettings],
    config: ServingConfig,
    on_ready: Callable[[BoundServer], Awaitable[bool]] | None = None,
) -> int:
    """Serve until interrupted; returns the process exit code.

    A model that fails to load is served as `FAILED` (its reason in status and metadata) while
    the others serve.

    `on_ready` runs once both transports listen; when it returns True the server shuts down.
    """
    tls_files = _tls_files(config)
    # a missing or mismatched file fails here, before anything binds or loads
    tls = None if tls_files is None else server_ssl_context(*tls_files)
    app = create_app(models, config)
    sock = _bind(config.host, config.port)
    port = sock.getsockname()[1]
    server = _DrainingServer(_uvicorn_config(app, config, tls))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # re-raises a start-up error; a clean return means it gave up
            return 1
        await asyncio.sleep(0.01)
    sock.listen(_LISTEN_BACKLOG)  # asyncio set it to uvicorn's backlog, the accept batch
    grpc_server = None
    grpc_address = None
    if config.grpc_port is not None:
        from nstarx_jupyter.serving.grpc import start_grpc_server  # gRPC loads only when asked for

        grpc_server, grpc_port = await start_grpc_server(
            app.dataplane, config.host, config.grpc_port, config.max_body_bytes,
            tls_files=tls_files,
        )  # fmt: skip
        grpc_address = f"{config.host}:{grpc_port}"
    bound = BoundServer(_url(config.host, port, tls=tls is not None), grpc_address)
    state = None
    if config.state_dir is not None:
        state = write_state(config.state_dir, bound, app.dataplane.guard.admin_token,
                            config.tls_cert)  # fmt: skip
    try:
        if on_ready is not None and await on_ready(bound):
            server.should_exit = True
        elif await server.stopping(task):
            await _drain(server, app, config.drain_s, grpc_server, sock)
        await task
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=1.0)
        if state is not None:
            with contextlib.suppress(OSError):
                state.unlink()
    return 0


class _DrainingServer(uvicorn.Server):
    """uvicorn's server with our signal handling: SIGTERM or SIGINT starts a drain (`_drain`).

    uvicorn's own handlers stop listening at once and raise the signal again once stopped (the
    process then dies of SIGTERM instead of exiting 0). A second signal skips the rest of the
    drain and stops without waiting for the requests in flight.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop_requested = asyncio.Event()
        self.forced = asyncio.Event()
        self.signals = 0
        self.signal_name = ""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGTERM and SIGINT on the event loop while serving (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        originals = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig, handler in originals.items():
                loop.remove_signal_handler(sig)
                if handler is not None:  # as uvicorn does: the handlers from before serving
                    signal.signal(sig, handler)

    def _on_signal(self, sig: int) -> None:
        self.signals += 1
        self.signal_name = signal.Signals(sig).name
        if self.signals > 1:
            log.warning("%s again: stopping now", self.signal_name)
            self.force_exit = True
            self.forced.set()
        # before it listens there is nothing to drain: stop as soon as start-up is over
        self.should_exit = self.should_exit or not self.started or self.signals > 1
        self.stop_requested.set()

    async def stopping(self, task: asyncio.Task[None]) -> bool:
        """Wait until a signal asks the server to stop (True) or it stopped by itself (False)."""
        asked = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait((task, asked), return_when=asyncio.FIRST_COMPLETED)
        asked.cancel()
        return self.stop_requested.is_set() and not task.done()


async def _drain(
    server: _DrainingServer,
    app: InferenceApp,
    drain_s: float,
    grpc_server: GrpcServer | None,
    sock: socket.socket,
) -> None:
    """Stop the way a load balancer needs: not ready first, then closed, then gone.

    Readiness (REST, gRPC and the model routes) answers 503 at once while both transports keep
    accepting and answering for `drain_s` seconds (each answer closes its connection, so
    clients reconnect and see the change); then the listeners close, requests in flight finish
    and the models unload.
    """
    if server.should_exit:  # stopped before it listened, or a second signal: no drain
        return
    app.dataplane.draining = True
    log.warning("%s: readiness answers 503 for the %g s drain, then the listeners close",
                server.signal_name, drain_s)  # fmt: skip
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(drain_s):
            await server.forced.wait()  # a second signal cuts the drain short
    if grpc_server is not None:
        await grpc_server.stop(grace=None if server.force_exit else _IN_FLIGHT_GRACE_S)
    if _refuse_new_connections(sock):
        # Connections the kernel completed before that are accepted and read by the loop
        # before the socket closes; closing it would reset them.
        await asyncio.sleep(_SETTLE_S)
    server.should_exit = True


def _refuse_new_connections(sock: socket.socket) -> bool:
    """Drop new connection attempts to `sock` (Linux: a socket filter); True when it worked.

    A client whose SYN is dropped tries again a second later and finds the port closed
    (connection refused: nothing was sent, it may retry elsewhere), instead of being reset
    after its request was sent, as a connection still in the accept queue would be.
    """
    if sys.platform != "linux":
        return False
    drop_all = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, keep 0 bytes: drop
    program = ctypes.create_string_buffer(drop_all)
    fprog = struct.pack("HL", 1, ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def write_state(
    folder: Path, bound: BoundServer, token: str | None, cert: Path | None = None
) -> Path:
    """Write the state file (user-only: it holds the admin token) and return its path.

    With TLS, `cert` names the certificate served, which local clients add to what they trust.
    """
    doc = {"pid": os.getpid(), "url": bound.url, "grpc": bound.grpc_address,
           "token": token, "started": time.time()}  # fmt: skip
    if cert is not None:
        doc["cert"] = str(cert.expanduser().resolve())
    return atomic_write(folder / STATE_FILE, json.dumps(doc), mode=0o600)


def announce(bound: BoundServer, out: TextIO = sys.stdout) -> None:
    """Print where the server listens: one line that scripts and tests read."""
    grpc = f" (V2 gRPC on {bound.grpc_address})" if bound.grpc_address else ""
    print(f"nstarx serving at {bound.url}{grpc}", file=out, flush=True)


async def _announce_and_keep_serving(bound: BoundServer) -> bool:
    announce(bound)
    return False


def run_server(
    models: Sequence[ModelSettings],
    config: ServingConfig,
    on_ready: Callable[[BoundServer], Awaitable[bool]] = _announce_and_keep_serving,
) -> int:
    """Run `serve` on asyncio's own event loop and return its exit code.

    Not uvloop: under load it accepts one connection per loop iteration, so 64 clients that
    connect to a busy server wait up to 0.4 s for their first answer (bench/README.md); the
    asyncio loop accepts a whole backlog at once at the same request rate.
    """
    with asyncio.Runner() as runner:
        return runner.run(serve(models, config, on_ready))
