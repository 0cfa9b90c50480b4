"""Every mistake in a pipeline at once, each attached to the node or edge the editor marks.

The editor calls `validate` after every edit (through the widget's comm); the executor calls it
before it runs anything, so the two can never disagree about what a valid pipeline is.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import ValidationError

from nstarx_jupyter.errors import NotFoundError
from nstarx_jupyter.pipelines.component import accepts
from nstarx_jupyter.pipelines.palette import component_class

if TYPE_CHECKING:
    from collections.abc import Callable

    from nstarx_jupyter.pipelines.component import Component, ComponentConfig, Port
    from nstarx_jupyter.pipelines.spec import EdgeSpec, NodeSpec, PipelineSpec

__all__ = ["Problem", "Problems", "Resolved", "resolve_nodes", "topological_order", "validate"]


class Problem(NamedTuple):
    """One mistake: what it is attached to, a stable code and a sentence for the user."""

    target: Literal["node", "edge", "pipeline"]
    id: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the editor reads."""
        return self._asdict()


class Problems(list[Problem]):
    """Problems found so far, with one short call per kind of target."""

    def node(self, node_id: str, code: str, message: str) -> None:
        """A problem of one node."""
        self.append(Problem("node", node_id, code, message))

    def edge(self, edge_id: str, code: str, message: str) -> None:
        """A problem of one edge."""
        self.append(Problem("edge", edge_id, code, message))

    def pipeline(self, code: str, message: str) -> None:
        """A problem of the whole pipeline."""
        self.append(Problem("pipeline", None, code, message))


class Resolved(NamedTuple):
    """A node's component class, its parsed config (None if invalid) and its ports."""

    cls: type[Component[Any]]
    config: ComponentConfig | None
    inputs: dict[str, Port]
    outputs: dict[str, Port]


def resolve_nodes(spec: PipelineSpec, report: Problems) -> dict[str, Resolved]:
    """Each node's component, config and ports; unknown components and bad configs are noted."""
    resolved: dict[str, Resolved] = {}
    for node in spec.nodes:
        if node.id in resolved:
            continue  # reported as a duplicate id
        try:
            cls = component_class(node.component)
        except NotFoundError as exc:
            report.node(node.id, "unknown-component", exc.message)
            continue
        config = _config(cls, node, report)
        inputs, outputs = cls.ports(config)
        resolved[node.id] = Resolved(cls, config, {p.name: p for p in inputs},
                                     {p.name: p for p in outputs})  # fmt: skip
    return resolved


def _config(cls: type[Component[Any]], node: NodeSpec, report: Problems) -> ComponentConfig | None:
    try:
        config = cls.Config.model_validate(node.config)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "config"
            if error["type"] == "missing":
                report.node(node.id, "missing-config", f"missing required config '{field}'")
            else:
                report.node(node.id, "invalid-config", f"config '{field}': {error['msg']}")
        return None
    for message in cls.problems(config):
        report.node(node.id, "invalid-config", message)
    for message in cls.unfitted(config):
        report.node(node.id, "not-fitted", message)
    return config


def validate(
    spec: PipelineSpec, *, model_exists: Callable[[str], bool | None] | None = None
) -> list[Problem]:
    """Every problem of `spec`; an empty list means the pipeline can run.

    Checked: ids, components, configs, edges, ports and their types, cycles, the single input
    and output, routers' defaults, ensembles' members and, with `model_exists`, the models.
    """
    report = Problems()
    if not spec.nodes:
        report.pipeline("empty", "the pipeline has no nodes")
        return list(report)
    _duplicates(spec, report)
    nodes = resolve_nodes(spec, report)
    edges = _edges(spec, nodes, report)
    _connections(spec, nodes, edges, report)
    _cycles(spec, edges, report)
    if model_exists is not None:
        for node in spec.nodes:
            found = nodes.get(node.id)
            if found is None or found.config is None:
                continue
            for uri in found.cls.model_uris(found.config):
                if model_exists(uri) is False:
                    report.node(node.id, "unknown-model", f"unknown model '{uri}'")
    return list(report)


def _duplicates(spec: PipelineSpec, report: Problems) -> None:
    for item, count in Counter(node.id for node in spec.nodes).items():
        if count > 1:
            report.node(item, "duplicate-id", f"{count} nodes share the id '{item}'")
    for item, count in Counter(edge.id for edge in spec.edges).items():
        if count > 1:
            report.edge(item, "duplicate-id", f"{count} edges share the id '{item}'")


def _edges(spec: PipelineSpec, nodes: dict[str, Resolved], report: Problems) -> list[EdgeSpec]:
    """The edges that join two known ports with compatible types (the others are reported)."""
    known = {node.id for node in spec.nodes}
    good: list[EdgeSpec] = []
    seen: set[tuple[str, str, str, str]] = set()
    for edge in spec.edges:
        ends = [end for end in (edge.source, edge.target) if end not in known]
        if ends:
            report.edge(edge.id, "dangling-edge", f"the edge leads to no node '{ends[0]}'")
            continue
        if edge.source == edge.target:
            report.edge(edge.id, "cycle", "a node cannot feed itself")
            continue
        source, target = nodes.get(edge.source), nodes.get(edge.target)
        if source is None or target is None:
            continue  # an unknown component: its ports are unknown too
        out = source.outputs.get(edge.source_port)
        into = target.inputs.get(edge.target_port)
        if out is None:
            report.edge(
                edge.id,
                "unknown-port",
                f"'{edge.source}' has no output '{edge.source_port}' "
                f"(it has {_names(source.outputs)})",
            )
            continue
        if into is None:
            report.edge(
                edge.id,
                "unknown-port",
                f"'{edge.target}' has no input '{edge.target_port}' "
                f"(it has {_names(target.inputs)})",
            )
            continue
        if not accepts(into.type, out.type):
            report.edge(
                edge.id,
                "incompatible-ports",
                f"'{edge.source}' sends {out.type} but '{edge.target}' takes {into.type}",
            )
            continue
        key = (edge.source, edge.source_port, edge.target, edge.target_port)
        if key in seen:
            report.edge(edge.id, "duplicate-edge", "the same two ports are already connected")
            continue
        seen.add(key)
        good.append(edge)
    return good


