"""Answers of a model kept for identical feature rows: the model step's cache.

A cache node of its own cannot save anything in a pipeline (the steps before it have already
run by the time rows reach it), so caching is an option of the `model` step: rows whose
features were answered within `ttl_s` seconds are not sent to the model again. Only for models
whose answer depends on the features alone.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PredictionCache"]


class PredictionCache:
    """Least recently used answers, each kept for `ttl_s` seconds (None: until pushed out)."""

    def __init__(
        self, size: int, ttl_s: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self.clock = clock
        """Seconds from any fixed point (tests pass their own, to age answers at once)."""
        self.hits = 0
        self.misses = 0
        self._answers: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    @staticmethod
    def key(features: dict[str, Any]) -> str:
        """The same features, in any order, give the same key."""
        return json.dumps(features, sort_keys=True, default=str)

    def get(self, key: str) -> dict[str, Any] | None:
        """The answer kept for `key`, if it is still fresh."""
        found = self._answers.get(key)
        if found is None or (self.ttl_s is not None and found[0] < self.clock()):
            self.misses += 1
            return None
        self._answers.move_to_end(key)
        self.hits += 1
        return found[1]

    def put(self, key: str, answer: dict[str, Any]) -> None:
        """Keep `answer`, pushing out the least recently used beyond `size`."""
        expires = self.clock() + self.ttl_s if self.ttl_s is not None else float("inf")
        self._answers[key] = (expires, answer)
        self._answers.move_to_end(key)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)
