"""The control API's answers about what the local server serves: pipelines and inference graphs.

Answers like those of `protocol.control` (immutable, fields a newer server adds kept), here
because each carries its spec as the model it is (`PipelineSpec`, `GraphSpec`), which the
protocol layer below cannot import. The server builds them (`serving/pipeline_api.py`,
`serving/graphs.py`) and `LocalBackend` parses them.
"""

from __future__ import annotations

from pydantic import RootModel

from nstarx_jupyter.pipelines.inference_graph import GraphSpec  # noqa: TC001 - pydantic reads it
from nstarx_jupyter.pipelines.spec import PipelineSpec  # noqa: TC001 - pydantic reads it
from nstarx_jupyter.protocol.control import Answer

__all__ = ["GraphList", "GraphView", "PipelineList", "PipelineView"]


class PipelineView(Answer):
    """`GET|PUT /pipelines/{name}`: a served pipeline, its endpoint, nodes, models and spec."""

    name: str
    url: str
    """`/v1/models/NAME/predict`."""
    nodes: int
    models: list[str]
    """The registry models the pipeline brought, served with it (`NAME.NODE`)."""
    created: float
    spec: PipelineSpec


class PipelineList(RootModel[list[PipelineView]]):
    """`GET /pipelines`: the pipelines the caller may manage."""


class GraphView(Answer):
    """`GET|PUT /graphs/{name}`: a served InferenceGraph, its endpoint, services and spec.

    Sent with `exclude_defaults` (the spec as written, without the fields it left unset).
    """

    name: str
    url: str
    """`/v1/models/NAME:predict`."""
    services: list[str]
    """The InferenceServices its steps call, once each, in order."""
    created: float
    spec: GraphSpec


class GraphList(RootModel[list[GraphView]]):
    """`GET /graphs`: the inference graphs the caller may manage."""
