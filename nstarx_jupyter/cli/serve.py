"""Running `nstarx serve` and `nstarx tls-cert`: flags to a `ServingConfig`, then the server."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.cli.serve_options import (
    ALLOW_PATHS_ENV,
    ALLOW_RUNTIMES_ENV,
    KSERVE_MODEL_DIR,
    MODEL_DEFAULTS,
)
from nstarx_jupyter.errors import NstarxError

if TYPE_CHECKING:
    import argparse

__all__ = ["run_serve", "run_tls_cert"]

log = logging.getLogger("nstarx_jupyter.cli")


def run_serve(args: argparse.Namespace) -> int:
    """`nstarx serve`: serve until a signal; SystemExit with one line on a wrong flag."""
    from nstarx_jupyter.serving.server import run_server
    from nstarx_jupyter.serving.settings import parse_model_arg, settings_from_repository

    defaults: dict[str, Any] = {
        field: getattr(args, field)
        for field, _, _ in MODEL_DEFAULTS
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


def run_tls_cert(args: argparse.Namespace) -> int:
    """`nstarx tls-cert`: a self-signed development certificate, and how to use it."""
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


def _kserve_model(args: argparse.Namespace) -> list[str]:
    """`--model_name N --model_dir D` as the `--model N=D` it stands for (none without them)."""
    if args.model_name is None:
        if args.model_dir is not None:
            raise SystemExit("nstarx serve: --model_dir needs --model_name")
        return []
    return [f"{args.model_name}={args.model_dir or KSERVE_MODEL_DIR}"]
