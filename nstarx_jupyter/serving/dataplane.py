"""The data plane every transport calls: health, metadata and inference, with limits and metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nstarx_jupyter import __version__
from nstarx_jupyter.errors import (
    DeadlineExceededError,
    InvalidInputError,
    NstarxError,
)
from nstarx_jupyter.protocol.datatypes import datatype_of
from nstarx_jupyter.protocol.inference import InferenceRequest, InferenceResponse, InferOutput
from nstarx_jupyter.protocol.signature import ModelSignature, bind_inputs
from nstarx_jupyter.runtimes.base import Tensors
from nstarx_jupyter.serving.repository import LoadedModel, ModelRepository, ModelState

if TYPE_CHECKING:
    from nstarx_jupyter.security import Guard
    from nstarx_jupyter.serving.metrics import ServerMetrics

__all__ = ["EXTENSIONS", "DataPlane", "Decoder"]

EXTENSIONS = ("model_repository", "binary_tensor_data", "parameters")
"""Protocol extensions this server implements, as reported in server metadata."""

Decoder = Callable[[ModelSignature], Tensors]
"""Turns a request into the model's input tensors once the model's signature is known."""


class DataPlane:
    """Health, metadata and inference over a `ModelRepository`; transports encode and decode."""

    def __init__(
        self, repository: ModelRepository, metrics: ServerMetrics, guard: Guard | None = None
    ) -> None:
        self.repository = repository
        self.metrics = metrics
        self.guard = guard
        """API keys for protected deployments (None: every model is open, as in KServe)."""

    def authorize(self, name: str, authorization: str | None, *, admin: bool = False) -> None:
        """Check the caller's `Authorization` header against the model's protection.

        Raises:
            UnauthenticatedError: the model needs a key and none valid was sent.
            ForbiddenError: the key does not cover the model (or the call needs the admin).
        """
        if self.guard is not None:
            self.guard.check(name, authorization, admin=admin)

    def protects(self, name: str) -> bool:
        """Whether calls to `name` need a key: transports read the header only then."""
        return self.guard is not None and name in self.guard.protected

    def server_metadata(self) -> dict[str, Any]:
        """Return the V2 server metadata document."""
        return {"name": "nstarx", "version": __version__, "extensions": list(EXTENSIONS)}

    def ready(self) -> bool:
        """Say whether every model can serve (scaled-to-zero models count: they load on demand)."""
        return all(
            entry.state is ModelState.READY
            or (entry.settings.min_replicas == 0 and entry.auto_load and not entry.reason)
            for entry in self.repository.entries()
        )

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Say whether a model version is loaded; raise `ModelNotFoundError` for unknown ones."""
        return self.repository.entry(name, version).state is ModelState.READY

    async def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Return V2 model metadata, derived from the loaded model (loading it if never loaded)."""
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
    ) -> tuple[LoadedModel, Tensors]:
        """Decode a request against the model's signature and predict, recording metrics.

        `outputs` names the outputs wanted (the model's defaults when None); `all_outputs` asks
        for every output the model declares.
        """
        started = time.perf_counter()
        label_model, label_version, status = "_unknown_", "", "ok"
        try:
            entry = self.repository.entry(name, version)
            label_model, label_version = name, entry.settings.version
            async with self.repository.use(name, version) as model:
                inputs = decode(model.signature)
                if all_outputs:
                    outputs = model.signature.output_names()
                wanted = _check_outputs(model.signature, outputs)
                return model, await _run(model, inputs, wanted)
        except NstarxError as exc:
            status = exc.kind.value.lower()
            raise
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe_request(label_model, label_version, protocol, status, seconds)

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest, protocol: str
    ) -> InferenceResponse:
        """Run a V2 inference request."""
        model, result = await self.predict(
            name,
            version,
            protocol,
            lambda sig: bind_inputs(sig, request.tensors()),
            request.output_names(),
        )
        return InferenceResponse(
            model_name=name,
            model_version=model.settings.version,
            id=request.id,
            outputs=[
                InferOutput(key, datatype_of(array), tuple(array.shape), array)
                for key, array in result.items()
            ],
        )


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


def _check_outputs(signature: ModelSignature, outputs: tuple[str, ...] | None) -> tuple[str, ...]:
    if not outputs:
        return signature.default_outputs or signature.output_names()
    known = signature.output_names()
    for name in outputs:
        if name not in known:
            raise InvalidInputError(f"unknown output '{name}'; the model has {', '.join(known)}")
    return outputs


async def _run(model: LoadedModel, inputs: Tensors, outputs: tuple[str, ...]) -> Tensors:
    timeout_s = model.settings.timeout_s
    if timeout_s is None and model.limiter is None:
        return await _call(model, inputs, outputs)
    try:
        async with asyncio.timeout(timeout_s):
            if model.limiter is None:
                return await _call(model, inputs, outputs)
            async with model.limiter:
                return await _call(model, inputs, outputs)
    except TimeoutError:
        raise DeadlineExceededError(
            f"model '{model.settings.name}' did not answer within {timeout_s} s"
        ) from None


async def _call(model: LoadedModel, inputs: Tensors, outputs: tuple[str, ...]) -> Tensors:
    if model.batcher is not None:
        return await model.batcher.submit(inputs, outputs)
    return await model.predictor(inputs, outputs)
