"""Which version answers a request sent without one: splits, sticky callers, header and geo rules.

A `Router` picks the version. The split is exact rather than random: unkeyed requests walk a
low-discrepancy sequence (the fractional parts of n / φ), so any run of N requests lands within a
few requests of each weight; a caller with a routing key (the sticky header) lands where the key's
hash falls, so one caller always sees one variant.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Arm", "Choice", "Router", "TrafficPlan"]

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
