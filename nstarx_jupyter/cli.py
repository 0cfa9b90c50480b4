"""The `nstarx` command line: argument parsing only; the work happens in the packages."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter import __version__
from nstarx_jupyter.config import DEFAULT_HTTP_PORT, DEFAULT_MAX_BODY_BYTES, nstarx_home
from nstarx_jupyter.errors import NstarxError
from nstarx_jupyter.notebook.demo import run_demo

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

log = logging.getLogger("nstarx_jupyter.cli")

ALLOW_PATHS_ENV = "NSTARX_ALLOW_PATHS"
"""More folders for `--allow-path`, separated by the OS's path separator."""
DEMO_HOME_ENV = "NSTARX_DEMO_HOME"
"""Where `nstarx demo` keeps its registry, server and keys (default `$NSTARX_HOME/demo`)."""
ALLOW_RUNTIMES_ENV = "NSTARX_ALLOW_RUNTIMES"
"""More import paths for `--allow-runtime`, separated by commas."""

_MODEL_DEFAULTS: list[tuple[str, type, str]] = [
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nstarx", description="Jupyter-first model serving.")
    parser.add_argument("--version", action="version", version=f"nstarx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve models over KServe's V1/V2 and gRPC")
    _server_arguments(serve)
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
    for field, kind, text in _MODEL_DEFAULTS:
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
    _kserve_arguments(serve)
    deploy = commands.add_parser("deploy", help="deploy a model file or registry URI locally")
    deploy.add_argument("name", help="deployment name (lower case, digits, '-')")
    deploy.add_argument("model", help="a model file or folder, or models:/NAME/VERSION")
    deploy.add_argument("--min-replicas", type=int, default=1, help="0 scales to zero when idle")
    deploy.add_argument("--container-concurrency", type=int, help="predictions at once")
    deploy.add_argument("--timeout-s", type=int, help="per-request deadline in seconds")
    deploy.add_argument("--max-batch-size", type=int, help="turn on adaptive batching")
    deploy.add_argument("--max-latency-ms", type=int, default=5, help="batching: longest wait")
    deploy.add_argument(
        "--device", help="auto (default), cpu, gpu, cuda:N or tensorrt; a GPU asks KServe for one"
    )
    deploy.add_argument(
        "--no-auth", action="store_true",
        help="leave the endpoint open (default: callers need an API key)",
    )  # fmt: skip
    deploy.add_argument(
        "--output-name", action="append", metavar="FIELD=NAME", default=[],
        help="rename a field of the /predict answer, e.g. prediction=sentiment (repeatable)",
    )  # fmt: skip
    deploy.add_argument("--optimize", nargs="?", const="onnx", choices=["onnx", "int8", "fp16"],
                        help="serve it as optimised (int8/fp16: quantised) ONNX if it answers "
                        "as the original on --sample within --tolerance")  # fmt: skip
    deploy.add_argument("--sample", type=Path, help="--optimize: rows to compare on (csv/json)")
    deploy.add_argument("--tolerance", type=float, help="--optimize: share of answers that may "
                        "change (default 0.01)")  # fmt: skip
    keys = _security_commands(commands)
    apply = commands.add_parser(
        "apply", help="apply a KServe YAML's InferenceServices and InferenceGraphs, all or none"
    )
    apply.add_argument("-f", "--filename", type=Path, required=True, help="the YAML file")
    status = commands.add_parser("status", help="the local server or a cluster: its deployments")
    commands.add_parser("stop", help="stop the local server (deployments stay saved)")
    delete = commands.add_parser("delete", help="delete a local deployment")
    delete.add_argument("name")
    logs = commands.add_parser("logs", help="a local deployment's events")
    logs.add_argument("name")
    _batch_commands(commands)
    tls = commands.add_parser("tls-cert", help="make a self-signed certificate for development")
    tls.add_argument(
        "--out", type=Path, metavar="DIR", help="where cert.pem and key.pem go ($NSTARX_HOME/tls)"
    )
    tls.add_argument(
        "--host", action="append", metavar="H",
        help="a name or IP address it covers (repeatable; default: localhost, 127.0.0.1, ::1)",
    )  # fmt: skip
    tls.add_argument("--days", type=int, default=365, help="days it is valid (default 365)")
    for sub in (deploy, apply, delete, keys):
        sub.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    for sub in (deploy, apply, status, delete, logs):
        _target_options(sub)
    deploy.add_argument(
        "--storage-uri", help="kserve: where the cluster reads the model (s3://, gs://, pvc://...)"
    )
    deploy.add_argument(
        "--model-store", metavar="s3://BUCKET/PREFIX",
        help="kserve: upload a model on this machine there first (default $NSTARX_MODEL_STORE)",
    )  # fmt: skip
    demo = commands.add_parser(
        "demo", help="the quickstart headless: train, deploy with a key, predict, load test, "
        "redeploy; prints the prediction and a latency summary",
    )  # fmt: skip
    demo.add_argument("--rps", type=float, default=100, help="load test rate (default 100)")
    demo.add_argument("--duration-s", type=float, default=5, help="load test length (default 5)")
    demo.add_argument(
        "--cleanup", action="store_true",
        help="delete the deployment and stop the local server at the end",
    )  # fmt: skip
    demo.add_argument(
        "--home", type=Path, metavar="DIR",
        help=f"the demo's $NSTARX_HOME: registry, server, keys (default ${DEMO_HOME_ENV}, else "
        "$NSTARX_HOME/demo, apart from your own models; give $NSTARX_HOME to share them)",
    )  # fmt: skip
    return parser


def _target_options(command: argparse.ArgumentParser) -> None:
    """`--target`, `--context` and `--namespace`: which backend a deployment command drives."""
    command.add_argument("--target", choices=["local", "kserve"],
                         help="the local server (default) or a KServe cluster (the default "
                         "with --context)")  # fmt: skip
    command.add_argument("--context", metavar="NAME", help="kserve: the kubeconfig context")
    command.add_argument("--namespace", "-n", metavar="NS", help="kserve: the namespace")


def _batch_commands(commands: Any) -> None:
    """`nstarx batch run|status|cancel`: jobs over files on the local server."""
    batch = commands.add_parser("batch", help="batch jobs over CSV, Parquet or JSONL files")
    actions = batch.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="start a job: every row of INPUT through NAME")
    run.add_argument("name", help="a deployment or pipeline")
    run.add_argument("input", help="a file in a folder the server may read")
    run.add_argument("--output", help="where the output goes (default: in the server's state)")
    run.add_argument("--format", choices=["csv", "parquet", "jsonl"], help="(default: suffix)")
    run.add_argument("--chunk-size", type=int, help="rows per request (default 2000)")
    run.add_argument("--parallelism", type=int, help="chunks in flight (default 2)")
    run.add_argument(
        "--passthrough", nargs="+", metavar="COLUMN",
        help="columns copied to the output, not sent (default: those not taken)",
    )  # fmt: skip
    run.add_argument("--wait", action="store_true", help="follow the job to its end")
    status = actions.add_parser("status", help="one job, or every job")
    status.add_argument("id", nargs="?")
    cancel = actions.add_parser("cancel", help="stop a job")
    cancel.add_argument("id")


