"""The data plane every transport calls: health, metadata and inference, with limits and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nstarx_jupyter import __version__
from nstarx_jupyter.errors import (
    ErrorKind,
    InvalidInputError,
    ModelError,
    NstarxError,
)
from nstarx_jupyter.protocol.datatypes import datatype_of
from nstarx_jupyter.protocol.inference import InferenceRequest, InferenceResponse, InferOutput
from nstarx_jupyter.protocol.signature import ModelSignature, bind_inputs
from nstarx_jupyter.serving.auditing import CallAudit
from nstarx_jupyter.serving.graphs import GraphHost
from nstarx_jupyter.serving.model_call import Caller, Decoder, Served, check_outputs, run_model
from nstarx_jupyter.serving.pipelines import PIPELINE_VERSION, PipelineHost
from nstarx_jupyter.serving.repository import LoadedModel, ModelRepository, ModelState
from nstarx_jupyter.serving.settings import registry_models
from nstarx_jupyter.serving.sinks import SinkHub
from nstarx_jupyter.serving.traffic import (
    Logged,
    RequestLog,
    Router,
    ShadowStats,
    TrafficPlan,
    agree,
)

if TYPE_CHECKING:
    from nstarx_jupyter.runtimes.base import Tensors
    from nstarx_jupyter.security import Guard
    from nstarx_jupyter.serving.metrics import ServerMetrics

__all__ = ["EXTENSIONS", "Caller", "DataPlane", "Decoder", "Explainer", "Served"]

log = logging.getLogger(__name__)

EXTENSIONS = ("model_repository", "binary_tensor_data", "parameters")
"""Protocol extensions this server implements, as reported in server metadata."""

Explainer = Callable[[str, list[Any], str | None], Awaitable[dict[str, Any]]]
"""(deployment, rows, class) → the explain answer (`ExplainApi.explain_for_pipeline`)."""

SHADOW_IN_FLIGHT = 32
"""Copies a shadow may have unanswered; past it copies are dropped (and counted), not queued."""
_FALLBACK_ON = (ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL, ErrorKind.DEADLINE_EXCEEDED)
"""Failures a fallback variant answers for; a client's mistake would fail there too."""
_CALLER_MISTAKES = (ErrorKind.INVALID_INPUT, ErrorKind.NOT_FOUND, ErrorKind.UNAUTHENTICATED,
                    ErrorKind.FORBIDDEN, ErrorKind.PAYLOAD_TOO_LARGE)  # fmt: skip
"""Failures that say nothing about the variant: kept out of its error rate."""


