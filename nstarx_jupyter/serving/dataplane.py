"""The data plane every transport calls: health, metadata and inference, with limits and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from nstarx_jupyter import __version__
from nstarx_jupyter.errors import HTTP_STATUS, InvalidInputError, ModelError, NstarxError
from nstarx_jupyter.protocol import v1, v2
from nstarx_jupyter.protocol.datatypes import datatype_of
from nstarx_jupyter.protocol.inference import InferenceRequest, InferenceResponse, InferOutput
from nstarx_jupyter.protocol.records import rename_fields, tensors_to_records
from nstarx_jupyter.protocol.signature import ModelSignature, bind_inputs
from nstarx_jupyter.serving.audit_trail import CallAudit
from nstarx_jupyter.serving.dispatch import Dispatcher
from nstarx_jupyter.serving.graphs import GraphHost
from nstarx_jupyter.serving.model_call import (
    Ask,
    Caller,
    Decoder,
    Served,
    check_outputs,
    run_model,
)
from nstarx_jupyter.serving.pipeline_host import PIPELINE_VERSION, PipelineHost
from nstarx_jupyter.serving.records import is_records_body, records_decoder
from nstarx_jupyter.serving.repository import ModelRepository, ModelState
from nstarx_jupyter.serving.settings import registry_models
from nstarx_jupyter.serving.sinks import SinkHub
from nstarx_jupyter.traffic import TrafficTable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nstarx_jupyter.runtimes.base import Tensors
    from nstarx_jupyter.security import DeploymentFacts, Guard
    from nstarx_jupyter.serving.metrics import ServerMetrics
    from nstarx_jupyter.traffic import Logged, TrafficPlan

__all__ = ["EXTENSIONS", "Caller", "DataPlane", "Decoder", "Served"]

log = logging.getLogger(__name__)

EXTENSIONS = ("model_repository", "binary_tensor_data", "parameters")
"""Protocol extensions this server implements, as reported in server metadata."""

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class DataPlane:
    """Health, metadata and inference over a `ModelRepository`; transports encode and decode."""

    def __init__(
        self,
        repository: ModelRepository,
        metrics: ServerMetrics,
        guard: Callable[[DeploymentFacts], Guard],
        sinks: SinkHub | None = None,
    ) -> None:
        self.repository = repository
        self.metrics = metrics
        self.guard = guard(self)
        """Who may call what: every transport asks it before it touches a model (built with
        this plane as its deployment facts: what is served, on which registry models)."""
        self.audit = CallAudit()
        """Where every call is recorded (who, what, which model and version, status, latency)."""
        self.sinks = sinks if sinks is not None else SinkHub()
        """Webhooks and files each answered request of a deployment with sinks is queued for."""
        self.routes = TrafficTable()
        """Per routed model: its router, request log and shadow statistics."""
        self._routed = self.routes.routers
        """The routed models (the table's own dict): every request looks its name up here."""
        self.dispatcher = Dispatcher(self.routes, self.call)
        """Where a routed request goes: the version its plan picks, the fallback, the shadow."""
        self.pipelines = PipelineHost(repository, metrics, self.sinks, self.predict,
                                      lambda name: self.graphs.get(name) is not None)  # fmt: skip
        """Pipelines served next to the models (their model nodes call back into this plane)."""
        self.graphs = GraphHost(repository, self.pipelines, self.guard, metrics, self.graph_step)
        """KServe InferenceGraphs served next to the models (`nstarx apply -f`)."""
        self.on_predict: Callable[[str, Tensors, Tensors], None] | None = None
        """Called with each answered request's inputs and outputs (drift detection's tap: it
        must cost about a microsecond, it runs on the request path)."""
        self.draining = False
        """Set when the server is asked to stop: readiness answers not ready while requests are
        still served, so load balancers stop sending before the port closes."""

    def set_traffic(self, name: str, plan: TrafficPlan | None) -> None:
        """Route `name`'s unversioned requests by `plan` (None: to its default version)."""
        self.routes.set(name, plan)

    def traffic(self, name: str) -> TrafficPlan | None:
        """The traffic plan of `name`, if it has one."""
        return self.routes.plan(name)

    def routes_by_caller(self, name: str) -> bool:
        """Whether `name` is routed: transports pass the caller's headers and address then."""
        return name in self._routed

    def feedback(
        self, name: str, request_id: str, *, value: Any = None, label: Any = None
    ) -> Logged:
        """Record the outcome of a past routed request (see `RequestLog.feedback`)."""
        log = self.routes.logs.get(name)
        if log is None:
            self.repository.entry(name)  # an unknown name is a 404 naming the model
            raise InvalidInputError(f"'{name}' is not a deployment: it keeps no request log")
        return log.feedback(request_id, value=value, label=label)

    def serves(self, name: str) -> bool:
        """Whether `name` is a model, pipeline or inference graph of this server."""
        return (name in self.repository.names() or self.pipelines.get(name) is not None
                or self.graphs.get(name) is not None)  # fmt: skip

    def registry_models(self, name: str) -> list[str]:
        """The registry models (`models:/NAME/...`) that the versions of `name` serve."""
        with contextlib.suppress(NstarxError):
            versions = self.repository.versions(name)
            return registry_models(self.repository.entry(name, v).settings.storage_uri
                                   for v in versions)  # fmt: skip
        return []

    def server_metadata(self) -> dict[str, Any]:
        """Return the V2 server metadata document."""
        return {"name": "nstarx", "version": __version__, "extensions": list(EXTENSIONS)}

    def ready(self) -> bool:
        """Say whether every model can serve (scaled-to-zero models count: they load on demand).

        Like KServe's and Triton's (strict) readiness: one `FAILED` model makes the server not
        ready, although the others serve; so does draining before a shutdown.
        """
        if self.draining:
            return False
        return all(
            entry.state is ModelState.READY
            or (entry.settings.min_replicas == 0 and entry.auto_load and not entry.reason)
            for entry in self.repository.entries()
        )

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Say whether a model version is loaded; raise `ModelNotFoundError` for unknown ones."""
        if version is None and self.pipelines.get(name) is not None:
            return not self.draining  # a served pipeline's models loaded before it answered
        state = self.repository.entry(name, version).state  # an unknown model is a 404
        return state is ModelState.READY and not self.draining

    async def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Return V2 model metadata, derived from the loaded model (loading it if never loaded)."""
        if version is None and self.pipelines.get(name) is not None:
            return self.pipelines.metadata(name)
        entry = self.repository.entry(name, version)
        async with self.repository.use(name, version) as model:
            signature = model.signature
        meta: dict[str, Any] = {
            "name": name,
            "versions": self.repository.versions(name),
            "platform": signature.platform,
            "inputs": [spec.to_json() for spec in signature.inputs],
            "outputs": [spec.to_json() for spec in signature.outputs],
        }
        if version is not None:
            meta["versions"] = [entry.settings.version]
        return meta

    def repository_index(self, *, ready_only: bool = False) -> list[dict[str, str]]:
        """Return the repository extension's index: name, version, state and reason per model."""
        index = []
        for entry in self.repository.entries():
            if ready_only and entry.state is not ModelState.READY:
                continue
            row = {"name": entry.settings.name, "version": entry.settings.version}
            row["state"] = entry.state.value
            if entry.reason:
                row["reason"] = entry.reason
            index.append(row)
        return index

    def counting_rejections(self, name: str, version: str | None, protocol: str) -> Rejections:
        """Count a client mistake caught before `predict` (an unreadable body, bad tensors).

        `predict` counts everything after; this covers what a transport decodes first, so a
        malformed request shows in `nstarx_requests` with its status like any other.
        """
        return Rejections(self, name, version, protocol)

    def _labels(self, name: str, version: str | None) -> tuple[str, str]:
        """Metric labels: unknown names share one label so clients cannot grow the series."""
        if version is None and self.pipelines.get(name) is not None:
            return name, PIPELINE_VERSION
        try:
            return name, self.repository.entry(name, version).settings.version
        except NstarxError:
            return "_unknown_", ""

    async def predict(
        self,
        name: str,
        version: str | None,
        protocol: str,
        decode: Decoder,
        outputs: tuple[str, ...] | None = None,
        *,
        all_outputs: bool = False,
        caller: Caller | None = None,
        request_id: str | None = None,
    ) -> Served:
        """Decode a request against the model's signature and predict, recording metrics.

        `outputs` names the outputs wanted (the model's defaults when None); `all_outputs` asks
        for every output the model declares. A request without a version to a model under a
        traffic plan goes through the dispatcher, which sends it where the plan says (`caller`
        holds what rules and sticky splits read), falls back and copies it to the plan's shadow.
        A deployment with sinks gets the decoded inputs and the outputs queued for them.
        """
        feed = self.sinks.feeds.get(name)
        if feed is None:
            if version is not None or name not in self._routed:  # the common case, inline
                return await self._predict(name, version, protocol, decode, outputs, all_outputs)
            ask = Ask(name, protocol, decode, outputs, all_outputs)
            return await self.dispatcher.dispatch(ask, version, caller, request_id)
        seen: list[Tensors] = []

        def keep(signature: ModelSignature) -> Tensors:
            tensors = decode(signature)
            seen.append(tensors)
            return tensors

        started = time.perf_counter()
        ask = Ask(name, protocol, keep, outputs, all_outputs)
        served = await self.dispatcher.dispatch(ask, version, caller, request_id)
        feed.offer(served.model.settings.version, served.variant,
                   served.request_id or request_id or "", started, seen[0] if seen else None,
                   served.outputs)  # fmt: skip
        return served

    def call(self, ask: Ask, version: str | None, *, shadow: bool = False) -> Awaitable[Served]:
        """One version's answer to `ask`, with metrics (the dispatcher's `ModelCall`)."""
        if shadow:  # the model's default outputs, counted apart, not tapped for drift
            return self._predict(ask.name, version, "shadow", ask.decode, None, ask.all_outputs)
        return self._predict(ask.name, version, ask.protocol, ask.decode, ask.outputs,
                             ask.all_outputs)  # fmt: skip

    async def close(self) -> None:
        """Wait for shadow copies still running, then let the sinks deliver what they hold."""
        await self.dispatcher.close()
        await asyncio.get_running_loop().run_in_executor(None, self.sinks.close)

    async def _predict(
        self,
        name: str,
        version: str | None,
        protocol: str,
        decode: Decoder,
        outputs: tuple[str, ...] | None,
        all_outputs: bool,
    ) -> Served:
        started = time.perf_counter()
        label_model, label_version, status = "_unknown_", "", "ok"
        try:
            entry = self.repository.entry(name, version)
            label_model, label_version = name, entry.settings.version
            async with self.repository.use(name, version) as model:
                inputs = decode(model.signature)
                if all_outputs:
                    outputs = model.signature.output_names()
                wanted = check_outputs(model.signature, outputs)
                result = await run_model(model, inputs, wanted)
                if self.on_predict is not None and protocol != "shadow":
                    self.on_predict(name, inputs, result)
                return Served(model, result)
        except NstarxError as exc:
            status = exc.kind.value.lower()
            raise
        except Exception as exc:  # the model crashed: count it, name it, keep the trace
            status = "internal"
            log.exception("model %s version %s failed", name, label_version)
            raise ModelError(f"model '{name}' failed: {type(exc).__name__}") from exc
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe_request(label_model, label_version, protocol, status, seconds)

    async def infer(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        protocol: str,
        caller: Caller | None = None,
    ) -> tuple[InferenceResponse, Served]:
        """Run a V2 inference request; returns the response and who answered it."""
        served = await self.predict(
            name,
            version,
            protocol,
            lambda sig: bind_inputs(sig, request.tensors()),
            request.output_names(),
            caller=caller,
            request_id=request.id,
        )
        response = InferenceResponse(
            model_name=name,
            model_version=served.model.settings.version,
            id=request.id,
            outputs=[
                InferOutput(key, datatype_of(array), tuple(array.shape), array)
                for key, array in served.outputs.items()
            ],
        )
        return response, served

    async def answer_records(
        self,
        name: str,
        version: str | None,
        doc: Any,
        caller: Caller | None = None,
        protocol: str = "records",
    ) -> tuple[bytes, Served | None]:
        """The product endpoint's answer to `doc`, and what served it (None for a pipeline).

        Wherever records arrive: the product path, and the V1/V2 paths (serving/records.py).
        """
        with self.counting_rejections(name, version, protocol):
            if self.pipelines.get(name) is not None and version is None:
                result = await self.pipelines.run(name, doc)
                return orjson.dumps(result.output, option=_NUMPY), None
            decode, single = records_decoder(doc)
        served = await self.predict(
            name, version, protocol, decode, all_outputs=True, caller=caller
        )
        rows = rename_fields(tensors_to_records(served.outputs, served.model.signature),
                             served.model.settings.output_names)  # fmt: skip
        return orjson.dumps(rows[0] if single else rows, option=_NUMPY), served

    async def graph_step(self, service: str, protocol: str, body: bytes) -> tuple[int, bytes]:
        """A graph step's call of deployment `service` (`GraphHost`'s `StepCall`).

        Answered as its REST endpoint would answer: a failure as its status and `{"error": ...}`.
        """
        try:
            doc = v2.loads(body)
            if is_records_body(doc, protocol):  # the nstarx runtime answers records there too
                return 200, (await self.answer_records(service, None, doc))[0]
            if protocol == "v2":
                request = v2.request_from_doc(doc)
                response, _ = await self.infer(service, None, request, "v2-rest")
                content, _ = v2.encode_response(response, request)
                return 200, content
            served = await self.predict(
                service, None, "v1", lambda signature: v1.decode_instances(doc, signature)
            )
            return 200, orjson.dumps(v1.encode_predictions(served.outputs), option=_NUMPY)
        except NstarxError as exc:
            return HTTP_STATUS[exc.kind], orjson.dumps({"error": exc.message})


class Rejections:
    """Context manager from `DataPlane.counting_rejections`: records a request that failed."""

    __slots__ = ("_dataplane", "_name", "_protocol", "_started", "_version")

    def __init__(self, dataplane: DataPlane, name: str, version: str | None, protocol: str) -> None:
        self._dataplane, self._name, self._version = dataplane, name, version
        self._protocol = protocol
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, NstarxError):
            model, version = self._dataplane._labels(self._name, self._version)
            seconds = time.perf_counter() - self._started
            status = exc.kind.value.lower()
            self._dataplane.metrics.observe_request(model, version, self._protocol, status, seconds)
