"""`PipelineSpec`: the flow editor's JSON, the executor's plan and the registry's versioned text.

A pipeline is a DAG of nodes. Each node names a component of the library (which fixes its kind
and its ports) and carries that component's config; each edge joins an output port of one node
to an input port of another. The spec only checks its own shape: whether the graph makes sense
(cycles, ports, configs, models) is `validate()`'s job, which reports every problem at once,
each attached to a node or an edge, so the editor can mark them all.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nstarx_jupyter.errors import InvalidInputError

__all__ = ["ID", "NAME", "EdgeSpec", "NodeKind", "NodeSpec", "PipelineSpec", "Position"]

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
        """Build from a dict or JSON text; a malformed document is an `InvalidInputError`."""
        try:
            if isinstance(doc, (str, bytes)):
                return cls.model_validate_json(doc)
            return cls.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "pipeline"
            raise InvalidInputError(f"pipeline spec: {where}: {first['msg']}") from None

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id (`KeyError` if there is none)."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def to_json(self) -> str:
        """Stable JSON text (2-space indent): what is saved in `*.pipeline.json` and versioned."""
        return self.model_dump_json(indent=2) + "\n"
