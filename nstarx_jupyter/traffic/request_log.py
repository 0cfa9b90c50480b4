"""The request log of a routed deployment: who answered each request, how fast, and its outcome.

Feedback (`POST /v1/models/{name}/feedback`) and the A/B report read it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any, NamedTuple

import numpy as np

from nstarx_jupyter.errors import ConflictError, InvalidInputError, NotFoundError

__all__ = ["Logged", "RequestLog", "Tensors"]

Tensors = dict[str, np.ndarray[Any, Any]]
"""Named arrays, a model's inputs or outputs (as `runtimes.base.Tensors`, which this package
does not import: traffic decisions are independent of the runtimes)."""


class Logged(NamedTuple):
    """One routed request, as feedback and the A/B analysis see it.

    `RequestLog` keeps it as a plain tuple, which the garbage collector stops tracking (it does
    so only for exact tuples): 100,000 dataclass instances added 11 ms to every full collection
    of a busy server, a stall for every request in flight.
    """

    version: str
    at: float
    """Wall-clock time it was answered."""
    seconds: float
    ok: bool
    prediction: Any = None
    """The first output of a one-row request (a class, a number), for ground-truth feedback."""
    outcome: float | None = None
    """The feedback: a reward, 1/0 for a conversion, or 1/0 for a correct/wrong prediction."""


class RequestLog:
    """The last `keep` routed requests of one deployment, by request id.

    Feedback (`POST /v1/models/{name}/feedback`) finds its request here and records the outcome
    against the variant that answered; the A/B report reads latencies, errors and outcomes per
    version from it.
    """

    def __init__(self, keep: int = 100_000) -> None:
        self.keep = keep
        self._entries: dict[str, tuple[Any, ...]] = {}
        self._order: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, request_id: str, entry: Logged) -> None:
        """Add one answered (or failed) request; the oldest falls out past `keep`."""
        entries = self._entries
        if request_id not in entries:  # a repeated id keeps its place, as in an OrderedDict
            self._order.append(request_id)
        entries[request_id] = tuple(entry)
        if len(entries) > self.keep:
            del entries[self._order.popleft()]

    def answered(
        self, request_id: str, version: str, seconds: float, outputs: Tensors | None
    ) -> None:
        """Log a request `version` answered (`outputs`) or failed (None) in `seconds`.

        A one-row answer keeps its first output as the prediction a label is compared with.
        """
        prediction = None
        if outputs:
            first = next(iter(outputs.values()))
            if first.ndim == 1 and first.shape[0] == 1:
                # a NumPy scalar, or a plain str from an object array (ONNX string labels)
                prediction = getattr(first[0], "item", lambda: first[0])()
        self.record(request_id, Logged(version, time.time(), seconds, outputs is not None,
                                       prediction))  # fmt: skip

    def feedback(self, request_id: str, *, value: Any = None, label: Any = None) -> Logged:
        """Record the outcome of a past request: a reward `value`, or its true `label`.

        Raises:
            NotFoundError: no request with that id among the last `keep`.
            ConflictError: that request already has feedback.
            InvalidInputError: neither or both given, or a value that is not a number.
        """
        found = self._entries.get(request_id)
        if found is None:
            raise NotFoundError(
                f"no prediction with request id '{request_id}' among the last {self.keep}"
            )
        entry = Logged._make(found)
        if entry.outcome is not None:
            raise ConflictError(f"request '{request_id}' already has feedback")
        if (value is None) == (label is None):
            raise InvalidInputError("feedback: give either 'value' (a reward) or 'label'")
        if label is not None:
            if entry.prediction is None:
                raise InvalidInputError(
                    f"request '{request_id}' had no single prediction to compare a label with"
                )
            outcome = 1.0 if _same(entry.prediction, label) else 0.0
        elif isinstance(value, bool | int | float) and math.isfinite(value):
            outcome = float(value)
        else:
            raise InvalidInputError("feedback: 'value' must be a finite number or a boolean")
        entry = entry._replace(outcome=outcome)
        self._entries[request_id] = tuple(entry)
        return entry

    def rows(self, since: float = 0.0) -> list[tuple[Any, ...]]:
        """The logged requests answered at or after `since`, as tuples in `Logged` order.

        Cheap: what to copy on the event loop before analysing elsewhere.
        """
        return [row for row in self._entries.values() if row[1] >= since]


def _same(prediction: Any, label: Any) -> bool:
    if isinstance(prediction, float) or isinstance(label, float):
        try:
            return bool(np.isclose(float(prediction), float(label)))
        except (TypeError, ValueError):
            return False
    return bool(prediction == label) or str(prediction) == str(label)