def _security_commands(commands: Any) -> argparse.ArgumentParser:
    """`nstarx keys`, `nstarx access` and `nstarx audit`: they work with no server running."""
    export = commands.add_parser("export", help="a model as a standalone ONNX bundle")
    export.add_argument("name", help="a model file, models:/NAME/V, a deployment or a model name")
    export.add_argument("--format", choices=["onnx"], default="onnx")
    export.add_argument("--quantize", choices=["int8", "fp16"], default=None)
    export.add_argument("--out", type=Path, default=None, help="the bundle folder")
    export.add_argument("--sample", type=Path, default=None, help="rows to compare on (csv/json)")
    keys: argparse.ArgumentParser = commands.add_parser(
        "keys", help="API keys: create, list, revoke, rotate"
    )
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="mint a key (printed once)")
    create.add_argument("deployments", nargs="*", help="deployments it may call (predict:NAME)")
    create.add_argument("--all", action="store_true", help="it may call every deployment")
    create.add_argument("--name", default="", help="who holds it (access rules name it)")
    create.add_argument(
        "--scope", action="append", default=[], metavar="SCOPE",
        help="predict:NAME, manage:NAME, metrics or admin (NAME may be '*'; repeatable)",
    )  # fmt: skip
    create.add_argument("--expires-in", metavar="DURATION", help="e.g. 12h, 30d (default never)")
    create.add_argument("--rate-limit", type=float, metavar="N", help="requests per second")
    create.add_argument("--burst", type=int, metavar="N", help="requests at once (default N)")
    key_actions.add_parser("list", help="keys by prefix, never the key itself")
    revoke = key_actions.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key")
    rotate = key_actions.add_parser("rotate", help="replace a key; the old one stops after --grace")
    rotate.add_argument("key")
    rotate.add_argument("--grace", default="0", metavar="DURATION", help="e.g. 10m (default 0)")
    access = commands.add_parser("access", help="who may read, deploy and call registry models")
    access_actions = access.add_subparsers(dest="action", required=True)
    access_actions.add_parser("list", help="every model's access rules")
    grant = access_actions.add_parser("set", help="set a registry model's access lists")
    grant.add_argument("model")
    for permission in ("read", "deploy", "call"):
        grant.add_argument(
            f"--{permission}", nargs="*", metavar="WHO",
            help=f"key names or ids that may {permission} it (no WHO: nobody; '*': any key)",
        )  # fmt: skip
    audit = commands.add_parser("audit", help="the audit log: who called what, when")
    audit.add_argument("--since", metavar="DURATION", default="1h", help="e.g. 10m, 1d (1h)")
    audit.add_argument("--key", help="a key id or prefix")
    audit.add_argument("--model")
    audit.add_argument("--action")
    audit.add_argument("--limit", type=int, default=50)
    return keys


