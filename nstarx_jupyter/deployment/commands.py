"""What `nstarx deploy | apply | status | logs | stop | delete` do, on the local backend."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.manifests import plan_file, read_documents
from nstarx_jupyter.deployment.sources import spec_for, storage_uri_of
from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.errors import InvalidInputError, NstarxError
from nstarx_jupyter.security.audit import read_audit
from nstarx_jupyter.security.home import (
    access_rules,
    audit_dir,
    audit_local,
    key_store,
    parse_duration,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from pathlib import Path

__all__ = ["apply_file", "run_command"]


def run_command(args: argparse.Namespace, out: Any = sys.stdout) -> int:
    """Run one local-backend command and print its outcome."""
    if args.command in _SECURITY:
        lines = _SECURITY[args.command](args)
    else:
        lines = _COMMANDS[args.command](args, LocalBackend())
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
        auth=not args.no_auth, trusted=True,  # the user named the file on the command line
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
    return apply_file(args.filename, backend)


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
    header: tuple[str, ...] = ("NAME", "REV", "STATUS", "AUTH", "MODEL", "REASON")
    rows: list[tuple[str, ...]] = [(d["name"], str(d["revision"]), d["status"],
             "key" if d["spec"].get("auth", True) else "open", d["spec"].get("storage_uri", ""),
             " ".join(str(d.get("reason") or "").split()))  # one line: a Failed one says why
            for d in backend.deployments()]  # fmt: skip
    if not any(row[-1] for row in rows):
        header, rows = header[:-1], [row[:-1] for row in rows]
    return lines + (_table(header, rows) if rows else [])


def _keys(args: argparse.Namespace) -> list[str]:
    """`nstarx keys ...` on the home's key file: no server needed; running servers see it."""
    store = key_store()
    if args.action == "create":
        scopes = [*args.deployments, *args.scope] or ["predict:*"]
        expires = time.time() + parse_duration(args.expires_in) if args.expires_in else None
        record, secret = store.create(args.name, scopes, expires=expires,
                                      rate_limit=args.rate_limit, burst=args.burst)  # fmt: skip
        audit_local("keys.create")
        return [secret, f"(key {record.prefix}: {', '.join(record.scopes)}; shown once, keep it)"]
    if args.action == "revoke":
        done = store.revoke(args.key)
        audit_local("keys.revoke")
        return [f"revoked {done.prefix}"]
    if args.action == "rotate":
        record, secret = store.rotate(args.key, grace_s=parse_duration(args.grace))
        audit_local("keys.rotate")
        old = store.get(args.key)
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(old.revoked or time.time()))
        return [secret, f"(key {record.prefix} replaces {old.prefix}, which stops at {until}; "
                "shown once, keep it)"]  # fmt: skip
    header = ("PREFIX", "SCOPES", "NAME", "CREATED", "EXPIRES", "RATE", "STATE")
    rows = [(k.prefix, ",".join(k.scopes), k.name, _when(k.created), _when(k.expires),
             f"{k.rate_limit:g}/s" if k.rate_limit else "-", k.state())
            for k in store.records()]  # fmt: skip
    return _table(header, rows) if rows else ["no API keys"]


def _access(args: argparse.Namespace) -> list[str]:
    rules = access_rules()
    if args.action == "set":
        lists = {p: getattr(args, p) for p in ("read", "deploy", "call")}
        rule = rules.set(args.model, **{p: who for p, who in lists.items() if who is not None})
        audit_local("access.put", args.model)
        shown = "; ".join(f"{p}: {', '.join(who) or 'nobody'}" for p, who in rule.items())
        return [f"{args.model}: {shown or 'open to every key that covers it'}"]
    header = ("MODEL", "READ", "DEPLOY", "CALL")
    rows = [(model, *(",".join(rule[p]) if p in rule else "-" for p in ("read", "deploy", "call")))
            for model, rule in rules.rules().items()]  # fmt: skip
    return _table(header, rows) if rows else ["no access rules: keys' scopes decide"]


