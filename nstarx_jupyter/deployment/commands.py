"""What `nstarx deploy | apply | status | logs | stop | delete` do, through the deployment service.

`deploy`, `status`, `logs` and `delete` take `--target {local,kserve}` (`--context`,
`--namespace` for a cluster); `stop` and the key, access and audit commands are the local
server's.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.export.optimize import read_rows
from nstarx_jupyter.deployment.jobs import batch_command
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.manifests import plan_file, read_documents
from nstarx_jupyter.deployment.service import DeploymentService, backend_for
from nstarx_jupyter.errors import InvalidInputError, NstarxError
from nstarx_jupyter.security.audit_log import read_audit
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

    from nstarx_jupyter.deployment.backend import Backend, Progress, Target

__all__ = ["apply_file", "run_command"]


def run_command(args: argparse.Namespace, out: Any = None) -> int:
    """Run one command on the backend its `--target` names (the local server by default).

    `out` defaults to `sys.stdout` as it is when the command runs (not when this was imported).
    """
    out = sys.stdout if out is None else out
    if args.command in _SECURITY:
        lines = _SECURITY[args.command](args)
    else:
        context = getattr(args, "context", None)
        target: Target = getattr(args, "target", None) or ("kserve" if context else "local")
        backend = backend_for(target, context=context, namespace=getattr(args, "namespace", None))
        try:
            if args.command == "deploy":
                lines = _deploy(args, DeploymentService(backend), out)
            else:
                lines = _COMMANDS[args.command](args, backend)
        finally:
            backend.close()
    for line in lines:
        print(line, file=out)
    return 0


def _renames(pairs: list[str]) -> dict[str, str]:
    """`--output-name FIELD=NAME` pairs as a mapping."""
    names = {}
    for pair in pairs:
        field, sep, name = pair.partition("=")
        if not sep or not field or not name:
            raise InvalidInputError(f"--output-name '{pair}': write it as FIELD=NAME")
        names[field] = name
    return names


def _optimize_options(args: argparse.Namespace) -> dict[str, Any]:
    """`--optimize [int8|fp16]`, `--sample FILE` and `--tolerance` as `deploy`'s keywords."""
    optimize = getattr(args, "optimize", None)
    if not optimize:
        return {}
    found: dict[str, Any] = {"optimize": True if optimize == "onnx" else optimize}
    if args.sample is not None:
        found["sample"] = read_rows(args.sample)
    if args.tolerance is not None:
        found["tolerance"] = args.tolerance
    return found


def _deploy(args: argparse.Namespace, service: DeploymentService, out: Any) -> list[str]:
    """Deploy, then follow it to Ready, printing each stage as it comes."""
    batching = None
    if args.max_batch_size:
        batching = {"max_batch_size": args.max_batch_size, "max_latency_ms": args.max_latency_ms}
    applied = service.deploy(
        args.model, args.name, storage_uri=getattr(args, "storage_uri", None),
        namespace=getattr(args, "namespace", None), min_replicas=args.min_replicas,
        batching=batching, container_concurrency=args.container_concurrency,
        timeout_s=args.timeout_s, auth=not args.no_auth,
        output_names=_renames(getattr(args, "output_name", None) or []),
        device=getattr(args, "device", None), model_store=getattr(args, "model_store", None),
        **_optimize_options(args),
    )  # fmt: skip

    def say(step: Progress) -> None:
        print(f"  {step.stage}: {step.message}", file=out, flush=True)

    done = service.wait_ready(args.name, on_progress=say)
    url = done.url or service.backend.endpoint(args.name).url
    lines = [f"deployed {done.name} revision {done.revision} ({done.status}) at {url}"]
    if applied.optimization is not None:
        lines += [f"optimize: {applied.optimization.reason}", *applied.optimization.lines()]
    if not done.spec.auth:
        return lines
    if service.target != "local":
        return [*lines, "auth: the cluster's ingress checks callers (nstarx keys are local)"]
    if applied.description.revision == 1:  # a new deployment: its first key, shown once
        key = service.local("keys").create_key(f"nstarx deploy of {done.name}", [done.name],
                                               deployment=done.name)  # fmt: skip
        return [*lines, f"API key (shown once, keep it): {key.key}"]
    return [*lines, "needs an API key: earlier keys still work (`nstarx keys create NAME`)"]


