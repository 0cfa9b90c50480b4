"""The pipeline editor's logic, without a widget: palette, checks, test runs and versions.

One implementation for both editors: the notebook's `FlowEditor` (anywidget) and the lab's
pipeline document (through the server extension, `nstarx_jupyter.labapi`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, get_args

from nstarx_jupyter.errors import NotFoundError, NstarxError
from nstarx_jupyter.pipelines import components, validate
from nstarx_jupyter.pipelines.component import PortType, accepts
from nstarx_jupyter.pipelines.spec import KIND_TITLES
from nstarx_jupyter.pipelines.validate import Problems, resolve_nodes
from nstarx_jupyter.registry.pipeline_versions import PipelineStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from nstarx_jupyter.notebook.pipeline import Pipeline
    from nstarx_jupyter.pipelines import PipelineSpec
    from nstarx_jupyter.registry import Registry

__all__ = [
    "check",
    "kinds",
    "library",
    "node_ports",
    "plain",
    "port_rules",
    "run_result",
    "versions",
]


def library() -> list[dict[str, Any]]:
    """The palette: every component (built-in and custom) with its config's JSON Schema."""
    return [cls.describe() for _, cls in sorted(components().items())]


def kinds() -> list[dict[str, str]]:
    """The palette's sections, in the order a pipeline flows."""
    return [{"kind": kind, "title": title} for kind, title in KIND_TITLES.items()]


def port_rules() -> dict[str, list[str]]:
    """For each input port type, the output port types it accepts (from `accepts`)."""
    types: tuple[PortType, ...] = get_args(PortType)
    return {wanted: [given for given in types if accepts(wanted, given)] for wanted in types}


def node_ports(spec: PipelineSpec) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The ports of each node whose config changes them (the canvas draws one handle per port)."""
    ports: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for node_id, found in resolve_nodes(spec, Problems()).items():
        inputs = [port._asdict() for port in found.inputs.values()]
        outputs = [port._asdict() for port in found.outputs.values()]
        default_in, default_out = found.cls.ports(None)
        if inputs != [p._asdict() for p in default_in] or outputs != [
            p._asdict() for p in default_out
        ]:
            ports[node_id] = {"inputs": inputs, "outputs": outputs}
    return ports


def check(
    spec: PipelineSpec, model_exists: Callable[[str], bool | None] | None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[dict[str, Any]]]]]:
    """Every problem of `spec` (each on its node or edge) and its nodes' ports."""
    problems = [p.as_dict() for p in validate(spec, model_exists=model_exists)]
    return problems, node_ports(spec)


def run_result(pipeline: Pipeline, sample: dict[str, Any]) -> dict[str, Any]:
    """A test run as the canvas shows it: the output and each node's run, or the error.

    A failing pipeline is an answer (`error`, the failing `node`), not an exception: the
    canvas marks the node.
    """
    try:
        result = pipeline.run(sample, trace=True)
    except NstarxError as exc:
        runs = getattr(exc, "runs", None)
        return {"error": exc.message, "node": getattr(exc, "node_id", None), "nodes": runs or {}}
    return {
        "output": plain(result.output),
        "ms": result.ms,
        "nodes": {node: plain(run.as_dict()) for node, run in result.nodes.items()},
    }


def versions(registry: Registry, name: str) -> list[dict[str, Any]]:
    """Every saved version of pipeline `name`, newest first (none when it was never saved)."""
    try:
        saved = PipelineStore(registry).versions(name)
    except NotFoundError:
        return []
    return [{"version": v.version, "message": v.message, "author": v.author,
             "created": v.created.isoformat()} for v in saved]  # fmt: skip


def plain(value: Any) -> Any:
    """JSON-plain (what a widget trait or a JSON answer can carry)."""
    return json.loads(json.dumps(value, default=str))
