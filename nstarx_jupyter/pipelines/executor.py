"""Run a pipeline: every node as soon as its inputs are ready, independent branches at once.

A request's records enter the one input node as a `Batch`; each edge hands the batch of its
source port to its target; a node whose inputs are all empty (a router sent no row its way) is
skipped. Each node's latency, rows in and out, and error are recorded, so a test run can show
them on the canvas. An error names its node and keeps its kind: a record the validation step
rejects is the caller's mistake (400), a model that crashes is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import ErrorKind, InvalidInputError, NstarxError
from nstarx_jupyter.pipelines.component import Batch, Component, Context
from nstarx_jupyter.pipelines.validate import Problem, Problems, resolve_nodes, topological_order
from nstarx_jupyter.pipelines.validate import validate as validate_spec
from nstarx_jupyter.protocol.records import leaf_paths, split_records

if TYPE_CHECKING:
    from nstarx_jupyter.pipelines.component import ModelResolver
    from nstarx_jupyter.pipelines.sinks import SinkOpener
    from nstarx_jupyter.pipelines.spec import EdgeSpec, PipelineSpec

__all__ = ["InvalidPipelineError", "NodeError", "NodeRun", "PipelineExecutor", "PipelineResult",
           "flatten_record"]  # fmt: skip

PREVIEW_ROWS = 3
"""Rows of each node's output kept in a traced run (what the canvas shows under the node)."""


class InvalidPipelineError(InvalidInputError):
    """The pipeline cannot run; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        where = f"{first.target} '{first.id}': " if first.id else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"invalid pipeline: {where}{first.message}{more}")
        self.problems = problems


class NodeError(NstarxError):
    """A node failed; the message names it and the error keeps the kind of its cause."""

    def __init__(self, node_id: str, cause: BaseException) -> None:
        if isinstance(cause, NstarxError):
            message, kind = cause.message, cause.kind
        else:
            message, kind = f"{type(cause).__name__}: {cause}", ErrorKind.INTERNAL
        super().__init__(f"node '{node_id}': {message}")
        self.kind = kind
        self.node_id = node_id


@dataclass
class NodeRun:
    """What one node did in one run."""

    node_id: str
    status: str = "pending"
    """ok, skipped (no rows reached it), error, or pending (not reached: an earlier node failed)."""
    ms: float = 0.0
    rows_in: int = 0
    rows_out: int = 0
    error: str | None = None
    preview: Any = None
    """The first rows of its output (traced runs only)."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the editor shows under the node."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class PipelineResult:
    """The response body and, per node, what happened."""

    output: Any
    nodes: dict[str, NodeRun] = field(default_factory=dict)
    ms: float = 0.0


