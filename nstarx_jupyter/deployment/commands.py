"""What `nstarx deploy | apply | status | logs | stop | delete` do, on the local backend."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.kserve import from_kserve, validate_manifest
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.sources import spec_for, storage_uri_of
from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from pathlib import Path

__all__ = ["apply_file", "run_command"]


def run_command(args: argparse.Namespace, out: Any = sys.stdout) -> int:
    """Run one local-backend command and print its outcome."""
    backend = LocalBackend()
    lines = _COMMANDS[args.command](args, backend)
    for line in lines:
        print(line, file=out)
    return 0


def _deploy(args: argparse.Namespace, backend: LocalBackend) -> list[str]:
    batching = None
    if args.max_batch_size:
        batching = {"max_batch_size": args.max_batch_size, "max_latency_ms": args.max_latency_ms}
    spec = spec_for(
        storage_uri_of(args.model), args.name, min_replicas=args.min_replicas, batching=batching,
        container_concurrency=args.container_concurrency, timeout_s=args.timeout_s,
        auth=not args.no_auth,
    )  # fmt: skip
    doc = backend.apply(spec)
    url = f"{backend.ensure_server().url}/v1/models/{spec.name}"
    lines = [f"deployed {spec.name} revision {doc['revision']} ({doc['status']}) at {url}"]
    if spec.auth and doc["revision"] == 1:  # a new deployment: its first key, shown once
        key = backend.create_key(f"nstarx deploy {spec.name}", [spec.name])
        lines.append(f"API key (shown once, keep it): {key['key']}")
    elif spec.auth:
        lines.append("needs an API key: earlier keys still work (`nstarx keys create NAME`)")
    return lines


def _apply(args: argparse.Namespace, backend: LocalBackend) -> list[str]:
    return [f"inferenceservice/{name} applied" for name in apply_file(args.filename, backend)]


def _delete(args: argparse.Namespace, backend: LocalBackend) -> list[str]:
    backend.delete(args.name)
    return [f"deleted {args.name}"]


def _logs(args: argparse.Namespace, backend: LocalBackend) -> list[str]:
    return backend.logs(args.name)


def _stop(args: argparse.Namespace, backend: LocalBackend) -> list[str]:
    return ["stopped" if backend.stop() else "no local server was running"]


def _status(args: argparse.Namespace, backend: LocalBackend) -> list[str]:
    state = backend.running()
    if state is None:
        return ["no local server running"]
    lines = [f"local server {state.url} (pid {state.pid})"]
    header = ("NAME", "REV", "STATUS", "AUTH", "MODEL")
    rows = [(d["name"], str(d["revision"]), d["status"],
             "key" if d["spec"].get("auth") else "open", d["spec"].get("storage_uri", ""))
            for d in backend.deployments()]  # fmt: skip
    return lines + (_table(header, rows) if rows else [])


def _keys(args: argparse.Namespace, backend: LocalBackend) -> list[str]:
    if args.action == "create":
        made = backend.create_key(args.name, args.deployments or None)
        return [f"{made['key']}", f"(key {made['prefix']} for {', '.join(made['deployments'])}; "
                "shown once, keep it)"]  # fmt: skip
    if args.action == "revoke":
        done = backend.revoke_key(args.key)
        return [f"revoked {done['prefix']}"]
    header = ("PREFIX", "DEPLOYMENTS", "NAME", "CREATED", "STATE")
    rows = [(k["prefix"], ",".join(k["deployments"]), k["name"],
             time.strftime("%Y-%m-%d %H:%M", time.localtime(k["created"])),
             "revoked" if "revoked" in k else "active") for k in backend.list_keys()]  # fmt: skip
    return _table(header, rows) if rows else ["no API keys"]


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]  # fmt: skip


_COMMANDS: dict[str, Callable[[argparse.Namespace, LocalBackend], list[str]]] = {
    "deploy": _deploy, "apply": _apply, "delete": _delete, "logs": _logs, "stop": _stop,
    "status": _status, "keys": _keys,
}  # fmt: skip


def apply_file(path: Path, backend: LocalBackend) -> list[str]:
    """Deploy every InferenceService in a KServe YAML file (ServingRuntimes are checked only).

    A relative local `storageUri` is read relative to the file, as a user expects from a
    manifest kept beside its model.
    """
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"{path}: {exc}") from exc
    specs = []
    for doc in docs:
        validate_manifest(doc)
        if doc.get("kind") == "InferenceService":
            spec = from_kserve(doc)
            uri = spec.storage_uri or ""
            if uri and "://" not in uri and not uri.startswith("/"):
                spec = spec.replace(storage_uri=str((path.parent / uri).resolve()))
            specs.append(spec)
    if not specs:
        raise InvalidInputError(f"{path}: no InferenceService to apply")
    for spec in specs:
        backend.apply(spec)
    return [spec.name for spec in specs]
