"""Pipelines served next to the models: `/v1/models/{pipeline}/predict` runs the executor.

Each model node of a served pipeline calls a model of this server through the data plane (the
`Predict` callable a host is given), so it gets the same batching, concurrency limits, metrics
and idle unloading as any model: a `deployment:NAME` node calls that deployment; a registry
version (`models:/NAME/VERSION`) or a file (`file:///path`) is served for the pipeline as a model
of its own, named `PIPELINE.NODE`, loaded with the pipeline and removed with it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    ModelLoadError,
    NotFoundError,
    UnsupportedError,
)
from nstarx_jupyter.model_uri import ModelUri, explained_deployment
from nstarx_jupyter.pipelines import PipelineExecutor, PipelineSpec, component_class
from nstarx_jupyter.protocol.datatypes import as_array
from nstarx_jupyter.protocol.inference import InferenceResponse, InferOutput
from nstarx_jupyter.protocol.records import records_to_tensors, tensors_to_records
from nstarx_jupyter.serving.loading import settings_for_uri

if TYPE_CHECKING:
    from nstarx_jupyter.pipelines import PipelineResult
    from nstarx_jupyter.protocol.inference import InferenceRequest
    from nstarx_jupyter.serving.metrics import ServerMetrics
    from nstarx_jupyter.serving.model_call import Predict
    from nstarx_jupyter.serving.repository import ModelRepository
    from nstarx_jupyter.serving.sinks import SinkHub

__all__ = [
    "PIPELINE_VERSION",
    "Explainer",
    "HostedPipeline",
    "PipelineHost",
    "ServerModels",
    "v2_answer",
    "v2_records",
]

PIPELINE_VERSION = "1"
"""The version a served pipeline reports (its registry versions are the editor's business)."""
Explainer = Callable[[str, list[Any], str | None], Awaitable[dict[str, Any]]]
"""(deployment, rows, class) → the explain answer (`ExplainApi.explain_for_pipeline`)."""


class ServerModels:
    """A pipeline's model nodes, answered by this server's data plane."""

    def __init__(self, host: PipelineHost, served_as: dict[str, str]) -> None:
        self.host = host
        self.served_as = served_as
        """Model URI of a node → the name this server serves it under."""

    async def predict(self, model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row's named outputs, through the data plane (batching, limits, metrics)."""
        found = ModelUri.parse(model)
        name = found.name if found.is_deployment else self.served_as[model]
        served = await self.host.predict(
            name, None, "pipeline", functools.partial(records_to_tensors, rows), all_outputs=True
        )
        return tensors_to_records(served.outputs, served.model.signature)

    async def explain(
        self, model: str, rows: list[dict[str, Any]], label: str | None = None
    ) -> dict[str, Any]:
        """SHAP values of `rows` by a deployment's model: the control API's explain answer."""
        name = explained_deployment(model)
        explainer = self.host.explainer
        if explainer is None:
            raise UnsupportedError(
                "explanations need the server's control API (nstarx serve --state-dir)"
            )
        return await explainer(name, rows, label)

    def exists(self, model: str) -> bool | None:
        """Deployments are known here; other models load with the pipeline."""
        try:
            found = ModelUri.parse(model)
        except InvalidInputError:
            return None  # the pipeline's validation names the malformed reference
        if found.is_deployment:
            return found.name in self.host.repository.names()
        return None


@dataclass
class HostedPipeline:
    """One served pipeline."""

    spec: PipelineSpec
    executor: PipelineExecutor
    own_models: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)


class PipelineHost:
    """The pipelines this server answers, by name."""

    def __init__(
        self,
        repository: ModelRepository,
        metrics: ServerMetrics,
        sinks: SinkHub,
        predict: Predict,
        is_graph: Callable[[str], bool],
    ) -> None:
        self.repository = repository
        self.metrics = metrics
        self.sinks = sinks
        self.predict = predict
        """How model nodes call this server's models (`DataPlane.predict`)."""
        self.is_graph = is_graph
        """Whether an inference graph is served under a name (a pipeline may not take it)."""
        self.explainer: Explainer | None = None
        """The control plane's SHAP explanations of a deployment (`explain_shap` steps); None
        without a control API."""
        self._hosted: dict[str, HostedPipeline] = {}

    def names(self) -> list[str]:
        """The served pipelines' names."""
        return sorted(self._hosted)

    def get(self, name: str) -> HostedPipeline | None:
        """A served pipeline, or None."""
        return self._hosted.get(name)

    def check_name_free(self, name: str) -> None:
        """Refuse a pipeline name that a model or an inference graph already serves under.

        Raises:
            ConflictError: a model or a graph has the name.
        """
        if name in self.repository.names():
            raise ConflictError(f"a model is already served as '{name}'")
        if self.is_graph(name):
            raise ConflictError(f"an inference graph is already served as '{name}'")

    async def put(self, spec: PipelineSpec, *, trusted: bool = True) -> HostedPipeline:
        """Serve `spec` (replacing a pipeline of the same name once the new one is ready).

        `trusted` lets its model files be formats that run code on load (`nstarx serve
        --pipeline`: the owner named it); a pipeline sent over the control API is not.

        Raises:
            InvalidInputError: the pipeline is invalid, or one of its models does not load.
            ConflictError: a model already has the pipeline's name.
        """
        name = spec.name
        repository = self.repository
        self.check_name_free(name)
        served_as = _own_models(spec)
        sinks = self.sinks.opener(name, trusted=trusted)
        executor = PipelineExecutor(spec, ServerModels(self, served_as), sinks)
        missing = [uri for uri in _deployments(spec) if ModelUri.parse(uri).name
                   not in repository.names()]  # fmt: skip
        if missing:
            raise InvalidInputError(f"the pipeline calls '{missing[0]}', which is not deployed")
        loaded: list[str] = []
        try:
            for uri, model_name in served_as.items():
                settings = settings_for_uri(model_name, uri)
                await repository.replace(settings.model_copy(update={"trusted": trusted}))
                loaded.append(model_name)
            await executor.setup()
        except (ModelLoadError, ForbiddenError) as exc:
            for model_name in loaded:
                await repository.remove(model_name)
            if isinstance(exc, ForbiddenError):
                raise
            raise InvalidInputError(f"a model of the pipeline did not load: {exc.message}") from exc
        previous = self._hosted.get(name)
        self._hosted[name] = hosted = HostedPipeline(spec, executor, list(served_as.values()))
        if previous is not None:
            for model_name in set(previous.own_models) - set(hosted.own_models):
                await repository.remove(model_name)
        return hosted

    async def delete(self, name: str) -> None:
        """Stop serving a pipeline and the models it brought."""
        hosted = self._hosted.pop(name, None)
        if hosted is None:
            raise NotFoundError(f"no pipeline '{name}'")
        self.sinks.remove(name)  # its sink steps deliver what they hold, then stop
        for model_name in hosted.own_models:
            if model_name in self.repository.names():
                await self.repository.remove(model_name)

    def metadata(self, name: str) -> dict[str, Any]:
        """V2 metadata of a pipeline.

        Its inputs are the fields its validation schema or its models' feature lists name (one
        batch-first tensor each); its outputs depend on the data, so none are declared.
        """
        hosted = self._hosted.get(name)
        if hosted is None:
            raise NotFoundError(f"no pipeline '{name}'")
        return {"name": name, "versions": [PIPELINE_VERSION], "platform": "nstarx-pipeline",
                "inputs": [{"name": field, "datatype": datatype, "shape": [-1]}
                           for field, datatype in _input_fields(hosted.spec).items()],
                "outputs": []}  # fmt: skip

    async def infer(
        self, name: str, request: InferenceRequest, protocol: str = "v2-rest"
    ) -> dict[str, Any]:
        """Answer a V2 inference request with pipeline `name` (tensors named by field)."""
        result = await self.run(name, v2_records(request), protocol)
        return v2_answer(name, request, result.output)

    async def run(self, name: str, doc: Any, protocol: str = "records") -> PipelineResult:
        """Run one request through pipeline `name`.

        An answered request counts in the pipeline's metrics here; a failed one is counted by
        the transport, as for models.
        """
        hosted = self._hosted.get(name)
        if hosted is None:
            raise NotFoundError(f"no pipeline '{name}'")
        started = time.perf_counter()
        result = await hosted.executor.run(doc)
        seconds = time.perf_counter() - started
        self.metrics.observe_request(name, PIPELINE_VERSION, protocol, "ok", seconds)
        return result


def v2_records(request: InferenceRequest) -> list[dict[str, Any]]:
    """The records of a V2 request to a pipeline: one input tensor per field, batch first."""
    rows = None
    columns: dict[str, list[Any]] = {}
    for tensor in request.inputs:
        data = tensor.data
        if data.ndim == 0:
            raise InvalidInputError(f"input '{tensor.name}': a pipeline takes batch-first tensors")
        if rows is None:
            rows = int(data.shape[0])
        elif data.shape[0] != rows:
            raise InvalidInputError(
                f"input '{tensor.name}': {data.shape[0]} rows where the other inputs have {rows}"
            )
        if data.ndim == 2 and data.shape[1] == 1:
            data = data[:, 0]
        values = data.tolist()
        columns[tensor.name] = [v.decode() if isinstance(v, bytes) else v for v in values]
    if not rows:
        raise InvalidInputError("the request has no rows: send one input tensor per field")
    return [{name: column[i] for name, column in columns.items()} for i in range(rows)]


def v2_answer(name: str, request: InferenceRequest, output: Any) -> dict[str, Any]:
    """A V2 response from a pipeline's answer: one output tensor per field of its records."""
    from nstarx_jupyter.pipelines.library.outputs import v2_tensor  # the library loads on use

    if isinstance(output, dict) and isinstance(output.get("outputs"), list):  # a `v2` formatter
        answer = {**output, "model_name": name}
    else:
        rows = output if isinstance(output, list) else [output]
        fields = list(dict.fromkeys(key for row in rows for key in row))
        answer = {"model_name": name,
                  "outputs": [v2_tensor(field, [row.get(field) for row in rows])
                              for field in fields]}  # fmt: skip
    if request.id is not None:
        answer["id"] = request.id
    return answer


_JSON_TYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


def _input_fields(spec: PipelineSpec) -> dict[str, str]:
    """Field name → V2 datatype, from the first validation schema, else the models' features."""
    for node in spec.nodes:
        schema = node.config.get("schema") if node.component == "validate" else None
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if isinstance(properties, dict) and properties:
            fields = {}
            for field, rule in properties.items():
                kind = rule.get("type") if isinstance(rule, dict) else None
                kinds = [kind] if isinstance(kind, str) else list(kind or [])
                known = [_JSON_TYPES[k] for k in kinds if k in _JSON_TYPES]
                fields[str(field)] = known[0] if len(known) == 1 else "BYTES"
            return fields
    features = [f for node in spec.nodes if node.component == "model"
                for f in node.config.get("features", [])]  # fmt: skip
    return dict.fromkeys(features, "FP64")


def v2_response(answer: dict[str, Any]) -> InferenceResponse:
    """A pipeline's V2 answer (JSON tensors) as a response the gRPC codec encodes."""
    outputs = []
    for tensor in answer["outputs"]:
        shape = tuple(int(n) for n in tensor["shape"])
        data = as_array(tensor["data"], tensor["datatype"], tensor["name"]).reshape(shape)
        outputs.append(InferOutput(tensor["name"], tensor["datatype"], shape, data))
    return InferenceResponse(answer["model_name"], answer.get("model_version"), outputs,
                             answer.get("id"))  # fmt: skip


def _model_nodes(spec: PipelineSpec) -> list[tuple[str, str]]:
    """(node id, model URI) of every node that calls a model."""
    found = []
    for node in spec.nodes:
        cls = component_class(node.component)
        for uri in cls.model_uris(cls.Config.model_validate(node.config)):
            found.append((node.id, uri))
    return found


def _own_models(spec: PipelineSpec) -> dict[str, str]:
    """Registry versions and files the pipeline brings, each served as `PIPELINE.NODE`."""
    own: dict[str, str] = {}
    for node_id, uri in _model_nodes(spec):
        if not ModelUri.parse(uri).is_deployment and uri not in own:
            own[uri] = f"{spec.name}.{node_id}"
    return own


def _deployments(spec: PipelineSpec) -> list[str]:
    return [uri for _, uri in _model_nodes(spec) if ModelUri.parse(uri).is_deployment]
