"""The JSON bodies of the REST API as pydantic models: the schemas of the OpenAPI document.

Here: the data plane's (health, metadata, repository, inference) and the shared bases; the
control API's (`/nstarx/v1`) are in `control_bodies`.

The handlers parse bodies with their own codecs (the V2 codec, `DeploymentSpec.build`,
`PipelineSpec.parse`, ...); these models describe the same shapes for `/openapi.json`, and the
schemathesis test (tests/unit/test_openapi.py) checks every answer against them, so a handler
that drifts from its model fails there. Answers allow fields the model does not name (a newer
server may add some); requests forbid them where the handler does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

__all__ = [
    "ClosedBody",
    "ErrorBody",
    "FeedbackRequest",
    "FeedbackResult",
    "Live",
    "ModelList",
    "ModelMetadata",
    "ModelReady",
    "ModelStatus",
    "OpenBody",
    "Ready",
    "RecordsReply",
    "RecordsRequest",
    "RepositoryIndex",
    "RepositoryIndexRequest",
    "RepositoryLoaded",
    "RepositoryUnloaded",
    "ServerMetadata",
    "V1PredictRequest",
    "V1Predictions",
    "V2InferRequest",
    "V2InferResponse",
    "Who",
]

Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                   "INT64", "FP16", "FP32", "FP64", "BYTES"]  # fmt: skip
"""The V2 tensor datatypes the server decodes (`protocol.datatypes.DATATYPES`; a test checks)."""
Who = Annotated[str, Field(min_length=1)]


class OpenBody(BaseModel):
    """A body that may hold fields the model does not name (answers; lenient handlers)."""

    model_config = ConfigDict(extra="allow")


class ClosedBody(BaseModel):
    """A request body whose handler refuses unknown fields (400)."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(OpenBody):
    """Every error answer: `{"error": "what went wrong"}`."""

    error: str


# -- health, metadata, repository -------------------------------------------------------------


class Live(OpenBody):
    """`GET /v2/health/live`."""

    live: bool


class Ready(OpenBody):
    """`GET /v2/health/ready`: true when every model can serve."""

    ready: bool


class ServerMetadata(OpenBody):
    """`GET /v2`: the server's name, version and protocol extensions."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(OpenBody):
    """A declared input or output: `-1` in a shape is a free dimension."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(OpenBody):
    """`GET /v2/models/{name}`: versions, platform, inputs and outputs."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(OpenBody):
    """Whether a model (version) can serve now."""

    name: str
    ready: bool


class RepositoryIndexRequest(OpenBody):
    """`POST /v2/repository/index`: `{"ready": true}` lists ready models only (body optional)."""

    ready: bool = False


class IndexEntry(OpenBody):
    """One model version in the repository index."""

    name: str
    version: str
    state: str
    reason: str | None = None


class RepositoryIndex(RootModel[list[IndexEntry]]):
    """The repository index: the models the caller may read."""


class RepositoryLoaded(OpenBody):
    """`POST /v2/repository/models/{name}/load`."""

    name: str
    load: bool


class RepositoryUnloaded(OpenBody):
    """`POST /v2/repository/models/{name}/unload`."""

    name: str
    unload: bool


class ModelList(OpenBody):
    """`GET /v1/models`: the models the caller may read."""

    models: list[str]


class ModelStatus(OpenBody):
    """`GET /v1/models/{name}`."""

    name: str
    ready: bool


class FeedbackRequest(ClosedBody):
    """The outcome of a past prediction: a reward or conversion (`value`) or the truth (`label`)."""

    request_id: str
    value: float | bool | None = None
    label: str | int | float | bool | None = None


class FeedbackResult(OpenBody):
    """What the feedback was recorded against."""

    request_id: str
    model_version: str
    outcome: Any = None


# -- inference ----------------------------------------------------------------------------------


class InferInputTensor(OpenBody):
    """A V2 input tensor: `data` flat or nested in row-major order, or binary after the JSON."""

    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestedOutput(OpenBody):
    """An output the caller asks for (`parameters.binary_data`: send it binary)."""

    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(OpenBody):
    """Open Inference Protocol (V2) infer request."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInputTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class OutputTensor(OpenBody):
    """A V2 output tensor (`data` absent when it was sent binary)."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2InferResponse(OpenBody):
    """Open Inference Protocol (V2) infer response."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[OutputTensor]


class V1PredictRequest(OpenBody):
    """KServe V1: rows (`instances`, or `inputs`): lists in feature order, or records."""

    instances: list[Any] | None = Field(default=None, min_length=1)
    inputs: list[Any] | None = Field(default=None, min_length=1)


class V1Predictions(OpenBody):
    """KServe V1 answer: the first output, one entry per row."""

    predictions: list[Any]


class RecordsRequest(RootModel[dict[str, Any] | list[dict[str, Any]]]):
    """The product REST API: one record, a list of records, or `{"instances": [[...], ...]}`."""


class RecordsReply(RootModel[dict[str, Any] | list[dict[str, Any]]]):
    """Every output per record: one object for one record, else a list."""
