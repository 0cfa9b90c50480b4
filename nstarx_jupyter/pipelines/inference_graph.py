"""A KServe InferenceGraph run on the local server, step for step as KServe's router runs it.

The semantics are those of KServe's router (`cmd/router/main.go`), which passes raw JSON bodies:

- `Sequence`: the steps in order; a step gets the graph's request unless its `data` is
  `$response` (then the previous step's answer); `mapPredictionsToInstances` turns a
  `{"predictions": [...]}` answer into `{"instances": [...]}`; a step with a `condition` stops
  the sequence (answering the last answer) when the condition does not hold on that answer; a
  `Hard` step that fails stops it with its answer and status.
- `Switch`: the first step whose `condition` holds on the request (GJSON, `pipelines/gjson.py`);
  none: 404. A step without a condition never matches (`gjson.Get(body, "")` does not exist).
- `Splitter`: one step at random, by `weight` (percent).
- `Ensemble`: every step at once on the request; the answers, each a JSON object, merged into
  one object keyed by step name (its index when unnamed); the first failing `Hard` step's
  answer and status win.

A step calls an InferenceService (`serviceName`, at the path KServe's controller gives it: V1
`:predict` or V2 `/infer` by the service's protocol) or another node (`nodeName`). What KServe
would refuse or what cannot run here (a `serviceUrl`, a condition outside the GJSON subset, a
node type KServe does not have, a cycle) is a problem naming its field, found before serving.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nstarx_jupyter.errors import InvalidInputError, first_problem
from nstarx_jupyter.pipelines.gjson import Condition, compile_condition

__all__ = ["GraphRouter", "GraphSpec", "GraphStep", "ServiceCall", "graph_problems"]

ServiceCall = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]
"""`(service, protocol, body) -> (status, body)`: one InferenceService call, as HTTP would."""

ROUTER_TYPES = ("Sequence", "Switch", "Splitter", "Ensemble")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GraphStep(_Model):
    """One step of a node: KServe's `InferenceStep` fields, by their KServe names."""

    name: str | None = None
    serviceName: str | None = None  # noqa: N815 - KServe's field names, kept for the round trip
    nodeName: str | None = None  # noqa: N815
    serviceUrl: str | None = None  # noqa: N815
    data: str | None = None
    mapPredictionsToInstances: bool = False  # noqa: N815
    weight: int | None = None
    condition: str | None = None
    dependency: Literal["Soft", "Hard"] | None = None


class GraphNode(_Model):
    """A routing node: its type and its steps."""

    routerType: str  # noqa: N815
    steps: list[GraphStep] = Field(default_factory=list)


