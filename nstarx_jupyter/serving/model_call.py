"""A model's call as every request makes it: outputs checked, admission, deadline, batching.

With the values a call carries (`Caller` in, `Served` out), below the data plane and the
traffic logic that choose which model to call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nstarx_jupyter.errors import DeadlineExceededError, InvalidInputError
from nstarx_jupyter.protocol.signature import ModelSignature
from nstarx_jupyter.runtimes.base import Tensors

if TYPE_CHECKING:
    from nstarx_jupyter.serving.repository import LoadedModel

__all__ = ["Caller", "Decoder", "Served", "check_outputs", "run_model"]

Decoder = Callable[[ModelSignature], Tensors]
"""Turns a request into the model's input tensors once the model's signature is known."""


@dataclass(frozen=True, slots=True)
class Caller:
    """What routing may look at: the request's headers (lower-case names) and client address."""

    headers: Mapping[str, str]
    client: str | None = None


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
