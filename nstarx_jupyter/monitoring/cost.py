"""Cost per prediction: a price table and the arithmetic, in one place for every backend.

The local server measures what each model version used over a window (CPU seconds, resident
memory integrated over time, requests) and calls `cost_of`; a KServe deployment has no such
measure here, so `requested_usage` turns its requested resources and replica count into the same
inputs (what the cluster reserves is what it bills). The default prices are AWS Fargate's
on-demand Linux/x86 rates in us-east-1 for CPU and memory, and an EC2 g4dn.xlarge's on-demand
rate (one NVIDIA T4) for a GPU-hour; set your own in `$NSTARX_HOME/prices.json` or through the
control API (`PUT /nstarx/v1/prices`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import atomic_write, nstarx_home
from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "DEFAULT_PRICES",
    "Cost",
    "Prices",
    "Usage",
    "cost_of",
    "load_prices",
    "prices_file",
    "requested_usage",
    "save_prices",
]

PRICES_FILE = "prices.json"


@dataclass(frozen=True, slots=True)
class Prices:
    """What an hour of each resource costs."""

    cpu_hour: float = 0.04048
    """One vCPU (one core fully busy) for an hour."""
    gb_hour: float = 0.004445
    """One GB (1e9 bytes) of memory for an hour."""
    gpu_hour: float = 0.526
    """One GPU for an hour."""
    currency: str = "USD"
    source: str = (
        "AWS on-demand, us-east-1: Fargate Linux/x86 per vCPU-hour and per GB-hour "
        "(aws.amazon.com/fargate/pricing), EC2 g4dn.xlarge per GPU-hour "
        "(aws.amazon.com/ec2/pricing/on-demand)"
    )

    @classmethod
    def parse(cls, doc: Any) -> Prices:
        """Prices from a JSON object; unnamed fields keep their defaults."""
        if not isinstance(doc, dict):
            raise InvalidInputError("prices: a JSON object")
        unknown = sorted(set(doc) - {"cpu_hour", "gb_hour", "gpu_hour", "currency", "source"})
        if unknown:
            raise InvalidInputError(f"prices: unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for key in ("cpu_hour", "gb_hour", "gpu_hour"):
            if key in doc:
                value = doc[key]
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                if not ok or not math.isfinite(value) or value < 0:
                    raise InvalidInputError(f"prices: {key} must be a number >= 0")
                values[key] = float(value)
        for key in ("currency", "source"):
            if key in doc:
                if not isinstance(doc[key], str) or not 0 < len(doc[key]) <= 500:
                    raise InvalidInputError(f"prices: {key} must be a short string")
                values[key] = doc[key]
        if "source" not in values and values:
            values["source"] = "set by the user"
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The table as JSON."""
        return asdict(self)


DEFAULT_PRICES = Prices()


def prices_file() -> Path:
    """`$NSTARX_HOME/prices.json`."""
    return nstarx_home() / PRICES_FILE


def load_prices(path: Path | None = None) -> Prices:
    """The user's price table (`prices.json`), else the defaults."""
    target = path or prices_file()
    try:
        text = target.read_text()
    except FileNotFoundError:
        return DEFAULT_PRICES
    try:
        return Prices.parse(json.loads(text))
    except ValueError as exc:
        raise InvalidInputError(f"{target}: not a JSON price table ({exc})") from None


def save_prices(prices: Prices, path: Path | None = None) -> None:
    """Write the price table (whole or not at all)."""
    atomic_write(path or prices_file(), json.dumps(prices.to_json(), indent=1))


@dataclass(frozen=True, slots=True)
class Usage:
    """What was used over a window and how many predictions it served."""

    window_s: float
    requests: int
    cpu_s: float
    memory_gb_s: float = 0.0
    """Memory integrated over the window: GB x seconds."""
    gpu_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Cost:
    """What a window of use cost, and its rates."""

    window_s: float
    requests: int
    cpu_s: float
    memory_gb_s: float
    gpu_s: float
    cpu_cost: float
    memory_cost: float
    gpu_cost: float
    total: float
    per_1000: float | None
    """Cost per 1,000 predictions (None without predictions in the window)."""
    per_day: float | None
    """Cost per day at the window's rate (None for an empty window)."""
    currency: str

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON."""
        return asdict(self)


def cost_of(usage: Usage, prices: Prices = DEFAULT_PRICES) -> Cost:
    """Price `usage`: each resource's hours times its price; per 1,000 and per day from those."""
    cpu = usage.cpu_s / 3600 * prices.cpu_hour
    memory = usage.memory_gb_s / 3600 * prices.gb_hour
    gpu = usage.gpu_s / 3600 * prices.gpu_hour
    total = cpu + memory + gpu
    return Cost(
        usage.window_s, usage.requests, usage.cpu_s, usage.memory_gb_s, usage.gpu_s,
        cpu, memory, gpu, total,
        total / usage.requests * 1000 if usage.requests > 0 else None,
        total * 86400 / usage.window_s if usage.window_s > 0 else None,
        prices.currency,
    )  # fmt: skip


def requested_usage(
    *,
    cpu_cores: float,
    memory_gb: float,
    gpus: float = 0.0,
    replicas: int = 1,
    window_s: float = 3600.0,
    requests: int = 0,
) -> Usage:
    """What `replicas` pods that reserve these resources use over `window_s` (KServe).

    A cluster bills what it reserves, busy or not: `cpu_cores` x replicas is CPU-seconds every
    second. `requests` (from the metrics API, or an expected rate times the window) gives the
    cost per 1,000 predictions.
    """
    if min(cpu_cores, memory_gb, gpus, replicas, window_s, requests) < 0:
        raise InvalidInputError("requested resources, replicas, window and requests: >= 0")
    return Usage(window_s, requests, cpu_cores * replicas * window_s,
                 memory_gb * replicas * window_s, gpus * replicas * window_s)  # fmt: skip