KSERVE_MODEL_DIR = "/mnt/models"
"""Where KServe's storage initializer puts an InferenceService's `storageUri`."""


def _kserve_arguments(serve: argparse.ArgumentParser) -> None:
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


def _kserve_model(args: argparse.Namespace) -> list[str]:
    """`--model_name N --model_dir D` as the `--model N=D` it stands for (none without them)."""
    if args.model_name is None:
        if args.model_dir is not None:
            raise SystemExit("nstarx serve: --model_dir needs --model_name")
        return []
    return [f"{args.model_name}={args.model_dir or KSERVE_MODEL_DIR}"]


def _server_arguments(parser: argparse.ArgumentParser) -> None:
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


def _serve(args: argparse.Namespace) -> int:
    from nstarx_jupyter.serving.server import run_server
    from nstarx_jupyter.serving.settings import parse_model_arg, settings_from_repository

    defaults: dict[str, Any] = {
        field: getattr(args, field)
        for field, _, _ in _MODEL_DEFAULTS
        if getattr(args, field) is not None
    }
    models = [parse_model_arg(value, defaults) for value in [*args.model, *_kserve_model(args)]]
    if args.model_repository is not None:
        models += settings_from_repository(args.model_repository, defaults)
    pipelines = tuple(_pipeline_arg(value) for value in args.pipeline)
    if not models and not pipelines and args.state_dir is None:
        raise SystemExit(
            "nstarx serve: give at least one --model NAME=PATH, --pipeline NAME=FILE, "
            "--model-repository or --state-dir"
        )

    config = dataclasses.replace(_config(args), auth=not args.no_auth, pipelines=pipelines)
    config = dataclasses.replace(
        config, header_timeout_s=args.header_timeout_s, body_timeout_s=args.body_timeout_s,
        max_connections=args.max_connections, max_inflight_body_bytes=args.max_inflight_body_bytes,
    )  # fmt: skip
    if args.no_auth:
        log.warning("--no-auth: anyone who can reach %s may call the models", args.host)
    if args.state_dir is not None:
        config = dataclasses.replace(config, state_dir=args.state_dir.expanduser())
    if args.drain_s < 0:
        raise SystemExit("nstarx serve: --drain-s: 0 or more seconds")
    config = dataclasses.replace(config, drain_s=args.drain_s, allow_hosts=tuple(args.allow_host))
    if args.stream_window < 1 or args.stream_idle_s <= 0 or args.stream_send_timeout_s <= 0:
        raise SystemExit("nstarx serve: --stream-window: 1 or more; --stream-*-s: more than 0")
    config = dataclasses.replace(
        config, stream_window=args.stream_window, stream_idle_s=args.stream_idle_s,
        stream_send_timeout_s=args.stream_send_timeout_s,
    )  # fmt: skip
    return run_server(models, _allowed(args, config))


