"""`PipelineSpec`: the flow editor's JSON, the executor's plan and the registry's versioned text.

A pipeline is a DAG of nodes. Each node names a component of the library (which fixes its kind
and its ports) and carries that component's config; each edge joins an output port of one node
to an input port of another. The spec only checks its own shape: whether the graph makes sense
(cycles, ports, configs, models) is `validate()`'s job, which reports every problem at once,
each attached to a node or an edge, so the editor can mark them all.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nstarx_jupyter.errors import InvalidInputError, first_problem

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ID", "MIGRATIONS", "NAME", "SCHEMA_VERSION", "EdgeSpec", "NodeKind", "NodeSpec",
           "PipelineSpec", "Position", "migrate"]  # fmt: skip

NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
"""A pipeline's name is served like a model's: KServe's rule for InferenceService names."""
ID = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$"
"""Node and edge ids: short, and safe in URLs, CSS selectors and Kubernetes step names."""

NodeKind = Literal["input", "model", "ensemble", "router", "postprocess", "output"]
"""Input processor, model, ensemble, router, post-processor, output formatter."""

KIND_TITLES: dict[str, str] = {
    "input": "Input processors",
    "model": "Models",
    "ensemble": "Ensembles",
    "router": "Routers",
    "postprocess": "Post-processors",
    "output": "Output formatters",
}
"""The palette's sections, in the order a pipeline flows."""


SCHEMA_VERSION = 1
"""The document format this version writes (`schema_version` in every `*.pipeline.json`)."""

MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    # 0 is a document without `schema_version` (hand-written, or from before the field): the
    # fields of 1 with their defaults, so only the number is added.
    0: lambda doc: {**doc, "schema_version": 1},
}
"""For each old format N, the step that turns a document of N into one of N + 1."""


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring a pipeline document to `SCHEMA_VERSION`, one format at a time.

    A document from a newer nstarx_jupyter is refused (guessing would drop what it added).
    """
    version = doc.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise InvalidInputError(f"pipeline spec: schema_version: {version!r} is not a version")
    if version > SCHEMA_VERSION:
        raise InvalidInputError(
            f"pipeline spec: schema_version {version} is newer than this nstarx-jupyter reads "
            f"({SCHEMA_VERSION}): upgrade nstarx-jupyter to open it"
        )
    while version < SCHEMA_VERSION:
        doc = MIGRATIONS[version](doc)
        version = doc["schema_version"]
    return doc


class _Model(BaseModel):
    # The serialization schema marks defaulted fields required: Python always sends them, and
    # the front end's types (generated from that schema) can rely on them.
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class Position(_Model):
    """Where the editor draws a node (canvas coordinates); ignored by the executor."""

    x: float = 0.0
    y: float = 0.0


class NodeSpec(_Model):
    """One step: a library component with its config."""

    id: str = Field(pattern=ID)
    component: str = Field(min_length=1, description="The library name of the component.")
    config: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(default=None, description="Shown on the canvas instead of the id.")
    position: Position = Field(default_factory=Position)


class EdgeSpec(_Model):
    """Rows flowing from `source`'s output port to `target`'s input port."""

    id: str = Field(pattern=ID)
    source: str
    source_port: str = "out"
    target: str
    target_port: str = "in"


class PipelineSpec(_Model):
    """A whole pipeline; the JSON the editor saves, the server runs and the registry versions."""

    schema_version: Literal[1] = 1
    name: str = Field(pattern=NAME.pattern, max_length=63)
    description: str = ""
    nodes: list[NodeSpec] = Field(default_factory=list)
    edges: list[EdgeSpec] = Field(default_factory=list)

    @classmethod
    def parse(cls, doc: Any) -> PipelineSpec:
        """Build from a dict or JSON text, migrated from an older format (`migrate`).

        A malformed document is an `InvalidInputError`.
        """
        if isinstance(doc, (str, bytes)):
            try:
                doc = json.loads(doc)
            except ValueError as exc:
                raise InvalidInputError(f"pipeline spec: not JSON: {exc}") from None
        if isinstance(doc, dict):
            doc = migrate(doc)
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            raise InvalidInputError(f"pipeline spec: {first_problem(exc, 'pipeline')}") from None

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id (`KeyError` if there is none)."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def to_json(self) -> str:
        """Stable JSON text (2-space indent): what is saved in `*.pipeline.json` and versioned."""
        return self.model_dump_json(indent=2) + "\n"
