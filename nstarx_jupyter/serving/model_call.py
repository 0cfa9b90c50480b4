"""A model's call as every request makes it: outputs checked, admission, deadline, batching.

With the values a call carries (`Ask` and `Caller` in, `Served` out) and the shapes of the data
plane's calls (`Predict`, `ModelCall`), below the data plane and the dispatcher that chooses which
model version to call, and below the pipelines and graphs that call back into the data plane.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from nstarx_jupyter.errors import DeadlineExceededError, InvalidInputError
from nstarx_jupyter.protocol.signature import ModelSignature
from nstarx_jupyter.runtimes.base import Tensors

if TYPE_CHECKING:
    from nstarx_jupyter.serving.repository import LoadedModel

__all__ = ["Ask", "Caller", "Decoder", "ModelCall", "Predict", "Served", "check_outputs",
           "run_model"]  # fmt: skip

Decoder = Callable[[ModelSignature], Tensors]
"""Turns a request into the model's input tensors once the model's signature is known."""


@dataclass(frozen=True, slots=True)
class Caller:
    """What routing may look at: the request's headers (lower-case names) and client address."""

    headers: Mapping[str, str]
    client: str | None = None


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asks of a model, whichever of its versions answers (the request context).

    Built once per routed request (or per request of a deployment with sinks) and handed to each
    version tried: the chosen one, the fallback, the shadow.
    """

    name: str
    protocol: str
    """The metrics' protocol label (`v2-rest`, `records`, ...)."""
    decode: Decoder
    outputs: tuple[str, ...] | None = None
    """The outputs wanted (the model's defaults when None)."""
    all_outputs: bool = False
    """Every output the model declares, whatever `outputs` says."""


@dataclass(slots=True)
class Served:
    """A prediction and who made it."""

    model: LoadedModel
    outputs: Tensors
    variant: str | None = None
    """The variant that answered, for models under a traffic plan."""
    fallback: str = ""
    """Why the fallback variant answered ('' when it did not)."""
    request_id: str = ""
    """The id feedback refers to (routed requests: the caller's `X-Request-Id`, else made)."""

    def headers(self) -> list[tuple[str, str]]:
        """Response headers naming the variant and version that answered, and the request id."""
        if self.variant is None:
            return []
        out = [("x-nstarx-variant", self.variant),
               ("x-nstarx-model-version", self.model.settings.version),
               ("x-request-id", self.request_id)]  # fmt: skip
        if self.fallback:
            out.append(("x-nstarx-fallback", self.fallback))
        return out


class Predict(Protocol):
    """`DataPlane.predict`: what pipelines' model nodes and graphs' steps call back into."""

    def __call__(
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
    ) -> Awaitable[Served]:
        """Predict with model `name` (its `version`, else where its traffic plan says)."""
        ...


class ModelCall(Protocol):
    """`DataPlane.call`: one version's answer to `ask`, with metrics, and no routing.

    A `shadow` call is counted under the `shadow` protocol, computes the model's default outputs
    and is not tapped for drift.
    """

    def __call__(self, ask: Ask, version: str | None, *, shadow: bool = False) -> Awaitable[Served]:
        """Answer `ask` with `version` of the model (its default version when None)."""
        ...


def check_outputs(signature: ModelSignature, outputs: tuple[str, ...] | None) -> tuple[str, ...]:
    """The outputs to compute: those asked for (each one the model has), else its defaults."""
    if not outputs:
        return signature.default_outputs or signature.output_names()
    known = signature.output_names()
    for name in outputs:
        if name not in known:
            raise InvalidInputError(f"unknown output '{name}'; the model has {', '.join(known)}")
    return outputs


async def run_model(model: LoadedModel, inputs: Tensors, outputs: tuple[str, ...]) -> Tensors:
    """Predict under the model's admission bound, concurrency limit and deadline.

    The deadline is a watchdog's: at it the request is answered 504 whether or not the model
    returned (a call in a thread runs on, holding its slot, see `Predictor`).
    """
    admission = model.admission
    if admission is not None:
        admission.enter()  # 503 past the bound, before any work
    watch = model.watchdog.watch()
    try:
        if model.limiter is None:
            return await _call(model, inputs, outputs)
        async with model.limiter:
            return await _call(model, inputs, outputs)
    except asyncio.CancelledError:
        if watch is None or not watch.expired:
            raise
        watch.task.uncancel()
        raise DeadlineExceededError(
            f"model '{model.settings.name}' did not answer within {model.watchdog.timeout_s:g} s"
        ) from None
    finally:
        if watch is not None:
            watch.done = True
        if admission is not None:
            admission.leave()


async def _call(model: LoadedModel, inputs: Tensors, outputs: tuple[str, ...]) -> Tensors:
    if model.batcher is not None:
        return await model.batcher.submit(inputs, outputs)
    return await model.predictor(inputs, outputs)