def _allowed(args: argparse.Namespace, config: Any) -> Any:
    """The folders and runtimes the control API may use: flags, then the environment's.

    The environment serves servers started for you (`deploy()` and `nstarx deploy` start one).
    """
    env_paths = [Path(p) for p in os.environ.get(ALLOW_PATHS_ENV, "").split(os.pathsep) if p]
    env_runtimes = [r for r in os.environ.get(ALLOW_RUNTIMES_ENV, "").split(",") if r.strip()]
    folders = [*([args.model_repository] if args.model_repository else []), *args.allow_path,
               *env_paths]  # fmt: skip
    sink_dir = getattr(args, "sink_dir", None)
    return dataclasses.replace(
        config, allow_paths=tuple(path.expanduser() for path in folders),
        sink_dir=sink_dir.expanduser() if sink_dir is not None else None,
        allow_runtimes=tuple(r.strip() for r in (*args.allow_runtime, *env_runtimes)),
    )  # fmt: skip


def _pipeline_arg(value: str) -> Any:
    """`NAME=FILE` or `NAME=env:VAR`: a PipelineSpec served as NAME."""
    from nstarx_jupyter.pipelines import PipelineSpec

    name, sep, source = value.partition("=")
    if not sep or not name or not source:
        raise SystemExit(f"nstarx serve: --pipeline {value!r}: use NAME=FILE or NAME=env:VAR")
    if source.startswith("env:"):
        text = os.environ.get(source[4:])
        if text is None:
            raise SystemExit(f"nstarx serve: --pipeline {name}: ${source[4:]} is not set")
    else:
        try:
            text = Path(source).expanduser().read_text()
        except OSError as exc:
            raise SystemExit(f"nstarx serve: --pipeline {name}: {exc}") from None
    try:
        return PipelineSpec.parse({**PipelineSpec.parse(text).model_dump(), "name": name})
    except NstarxError as exc:
        raise SystemExit(f"nstarx serve: --pipeline {name}: {exc.message}") from None


def _config(args: argparse.Namespace) -> Any:
    from nstarx_jupyter.serving.app import ServingConfig

    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit(f"nstarx {args.command}: give --tls-cert and --tls-key together")
    return ServingConfig(
        host=args.host, port=args.port, grpc_port=args.grpc_port,
        max_body_bytes=args.max_body_bytes,
        tls_cert=args.tls_cert and args.tls_cert.expanduser(),
        tls_key=args.tls_key and args.tls_key.expanduser(),
    )  # fmt: skip


def _tls_cert(args: argparse.Namespace) -> int:
    from nstarx_jupyter.security.tls import DEFAULT_HOSTS, default_tls_dir, make_self_signed

    folder = args.out.expanduser() if args.out is not None else default_tls_dir()
    cert, key = make_self_signed(folder, args.host or DEFAULT_HOSTS, args.days)
    print(  # noqa: T201
        f"certificate: {cert}\n"
        f"key:         {key} (owner-only)\n"
        "A development certificate: clients trust it only when told to. Serve with\n"
        f"  nstarx serve --tls-cert {cert} --tls-key {key} --model NAME=PATH\n"
        f'and call with InferenceClient(URL, verify="{cert}") or curl --cacert {cert}.'
    )
    return 0


def demo_home(given: Path | None = None) -> Path:
    """The demo's home: `given`, else `$NSTARX_DEMO_HOME`, else `$NSTARX_HOME/demo`."""
    chosen = given or os.environ.get(DEMO_HOME_ENV) or nstarx_home() / "demo"
    return Path(chosen).expanduser().resolve()


def _demo(args: argparse.Namespace) -> int:

    home = demo_home(args.home)
    # Its own home and registry: the demo's `iris` versions do not land on the user's `iris`.
    os.environ["NSTARX_HOME"] = str(home)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)
    return run_demo(rps=args.rps, duration_s=args.duration_s, cleanup=args.cleanup, home=home)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `nstarx` command; user mistakes print one line, not a traceback."""
    args = _parser().parse_args(argv)
    level = getattr(args, "log_level", "warning")
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "tls-cert":
            return _tls_cert(args)
        if args.command == "export":
            from nstarx_jupyter.deployment.export.model import run_export

            return run_export(args.name, args.out, args.quantize, args.sample)
        from nstarx_jupyter.deployment.commands import run_command

        return run_command(args)
    except NstarxError as exc:
        print(f"nstarx {args.command}: {exc.message}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
