"""Traffic between the versions of one model: splits, sticky callers, rules, shadows, fallbacks.

A `Router` picks the version that answers a request sent without one. The split is exact rather
than random: unkeyed requests walk a low-discrepancy sequence (the fractional parts of n / φ), so
any run of N requests lands within a few requests of each weight; a caller with a routing key
(the sticky header) lands where the key's hash falls, so one caller always sees one variant.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from nstarx_jupyter.errors import ConflictError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from nstarx_jupyter.runtimes.base import Tensors

__all__ = ["Arm", "Choice", "Logged", "RequestLog", "Router", "ShadowStats", "TrafficPlan",
           "agree"]  # fmt: skip

_INVERSE_PHI = (5**0.5 - 1) / 2


@dataclass(frozen=True, slots=True)
class Arm:
    """One version in the weighted split and its label (the variant name users gave it)."""

    version: str
    weight: float
    variant: str


@dataclass(frozen=True, slots=True)
class TrafficPlan:
    """Where a model's unversioned requests go; built by the control plane from a spec."""

    arms: tuple[Arm, ...]
    sticky_header: str | None = None
    rules: tuple[tuple[str, frozenset[str], str], ...] = ()
    """(header, values, version), first match wins."""
    regions: Mapping[str, str] = field(default_factory=dict)
    """Region to version."""
    networks: tuple[tuple[Any, str], ...] = ()
    """(ip_network, region), most specific first."""
    region_header: str = "x-region"
    shadow: str | None = None
    fallback: str | None = None
    fallback_timeout_s: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    """Version to variant label, for response headers and reports."""

    def label(self, version: str) -> str:
        """The variant name of `version`."""
        return self.labels.get(version, version)


@dataclass(frozen=True, slots=True)
class Choice:
    """The version picked for one request and how it was picked."""

    version: str
    reason: str
    """`split`, `sticky`, `rule` or `region`."""


class Router:
    """Picks a version per request according to a `TrafficPlan`."""

    def __init__(self, plan: TrafficPlan) -> None:
        if not plan.arms:
            raise ValueError("a traffic plan needs at least one arm")
        self.plan = plan
        total = sum(arm.weight for arm in plan.arms) or 1.0
        bounds, running = [], 0.0
        for arm in plan.arms:
            running += arm.weight / total
            bounds.append(running)
        bounds[-1] = 1.0
        self._bounds = tuple(bounds)
        self._count = 0

    def choose(self, headers: Mapping[str, str] | None = None, client: str | None = None) -> Choice:
        """Pick the version for a request with these (lower-case) headers from `client`."""
        plan = self.plan
        if headers is not None:
            for header, values, version in plan.rules:
                if headers.get(header) in values:
                    return Choice(version, "rule")
        if plan.regions:
            region = headers.get(plan.region_header) if headers is not None else None
            if region is None and client is not None:
                region = self._region_of(client)
            routed = plan.regions.get(region) if region is not None else None
            if routed is not None:
                return Choice(routed, "region")
        key = (
            headers.get(plan.sticky_header) if headers is not None and plan.sticky_header else None
        )
        if key is not None:
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            return Choice(self._arm(int.from_bytes(digest) / 2**64), "sticky")
        self._count += 1
        return Choice(self._arm((self._count * _INVERSE_PHI) % 1.0), "split")

    def _arm(self, point: float) -> str:
        for bound, arm in zip(self._bounds, self.plan.arms, strict=True):
            if point < bound and arm.weight > 0:
                return arm.version
        return next(arm.version for arm in reversed(self.plan.arms) if arm.weight > 0)

    def _region_of(self, client: str) -> str | None:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return None
        for network, region in self.plan.networks:
            if address.version == network.version and address in network:
                return str(region)
        return None


def agree(primary: Tensors, shadow: Tensors) -> bool:
    """Whether a shadow's answer matches the primary's on every output both produced."""
    shared = [name for name in primary if name in shadow]
    if not shared:
        return False
    for name in shared:
        a, b = primary[name], shadow[name]
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "fc" and b.dtype.kind in "fc":
            if not np.allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=True):
                return False
        elif not np.array_equal(a, b):
            return False
    return True


class ShadowStats:
    """What a shadow variant did with its copies: answers, agreement, errors, drops, latency."""

    def __init__(self, keep: int = 10_000) -> None:
        self.requests = 0
        self.agreed = 0
        self.errors = 0
        self.dropped = 0
        """Copies not sent because too many were still in flight (a slow shadow)."""
        self.in_flight = 0
        self.last_error = ""
        self._latency: deque[float] = deque(maxlen=keep)
        self.started = time.time()

    def record(self, seconds: float, agreed: bool | None, error: str = "") -> None:
        """One copy answered (`agreed` set) or failed (`error` set)."""
        self.requests += 1
        self._latency.append(seconds)
        if error:
            self.errors += 1
            self.last_error = error
        elif agreed:
            self.agreed += 1

    def summary(self) -> dict[str, Any]:
        """Counts, the agreement rate and latency percentiles (ms) of the recent copies."""
        answered = self.requests - self.errors
        out: dict[str, Any] = {
            "requests": self.requests, "answered": answered, "agreed": self.agreed,
            "agreement": self.agreed / answered if answered else None,
            "errors": self.errors, "dropped": self.dropped, "in_flight": self.in_flight,
            "p50_ms": None, "p99_ms": None,
        }  # fmt: skip
        if self.last_error:
            out["last_error"] = self.last_error
        if self._latency:
            p50, p99 = np.percentile(np.fromiter(self._latency, dtype=np.float64), [50, 99])
            out.update(p50_ms=float(p50) * 1000, p99_ms=float(p99) * 1000)
        return out


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