def _names(ports: dict[str, Port]) -> str:
    return ", ".join(f"'{name}'" for name in ports) or "none"


def _connections(
    spec: PipelineSpec, nodes: dict[str, Resolved], edges: list[EdgeSpec], report: Problems
) -> None:
    """One input node, one output node, every port that must be connected connected."""
    incoming: dict[str, list[EdgeSpec]] = defaultdict(list)
    outgoing: dict[str, list[EdgeSpec]] = defaultdict(list)
    for edge in edges:
        incoming[edge.target].append(edge)
        outgoing[edge.source].append(edge)
    node_ids = list(dict.fromkeys(node.id for node in spec.nodes))
    entries = [n for n in node_ids if not incoming[n]]
    exits = [n for n in node_ids if not outgoing[n]]
    _single(entries, "input", report)
    _single(exits, "output", report)
    for node_id in node_ids:
        found = nodes.get(node_id)
        if found is not None:
            entry = bool(entries) and node_id == entries[0]
            _node_ports(node_id, found, incoming[node_id], outgoing[node_id], entry, report)


def _single(ends: list[str], what: str, report: Problems) -> None:
    """Exactly one node takes the request (`input`) and exactly one gives the response."""
    if not ends:
        role = "takes the request" if what == "input" else "gives the response"
        report.pipeline(f"no-{what}", f"no node {role}: every node has an {what} edge")
    for extra in ends[1:]:
        if what == "input":
            message = f"nothing flows into '{extra}': only one node may take the request"
        else:
            message = f"'{extra}' leads nowhere: only one node may give the response"
        report.node(extra, f"several-{what}s", f"{message} (here '{ends[0]}' does)")


def _node_ports(
    node_id: str,
    found: Resolved,
    incoming: list[EdgeSpec],
    outgoing: list[EdgeSpec],
    entry: bool,
    report: Problems,
) -> None:
    """Required inputs connected, ensembles with members, routers with every branch going on."""
    connected_in = {edge.target_port for edge in incoming}
    for port in found.inputs.values():
        if port.required and port.name not in connected_in and not entry:
            report.node(node_id, "unconnected-input", f"input '{port.name}' is not connected")
    if found.cls.kind == "ensemble" and len(incoming) < 2 and not entry:  # at the entry, the
        # request carries the members' answers (a KServe Ensemble node's, keyed by member)
        report.node(node_id, "ensemble-members", "an ensemble needs at least two inputs")
    if found.cls.kind != "router" or found.config is None:
        return
    connected_out = {edge.source_port for edge in outgoing}
    default = str(getattr(found.config, "default", "default"))
    if default not in connected_out:
        report.node(node_id, "router-default", f"the router's default branch '{default}' is not "
                    "connected: rows that match no branch would be lost")  # fmt: skip
    for name in found.outputs:
        if name != default and name not in connected_out:
            report.node(node_id, "unconnected-output", f"branch '{name}' leads nowhere")


def _cycles(spec: PipelineSpec, edges: list[EdgeSpec], report: Problems) -> None:
    """Each edge inside a cycle, with the cycle it closes (the user deletes one of them)."""
    node_ids = list(dict.fromkeys(node.id for node in spec.nodes))
    left = set(node_ids) - set(topological_order(node_ids, edges))  # in or after a cycle
    inside = [edge for edge in edges if edge.source in left and edge.target in left]
    reach = {node: _reachable(node, inside) for node in left}
    done: set[str] = set()
    for node in node_ids:
        if node not in left or node in done or node not in reach[node]:
            continue
        group = [other for other in node_ids if other in reach[node] and node in reach[other]]
        done.update(group)
        loop = " → ".join([*group, group[0]])
        for edge in inside:
            if edge.source in group and edge.target in group:
                report.edge(edge.id, "cycle", f"part of a cycle: {loop}")


def _reachable(start: str, edges: list[EdgeSpec]) -> set[str]:
    """The nodes a path of one or more edges leads to from `start`."""
    successors: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        successors[edge.source].append(edge.target)
    seen: set[str] = set()
    todo = list(successors[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(successors[node])
    return seen


def topological_order(node_ids: list[str], edges: list[EdgeSpec]) -> list[str]:
    """Nodes so that every edge goes forward (Kahn's algorithm, stable in `node_ids` order)."""
    indegree = dict.fromkeys(node_ids, 0)
    successors: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        successors[edge.source].append(edge.target)
        indegree[edge.target] += 1
    ready = [n for n in node_ids if indegree[n] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for target in successors[node]:
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return order