def _audit(args: argparse.Namespace) -> list[str]:
    found = read_audit(audit_dir(), since=time.time() - parse_duration(args.since), key=args.key,
                       model=args.model, action=args.action, limit=args.limit)  # fmt: skip
    header = ("TIME", "KEY", "WHO", "ACTION", "VIA", "MODEL", "VERSION", "STATUS", "MS")
    rows = [(time.strftime("%H:%M:%S", time.localtime(float(r["ts"]))),
             *(str(r[f]) for f in ("key", "principal", "action", "transport", "model", "version",
                                   "status")),
             f"{float(r['latency_ms']):.1f}") for r in found]  # fmt: skip
    return _table(header, rows) if rows else ["no audit records in that window"]


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]  # fmt: skip


_COMMANDS: dict[str, Callable[[argparse.Namespace, LocalBackend], list[str]]] = {
    "deploy": _deploy, "apply": _apply, "delete": _delete, "logs": _logs, "stop": _stop,
    "status": _status,
}  # fmt: skip
_SECURITY: dict[str, Callable[[argparse.Namespace], list[str]]] = {
    "keys": _keys, "access": _access, "audit": _audit,
}  # fmt: skip


def apply_file(path: Path, backend: LocalBackend) -> list[str]:
    """Apply a KServe YAML file whole, or refuse it before anything is applied; the report.

    Every document is checked first (`plan_file`): InferenceServices are deployed, then
    InferenceGraphs served on the local server with KServe's router semantics; ServingRuntimes
    are accepted and not used. The report has a line per document and per field left aside.
    Should applying fail midway (a model that does not load), the deployments and graphs this
    file added are removed again (replaced ones keep their new revision).
    """
    docs = read_documents(path)
    plan = plan_file(path, docs, lambda: _served(backend))
    if not plan.services and not plan.graphs:
        raise InvalidInputError(f"{path}: no InferenceService or InferenceGraph to apply")
    before = {d["name"] for d in backend.deployments()}
    graphs_before = {g["name"] for g in backend._call("GET", "/graphs")}
    added: list[tuple[str, str]] = []
    label = ""
    try:
        for spec in plan.services:
            label = f"inferenceservice/{spec.name}"
            if spec.name not in before:  # first: one that fails to load is kept as Failed
                added.append(("/deployments/", spec.name))
            backend.apply(spec)
        for graph in plan.graphs:
            label = f"inferencegraph/{graph.name}"
            if graph.name not in graphs_before:
                added.append(("/graphs/", graph.name))
            # LocalBackend (deployment/local.py, another slice's file) has no graph method yet.
            backend._call("PUT", f"/graphs/{graph.name}",
                          graph.model_dump(mode="json", exclude_defaults=True))  # fmt: skip
    except NstarxError as exc:
        for route, name in reversed(added):
            with contextlib.suppress(NstarxError):
                backend._call("DELETE", f"{route}{name}")
        undone = ", ".join(name for _, name in added)
        note = f"removed again what {path.name} added: {undone}" if undone else "none added"
        failed = NstarxError(f"{label}: {exc.message} ({note})")
        failed.kind = exc.kind
        raise failed from exc
    return plan.lines(backend.ensure_server().url)


def _served(backend: LocalBackend) -> dict[str, str]:
    """Names served now: deployments by protocol, then pipelines and graphs."""
    default = DeploymentSpec.model_fields["protocol_version"].default  # left out of the JSON
    served = {d["name"]: d["spec"].get("protocol_version", default) for d in backend.deployments()}
    served.update(dict.fromkeys((p["name"] for p in backend.pipelines()), "pipeline"))
    graphs = backend._call("GET", "/graphs")
    served.update(dict.fromkeys((g["name"] for g in graphs), "graph"))
    return served