class DataPlane:
    """Health, metadata and inference over a `ModelRepository`; transports encode and decode."""

    def __init__(self, repository: ModelRepository, metrics: ServerMetrics, guard: Guard) -> None:
        self.repository = repository
        self.metrics = metrics
        self.guard = guard
        """Who may call what: every transport asks it before it touches a model."""
        guard.registry_models = self.registry_models
        guard.serves = self.serves
        self.audit = CallAudit()
        """Where every call is recorded (who, what, which model and version, status, latency)."""
        self.sinks = SinkHub()
        """Webhooks and files each answered request of a deployment with sinks is queued for."""
        self._routers: dict[str, Router] = {}
        self.logs: dict[str, RequestLog] = {}
        """Recent routed requests per model, for feedback and the A/B report."""
        self.shadows: dict[str, ShadowStats] = {}
        """What each model's shadow variant did with its copies."""
        self._background: set[asyncio.Task[None]] = set()
        self.pipelines = PipelineHost(self)
        """Pipelines served next to the models (their model nodes call back into this plane)."""
        self.graphs = GraphHost(self)
        """KServe InferenceGraphs served next to the models (`nstarx apply -f`)."""
        self.on_predict: Callable[[str, Tensors, Tensors], None] | None = None
        self.explainer: Explainer | None = None
        """The control plane's SHAP explanations of a deployment (pipelines' `explain_shap`
        steps); None without a control API."""
        """Called with each answered request's inputs and outputs (drift detection's tap: it
        must cost about a microsecond, it runs on the request path)."""
        self.draining = False
        """Set when the server is asked to stop: readiness answers not ready while requests are
        still served, so load balancers stop sending before the port closes."""

    def set_traffic(self, name: str, plan: TrafficPlan | None) -> None:
        """Route `name`'s unversioned requests by `plan` (None: to its default version)."""
        if plan is None:
            self._routers.pop(name, None)
            self.shadows.pop(name, None)
            self.logs.pop(name, None)
            return
        self._routers[name] = Router(plan)
        self.logs.setdefault(name, RequestLog())
        if plan.shadow is None:
            self.shadows.pop(name, None)
        elif name not in self.shadows:
            self.shadows[name] = ShadowStats()

    def traffic(self, name: str) -> TrafficPlan | None:
        """The traffic plan of `name`, if it has one."""
        router = self._routers.get(name)
        return router.plan if router is not None else None

    def routes_by_caller(self, name: str) -> bool:
        """Whether `name` is routed: transports pass the caller's headers and address then."""
        return name in self._routers

    def feedback(
        self, name: str, request_id: str, *, value: Any = None, label: Any = None
    ) -> Logged:
        """Record the outcome of a past routed request (see `RequestLog.feedback`)."""
        log = self.logs.get(name)
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
        traffic plan goes where the plan sends it (`caller` holds what rules and sticky splits
        read), falls back when the plan has a fallback, and is copied to the plan's shadow.
        A deployment with sinks gets the decoded inputs and the outputs queued for them.
        """
        feed = self.sinks.feeds.get(name)
        if feed is None:
            if version is not None or name not in self._routers:  # the common case, inline
                model, result = await self._predict(name, version, protocol, decode, outputs,
                                                    all_outputs)  # fmt: skip
                return Served(model, result)
            return await self._route(name, version, protocol, decode, outputs, all_outputs,
                                     caller, request_id)  # fmt: skip
        seen: list[Tensors] = []

        def keep(signature: ModelSignature) -> Tensors:
            tensors = decode(signature)
            seen.append(tensors)
            return tensors

        started = time.perf_counter()
        served = await self._route(name, version, protocol, keep, outputs, all_outputs, caller,
                                   request_id)  # fmt: skip
        feed.offer(served.model.settings.version, served.variant,
                   served.request_id or request_id or "", started, seen[0] if seen else None,
                   served.outputs)  # fmt: skip
        return served

    async def _route(
        self,
        name: str,
        version: str | None,
        protocol: str,
        decode: Decoder,
        outputs: tuple[str, ...] | None,
        all_outputs: bool,
        caller: Caller | None,
        request_id: str | None,
    ) -> Served:
        router = self._routers.get(name) if version is None else None
        if router is None:
            model, result = await self._predict(name, version, protocol, decode, outputs,
                                                all_outputs)  # fmt: skip
            return Served(model, result)
        plan = router.plan
        headers = caller.headers if caller is not None else {}
        choice = router.choose(headers, caller.client if caller is not None else None)
        chosen = choice.version
        request_id = headers.get("x-request-id") or request_id or uuid.uuid4().hex
        started = time.perf_counter()
        try:
            if plan.fallback is None or plan.fallback == chosen:
                model, result = await self._predict(name, chosen, protocol, decode, outputs,
                                                    all_outputs)  # fmt: skip
                served = Served(model, result, plan.label(chosen))
            else:
                served = await self._with_fallback(name, chosen, plan, protocol, decode, outputs,
                                                   all_outputs)  # fmt: skip
        except NstarxError as exc:
            if exc.kind not in _CALLER_MISTAKES:
                self._log(name, request_id, chosen, started, None)
            raise
        served.request_id = request_id
        self._log(name, request_id, served.model.settings.version, started, served.outputs)
        if plan.shadow is not None and plan.shadow != served.model.settings.version:
            signature = served.model.signature
            decisions = signature.default_outputs or signature.output_names()
            compared = {key: served.outputs[key] for key in decisions if key in served.outputs}
            self._copy_to_shadow(name, plan.shadow, decode, all_outputs, compared)
        return served

    def _log(
        self, name: str, request_id: str, version: str, started: float, outputs: Tensors | None
    ) -> None:
        log = self.logs.get(name)
        if log is None:
            return
        prediction = None
        if outputs:
            first = next(iter(outputs.values()))
            if first.ndim == 1 and first.shape[0] == 1:  # an object array holds plain str
                prediction = getattr(first[0], "item", lambda: first[0])()
        seconds = time.perf_counter() - started
        log.record(request_id, Logged(version, time.time(), seconds, outputs is not None,
                                      prediction))  # fmt: skip

    async def _with_fallback(
        self,
        name: str,
        chosen: str,
        plan: TrafficPlan,
        protocol: str,
        decode: Decoder,
        outputs: tuple[str, ...] | None,
        all_outputs: bool,
    ) -> Served:
        fallback = str(plan.fallback)
        try:
            async with asyncio.timeout(plan.fallback_timeout_s):
                model, result = await self._predict(name, chosen, protocol, decode, outputs,
                                                    all_outputs)  # fmt: skip
            return Served(model, result, plan.label(chosen))
        except TimeoutError:
            reason = "timeout"
        except NstarxError as exc:
            if exc.kind not in _FALLBACK_ON:
                raise
            reason = exc.kind.value.lower()
        model, result = await self._predict(name, fallback, protocol, decode, outputs,
                                            all_outputs)  # fmt: skip
        return Served(model, result, plan.label(fallback), reason)

    def _copy_to_shadow(
        self, name: str, version: str, decode: Decoder, all_outputs: bool, primary: Tensors
    ) -> None:
        """Send the request to the shadow in the background.

        `primary` holds the live answer's decision outputs (a classifier's class, not its
        probabilities): the shadow's must match them to count as agreeing.
        """
        stats = self.shadows.setdefault(name, ShadowStats())
        if stats.in_flight >= SHADOW_IN_FLIGHT:
            stats.dropped += 1
            return
        stats.in_flight += 1
        task = asyncio.get_running_loop().create_task(
            self._shadow(name, version, decode, all_outputs, primary, stats)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shadow(
        self,
        name: str,
        version: str,
        decode: Decoder,
        all_outputs: bool,
        primary: Tensors,
        stats: ShadowStats,
    ) -> None:
        started = time.perf_counter()
        try:
            _, result = await self._predict(name, version, "shadow", decode, None, all_outputs)
        except Exception as exc:  # noqa: BLE001 - a shadow's failure is recorded, never raised
            message = exc.message if isinstance(exc, NstarxError) else repr(exc)
            stats.record(time.perf_counter() - started, None, message)
        else:
            stats.record(time.perf_counter() - started, agree(primary, result))
        finally:
            stats.in_flight -= 1

    async def close(self) -> None:
        """Wait for shadow copies still running, then let the sinks deliver what they hold."""
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.get_running_loop().run_in_executor(None, self.sinks.close)

    async def _predict(
        self,
        name: str,
        version: str | None,
        protocol: str,
        decode: Decoder,
        outputs: tuple[str, ...] | None,
        all_outputs: bool,
    ) -> tuple[LoadedModel, Tensors]:
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
                return model, result
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