class GraphSpec(_Model):
    """What the local server serves for an InferenceGraph: its nodes and its services' protocols."""

    name: str = Field(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    nodes: dict[str, GraphNode]
    protocols: dict[str, Literal["v1", "v2"]] = Field(default_factory=dict)
    """Each `serviceName`'s protocol, which picks the path KServe calls it at (default v1)."""
    auth: bool = False
    """Callers need a key (the graph's `security.opendatahub.io/enable-auth` annotation)."""

    @classmethod
    def parse(cls, doc: Any) -> GraphSpec:
        """Build from a dict; a malformed one is an `InvalidInputError`."""
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            raise InvalidInputError(f"graph: {first_problem(exc, 'graph')}") from None

    def services(self) -> list[str]:
        """Every InferenceService a step names, once, in order."""
        found = [s.serviceName for n in self.nodes.values() for s in n.steps if s.serviceName]
        return list(dict.fromkeys(found))


def graph_problems(spec: GraphSpec) -> list[tuple[str, str]]:
    """(field, message) for everything that keeps the graph from running here, in order."""
    problems: list[tuple[str, str]] = []
    if "root" not in spec.nodes:
        problems.append(("spec.nodes", "the entry node must be named 'root'"))
    for node_name, node in spec.nodes.items():
        where = f"spec.nodes.{node_name}"
        if node.routerType not in ROUTER_TYPES:
            problems.append((f"{where}.routerType", f"'{node.routerType}' is not one of "
                             f"{', '.join(ROUTER_TYPES)}"))  # fmt: skip
            continue
        if not node.steps:
            problems.append((f"{where}.steps", "a node needs at least one step"))
        for i, step in enumerate(node.steps):
            problems += _step_problems(spec, node, step, f"{where}.steps[{i}]")
        if node.routerType == "Splitter":
            total = sum(step.weight or 0 for step in node.steps)
            if total != 100:
                problems.append((where, f"a Splitter's weights add up to 100, not {total}"))
    cycle = _cycle(spec)
    if cycle:
        problems.append(("spec.nodes", f"the nodes call each other in a cycle: {cycle}"))
    return problems


def _step_problems(
    spec: GraphSpec, node: GraphNode, step: GraphStep, where: str
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if step.serviceUrl:
        problems.append((f"{where}.serviceUrl", "a URL cannot be called from the local server's "
                         "graph; name the InferenceService with serviceName"))  # fmt: skip
    targets = [key for key in ("serviceName", "nodeName", "serviceUrl") if getattr(step, key)]
    if len(targets) != 1:
        problems.append((where, "exactly one of serviceName, nodeName, serviceUrl"))
    if step.nodeName and step.nodeName not in spec.nodes:
        problems.append((f"{where}.nodeName", f"no node '{step.nodeName}'"))
    if step.data not in (None, "$request", "$response"):
        problems.append((f"{where}.data", f"'{step.data}' is neither $request nor $response"))
    if step.condition is not None and node.routerType in ("Switch", "Sequence"):
        try:
            compile_condition(step.condition)
        except InvalidInputError as exc:
            problems.append((f"{where}.condition", exc.message))
    elif step.condition is not None:
        problems.append((f"{where}.condition", f"a {node.routerType} step has no condition"))
    if node.routerType == "Splitter" and step.weight is None:
        problems.append((f"{where}.weight", "a Splitter step needs a weight"))
    return problems


def _cycle(spec: GraphSpec) -> str | None:
    """A cycle of `nodeName` calls ('a -> b -> a'), or None."""
    calls = {name: [s.nodeName for s in node.steps if s.nodeName in spec.nodes]
             for name, node in spec.nodes.items()}  # fmt: skip
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> str | None:
        if name in path:
            return " -> ".join([*path[path.index(name) :], name])
        if name in done:
            return None
        for callee in calls[name]:
            assert callee is not None  # noqa: S101 - filtered above
            found = visit(callee, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in spec.nodes:
        found = visit(name, [])
        if found:
            return found
    return None


def _json(body: bytes) -> Any:
    """The parsed body, or `_INVALID` (GJSON's `ValidBytes` failing)."""
    try:
        return json.loads(body)
    except ValueError:
        return _INVALID


_INVALID = object()


class _RoutingError(Exception):
    """What KServe's router answers as `{"error": "Failed to process request", "cause": ...}`."""

    def __init__(self, cause: str, status: int = 500) -> None:
        super().__init__(cause)
        self.status = status


class GraphRouter:
    """Runs requests through a validated graph, calling services through `call`."""

    def __init__(self, spec: GraphSpec, call: ServiceCall) -> None:
        problems = graph_problems(spec)
        if problems:
            field, message = problems[0]
            raise InvalidInputError(f"inferencegraph/{spec.name}: {field}: {message}")
        self.spec = spec
        self.call = call
        self.conditions: dict[str, Condition] = {
            step.condition: compile_condition(step.condition)
            for node in spec.nodes.values() for step in node.steps if step.condition
        }  # fmt: skip

    async def route(self, body: bytes) -> tuple[int, bytes]:
        """The graph's answer to one request: status and body, as KServe's router sends them."""
        try:
            status, answer = await self._node("root", body)
        except _RoutingError as exc:
            error = {"error": "Failed to process request", "cause": str(exc)}
            return exc.status, json.dumps(error).encode()
        return status, answer

    async def _node(self, name: str, body: bytes) -> tuple[int, bytes]:
        node = self.spec.nodes[name]
        if node.routerType == "Splitter":
            return await self._step(_pick(node.steps), body)
        if node.routerType == "Switch":
            return await self._switch(node, body)
        if node.routerType == "Ensemble":
            return await self._ensemble(node, body)
        return await self._sequence(node, body)

    async def _step(self, step: GraphStep, body: bytes) -> tuple[int, bytes]:
        if step.nodeName:
            try:
                return await self._node(step.nodeName, body)
            except _RoutingError as exc:  # KServe answers a failed inner node with 500
                raise _RoutingError(str(exc)) from exc
        service = step.serviceName or ""
        return await self.call(service, self.spec.protocols.get(service, "v1"), body)

    async def _switch(self, node: GraphNode, body: bytes) -> tuple[int, bytes]:
        doc = _json(body)
        if doc is not _INVALID:
            for step in node.steps:
                if step.condition and self.conditions[step.condition].exists(doc):
                    return await self._step(step, body)
        raise _RoutingError("None of the routes matched with the switch condition", 404)

    async def _ensemble(self, node: GraphNode, body: bytes) -> tuple[int, bytes]:
        answers = await asyncio.gather(*(self._step(step, body) for step in node.steps))
        merged: dict[str, Any] = {}
        for i, (step, (status, answer)) in enumerate(zip(node.steps, answers, strict=True)):
            doc = _json(answer)
            if not isinstance(doc, dict):
                raise _RoutingError(f"step {step.name or i} did not answer a JSON object")
            if not 200 <= status <= 299 and step.dependency == "Hard":
                return status, json.dumps(doc).encode()
            merged[step.name or str(i)] = doc
        return 200, json.dumps(merged).encode()

    async def _sequence(self, node: GraphNode, body: bytes) -> tuple[int, bytes]:
        status, answer = 200, b""
        for i, step in enumerate(node.steps):
            request = answer if step.data == "$response" and i > 0 else body
            if step.mapPredictionsToInstances:
                request = _predictions_to_instances(request)
            if step.condition:
                doc = _json(answer)
                if doc is _INVALID:
                    raise _RoutingError("invalid response")
                if not self.conditions[step.condition].exists(doc):
                    return 200, answer
            status, answer = await self._step(step, request)
            if step.dependency == "Hard" and not 200 <= status <= 299:
                return status, answer
        return status, answer


def _pick(steps: list[GraphStep]) -> GraphStep:
    """KServe's `pickupRoute`: a point in 0..99, the step whose cumulative weight passes it."""
    point = secrets.randbelow(100)
    end = 0
    for step in steps:
        end += step.weight or 0
        if point < end:
            return step
    raise _RoutingError("no route was selected by the splitter")


def _predictions_to_instances(request: bytes) -> bytes:
    """KServe's `mapPredictionsToInstances`: only `instances` is kept, as its struct does."""
    doc = _json(request)
    if isinstance(doc, dict) and isinstance(doc.get("predictions"), list) and doc["predictions"]:
        kept = {"instances": doc["predictions"]}
        return json.dumps(kept).encode()
    return request