class PipelineExecutor:
    """A validated pipeline, ready to run many requests (one component instance per node)."""

    def __init__(
        self,
        spec: PipelineSpec,
        models: ModelResolver | None = None,
        sinks: SinkOpener | None = None,
    ) -> None:
        """`sinks` is where `sink` steps send records (the server's; None: they only pass on)."""
        problems = validate_spec(spec)
        if problems:
            raise InvalidPipelineError(problems)
        self.spec = spec
        resolved = resolve_nodes(spec, Problems())
        self.nodes: dict[str, Component[Any]] = {}
        for node in spec.nodes:
            found = resolved[node.id]
            assert found.config is not None  # noqa: S101 - validated above
            self.nodes[node.id] = found.cls(found.config, Context(models, node.id, sinks))
        self.incoming: dict[str, list[EdgeSpec]] = defaultdict(list)
        for edge in spec.edges:
            self.incoming[edge.target].append(edge)
        self.order = topological_order(list(self.nodes), spec.edges)
        self.entry = self.order[0]
        self.exit = self.order[-1]
        self._ready = False

    async def setup(self) -> None:
        """Let every component prepare (once; `run` calls it when needed)."""
        if not self._ready:
            await asyncio.gather(*(component.setup() for component in self.nodes.values()))
            self._ready = True

    async def run(self, doc: Any, *, trace: bool = False) -> PipelineResult:
        """Run one request (a record, a list of records, or a pandas DataFrame)."""
        await self.setup()
        members = self._member_answers(doc)
        if members is not None:
            first = [Batch(rows) for rows in members]
            single = all(len(rows) == 1 for rows in members)
        else:
            rows, single = request_records(doc)
            first = [Batch(rows)]
        started = time.perf_counter()
        runs = {node_id: NodeRun(node_id) for node_id in self.order}
        outputs: dict[str, dict[str, Any]] = {}
        tasks: dict[str, asyncio.Task[None]] = {}
        for node_id in self.order:
            before = [tasks[edge.source] for edge in self.incoming[node_id]]
            given = first if node_id == self.entry else []
            step = self._step(node_id, before, given, outputs, runs[node_id], trace)
            tasks[node_id] = asyncio.ensure_future(step)
        try:
            await asyncio.gather(*tasks.values())
        finally:
            for task in tasks.values():
                task.cancel()
            for task in tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        output = outputs[self.exit].get("out")
        ms = (time.perf_counter() - started) * 1000.0
        return PipelineResult(_body(output, single), runs, round(ms, 3))

    def _member_answers(self, doc: Any) -> list[list[dict[str, Any]]] | None:
        """The members' records, when the request is a KServe Ensemble node's answer.

        That is a pipeline that starts with an ensemble, called with `{"member": answer, ...}`
        (an answer being a record or a list of them); None for an ordinary request.
        """
        if self.nodes[self.entry].kind != "ensemble" or not isinstance(doc, dict) or not doc:
            return None
        members = []
        for answer in doc.values():
            rows = [answer] if isinstance(answer, dict) else answer
            if not (isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)):
                return None
            members.append([flatten_record(row) for row in rows])
        return members

    async def _step(
        self,
        node_id: str,
        before: list[asyncio.Task[None]],
        given: list[Batch],
        outputs: dict[str, dict[str, Any]],
        run: NodeRun,
        trace: bool,
    ) -> None:
        if before:
            await asyncio.gather(*before)
        inputs: dict[str, list[Batch]] = defaultdict(list)
        inputs["in"].extend(given)
        for edge in self.incoming[node_id]:
            sent = outputs[edge.source].get(edge.source_port)
            if isinstance(sent, Batch):
                inputs[edge.target_port].append(sent)
        component = self.nodes[node_id]
        run.rows_in = sum(len(batch) for port in inputs.values() for batch in port)
        if run.rows_in == 0:
            run.status = "skipped"
            outputs[node_id] = {
                port.name: Batch([]) for port in component.ports(component.config)[1]
            }
            return
        started = time.perf_counter()
        try:
            result = await component.run(inputs)
        except Exception as exc:
            run.status, run.error = "error", str(exc)
            run.ms = round((time.perf_counter() - started) * 1000.0, 3)
            raise NodeError(node_id, exc) from exc
        run.ms = round((time.perf_counter() - started) * 1000.0, 3)
        run.status = "ok"
        run.rows_out = sum(_size(value) for value in result.values())
        if trace:
            run.preview = {port: _preview(value) for port, value in result.items()}
        outputs[node_id] = result


def request_records(doc: Any) -> tuple[list[dict[str, Any]], bool]:
    """The request's records (nested objects flattened) and whether it was a single record."""
    if hasattr(doc, "to_dict") and hasattr(doc, "columns"):  # a pandas DataFrame
        doc = doc.to_dict(orient="records")
    rows, single = split_records(doc)
    return [flatten_record(row) for row in rows], single


def flatten_record(record: dict[str, Any]) -> dict[str, Any]:
    """`{"transaction": {"amount": 3}}` becomes `{"amount": 3}`.

    Nested fields go by their own name, or by their dotted path where two of them share a name.
    """
    leaves = list(leaf_paths(record))
    if all(len(path) == 1 for path, _ in leaves):
        return record
    counts: dict[str, int] = defaultdict(int)
    for path, _ in leaves:
        counts[path[-1]] += 1
    return {
        (path[-1] if counts[path[-1]] == 1 else ".".join(path)): value for path, value in leaves
    }


def _size(value: Any) -> int:
    if isinstance(value, Batch):
        return len(value)
    if isinstance(value, list):
        return len(value)
    return 1


def _preview(value: Any) -> Any:
    if isinstance(value, Batch):
        return value.rows[:PREVIEW_ROWS]
    if isinstance(value, list):
        return value[:PREVIEW_ROWS]
    return value


def _body(output: Any, single: bool) -> Any:
    """The response body: records in request order, one object for a one-record request."""
    if isinstance(output, Batch):
        output = output.rows
    if single and isinstance(output, list) and len(output) == 1:
        return output[0]
    return output
