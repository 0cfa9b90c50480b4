"""The `nstarx serve` command's options: the server's, the models' defaults, KServe's flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from nstarx_jupyter.config import DEFAULT_HTTP_PORT, DEFAULT_MAX_BODY_BYTES

__all__ = ["ALLOW_PATHS_ENV", "ALLOW_RUNTIMES_ENV", "KSERVE_MODEL_DIR", "MODEL_DEFAULTS",
           "serve_arguments", "server_arguments"]  # fmt: skip

ALLOW_PATHS_ENV = "NSTARX_ALLOW_PATHS"
"""More folders for `--allow-path`, separated by the OS's path separator."""
ALLOW_RUNTIMES_ENV = "NSTARX_ALLOW_RUNTIMES"
"""More import paths for `--allow-runtime`, separated by commas."""

MODEL_DEFAULTS: list[tuple[str, type, str]] = [
    ("min_replicas", int, "0 unloads idle models (scale to zero) and reloads on the next request"),
    ("idle_timeout_s", float, "seconds without requests before a min-replicas 0 model unloads"),
    ("container_concurrency", int, "requests predicted at once per model (0: no limit)"),
    (
        "max_queue",
        int,
        "requests waiting for a slot per model before 503 (with "
        "container-concurrency 0: requests in flight; default 256)",
    ),
    ("timeout_s", float, "per-request deadline in seconds, 504 at it (default 60)"),
    (
        "max_batch_size",
        int,
        "adaptive batching: rows per batch (0: off; default: no-wait "
        "batching of 32 rows for models whose rows are independent)",
    ),
    ("max_latency_ms", float, "adaptive batching: longest wait for a batch to fill (0: none)"),
    (
        "isolation",
        str,
        "where predict runs: thread (default, in the server) or process (a "
        "worker process per model, restarted when it dies or overruns its deadline)",
    ),
    ("max_rss_mb", int, "process isolation: restart a worker whose memory passes this"),
]


def serve_arguments(serve: argparse.ArgumentParser) -> None:
    """Every option of `nstarx serve`."""
    server_arguments(serve)
    serve.add_argument(
        "--model", action="append", default=[], metavar="NAME[:VERSION]=[RUNTIME:]PATH",
        help="a model file or folder; RUNTIME is sklearn, xgboost, lightgbm, onnx, pytorch, "
        "tensorflow or an import path of a Runtime subclass (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--model-repository", type=Path, metavar="DIR",
        help="a folder whose sub-folders are models, named after the folders",
    )  # fmt: skip
    serve.add_argument(
        "--pipeline", action="append", default=[], metavar="NAME=FILE|NAME=env:VAR",
        help="serve a pipeline (its PipelineSpec JSON in FILE or in environment variable VAR) "
        "at /v1/models/NAME/predict (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--no-auth", action="store_true",
        help="let anyone call the models (default: every route but live health needs a key)",
    )  # fmt: skip
    serve.add_argument(
        "--state-dir", type=Path, metavar="DIR",
        help="keep deployments here and turn on the control API; the admin token (kept in "
        "$NSTARX_HOME/security) goes into DIR/state.json for deploy() and `nstarx deploy`",
    )  # fmt: skip
    for field, kind, text in MODEL_DEFAULTS:
        serve.add_argument("--" + field.replace("_", "-"), type=kind, help=text)
    serve.add_argument(
        "--allow-path", action="append", default=[], type=Path, metavar="DIR",
        help="a folder deployments sent over the control API may load models from, besides "
        f"$NSTARX_HOME, --model-repository and ${ALLOW_PATHS_ENV} (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--sink-dir", type=Path, metavar="DIR",
        help="the folder deployments' file sinks and dead-letter files are written under "
        "(default: STATE_DIR/sinks); a sink sent over the control API cannot leave it",
    )  # fmt: skip
    serve.add_argument(
        "--allow-runtime", action="append", default=[], metavar="PATH",
        help="a Runtime import path deployments sent over the control API may name, besides "
        f"the built-in runtimes and ${ALLOW_RUNTIMES_ENV} (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--header-timeout-s", type=float, default=10.0,
        help="seconds a connection has to send a request's headers (default 10; 408 past it)",
    )  # fmt: skip
    serve.add_argument(
        "--body-timeout-s", type=float, default=30.0,
        help="seconds a request has to send its body after the headers (default 30)",
    )  # fmt: skip
    serve.add_argument(
        "--max-connections", type=int, default=4096,
        help="HTTP connections at once (default 4096, lowered below the fd limit); past it the "
        "oldest that have not sent a whole request are dropped",
    )  # fmt: skip
    serve.add_argument(
        "--max-inflight-body-bytes", type=int, metavar="N",
        help="bytes of request bodies held at once across requests (default: --max-body-bytes); "
        "past it 503 with Retry-After",
    )  # fmt: skip
    serve.add_argument(
        "--drain-s", type=float, default=2.0, metavar="S",
        help="on SIGTERM/SIGINT: seconds readiness answers 503 while requests are still served, "
        "before the listeners close and the server exits 0 (default 2)",
    )  # fmt: skip
    serve.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="a Host name the control API answers besides localhost, 127.0.0.1, ::1 and the "
        "bound address: a reverse proxy's ('*': any; repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--stream-window", type=int, default=64, metavar="N",
        help="WebSocket streams: unanswered messages per connection before the server stops "
        "reading it (default 64)",
    )  # fmt: skip
    serve.add_argument(
        "--stream-idle-s", type=float, default=300.0, metavar="S",
        help="close a stream with no message for S seconds and nothing pending (default 300)",
    )  # fmt: skip
    serve.add_argument(
        "--stream-send-timeout-s", type=float, default=30.0, metavar="S",
        help="close a stream whose client leaves its answers unread for S seconds (default 30)",
    )  # fmt: skip
    kserve_arguments(serve)


KSERVE_MODEL_DIR = "/mnt/models"
"""Where KServe's storage initializer puts an InferenceService's `storageUri`."""


def kserve_arguments(serve: argparse.ArgumentParser) -> None:
    """KServe's model-server flags, as a ServingRuntime passes them (`kserve.SERVE_ARGS`)."""
    serve.add_argument(
        "--model_name", metavar="NAME",
        help="KServe's runtime contract: serve the model in --model_dir as NAME",
    )  # fmt: skip
    serve.add_argument(
        "--model_dir", metavar="DIR",
        help=f"with --model_name: the model's file or folder (default {KSERVE_MODEL_DIR})",
    )  # fmt: skip
    serve.add_argument("--http_port", dest="port", type=int, default=argparse.SUPPRESS,
                       help="KServe's name for --port")  # fmt: skip
    serve.add_argument("--grpc_port", dest="grpc_port", type=int, default=argparse.SUPPRESS,
                       help="KServe's name for --grpc-port")  # fmt: skip


def server_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how the server listens (also what `deploy()`'s server is started with)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_HTTP_PORT, help="REST port; 0 picks a free one"
    )
    parser.add_argument("--grpc-port", type=int, help="serve V2 gRPC on this port (0: any free)")
    parser.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
        help="larger request bodies get 413 (default 64 MiB)",
    )  # fmt: skip
    parser.add_argument(
        "--tls-cert", type=Path, metavar="FILE",
        help="PEM certificate: serve HTTPS (and gRPC over TLS), TLS 1.2+ only; needs --tls-key",
    )  # fmt: skip
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="its PEM private key")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