def _apply(args: argparse.Namespace, backend: Backend) -> list[str]:
    if isinstance(backend, LocalBackend):
        return apply_file(args.filename, backend)
    from nstarx_jupyter.deployment.kserve_backend import KServeBackend

    if not isinstance(backend, KServeBackend):
        raise InvalidInputError(f"apply -f: the {backend.target} backend applies no files")
    return backend.apply_manifests(read_documents(args.filename))


def _delete(args: argparse.Namespace, backend: Backend) -> list[str]:
    if isinstance(backend, LocalBackend) and args.name in {g.name for g in backend.graphs()}:
        backend.delete_graph(args.name)
        return [f"deleted inferencegraph {args.name}"]
    backend.delete(args.name)
    return [f"deleted {args.name}"]


def _logs(args: argparse.Namespace, backend: Backend) -> list[str]:
    return backend.events(args.name)


def _stop(args: argparse.Namespace, backend: Backend) -> list[str]:
    if not isinstance(backend, LocalBackend):
        raise InvalidInputError("stop: only the local server (a cluster's deployments stay up)")
    return ["stopped" if backend.stop() else "no local server was running"]


def _status(args: argparse.Namespace, backend: Backend) -> list[str]:
    if isinstance(backend, LocalBackend):
        state = backend.running()
        if state is None:
            return ["no local server running"]
        lines = [f"local server {state.url} (pid {state.pid})"]
    else:
        namespace = getattr(args, "namespace", None)
        lines = [f"target {backend.target}" + (f", namespace {namespace}" if namespace else "")]
    header: tuple[str, ...] = ("NAME", "REV", "STATUS", "AUTH", "MODEL", "REASON")
    rows: list[tuple[str, ...]] = [(d.name, str(d.revision), d.status,
             "key" if d.spec.auth else "open", d.spec.storage_uri or "",
             " ".join((d.reason or "").split()))  # one line: a Failed one says why
            for d in backend.deployments()]  # fmt: skip
    if not any(row[-1] for row in rows):
        header, rows = header[:-1], [row[:-1] for row in rows]
    return lines + (_table(header, rows) if rows else [])


def _keys(args: argparse.Namespace) -> list[str]:
    """`nstarx keys ...` on the home's key file: no server needed; running servers see it."""
    store = key_store()
    if args.action == "create":
        scopes = [*args.deployments, *args.scope, *(["predict:*"] if args.all else [])]
        if not scopes:  # an all-models key is asked for, never the default
            raise InvalidInputError(
                "say what the key may call: deployments (`nstarx keys create iris`), "
                "--scope SCOPE (manage:NAME, metrics, admin), or --all for every deployment"
            )
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


_COMMANDS: dict[str, Callable[[argparse.Namespace, Backend], list[str]]] = {
    "apply": _apply, "delete": _delete, "logs": _logs, "stop": _stop,
    "status": _status, "batch": batch_command,
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
    before = {d.name for d in backend.deployments()}
    graphs_before = {g.name for g in backend.graphs()}
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
            backend.put_graph(graph.model_dump(mode="json", exclude_defaults=True))
    except NstarxError as exc:
        for route, name in reversed(added):
            with contextlib.suppress(NstarxError):
                (backend.delete_graph if route == "/graphs/" else backend.delete)(name)
        undone = ", ".join(name for _, name in added)
        note = f"removed again what {path.name} added: {undone}" if undone else "none added"
        failed = NstarxError(f"{label}: {exc.message} ({note})")
        failed.kind = exc.kind
        raise failed from exc
    return plan.lines(backend.ensure_server().url)


def _served(backend: LocalBackend) -> dict[str, str]:
    """Names served now: deployments by protocol, then pipelines and graphs."""
    served: dict[str, str] = {d.name: d.spec.protocol_version for d in backend.deployments()}
    served.update(dict.fromkeys((p.name for p in backend.pipelines()), "pipeline"))
    served.update(dict.fromkeys((g.name for g in backend.graphs()), "graph"))
    return served
