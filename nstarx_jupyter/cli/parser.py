"""The `nstarx` command's arguments: every command and its options, nothing run here."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nstarx_jupyter import __version__
from nstarx_jupyter.cli.demo import DEMO_HOME_ENV
from nstarx_jupyter.cli.serve_options import serve_arguments

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The `nstarx` parser: `serve`, `deploy`, `apply`, `status`, `keys`, `batch`, `demo`..."""
    parser = argparse.ArgumentParser(prog="nstarx", description="Jupyter-first model serving.")
    parser.add_argument("--version", action="version", version=f"nstarx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve models over KServe's V1/V2 and gRPC")
    serve_arguments(serve)
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
