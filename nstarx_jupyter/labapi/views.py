"""From what the control API, the key store and the registry return to the API's models."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.labapi.models import (
    DeploymentInfo,
    DriftBadge,
    KeyInfo,
    MetricsSample,
    ModelSummary,
    ModelVersionInfo,
    TrafficArm,
    Trend,
    TrendPoint,
)
from nstarx_jupyter.notebook.drift import drift_figures
from nstarx_jupyter.notebook.usage import usage_figures

if TYPE_CHECKING:
    from nstarx_jupyter.deployment.backend import Description
    from nstarx_jupyter.deployment.backend import TrafficArm as Arm
    from nstarx_jupyter.protocol.control import (
        DeploymentCost,
        DeploymentFigures,
        DeploymentHistory,
        DeploymentVariants,
        DriftView,
        KeyRecord,
        LatencySummary,
    )

__all__ = [
    "deployment_info",
    "drift_badge",
    "key_info",
    "matches",
    "metrics_sample",
    "model_summary",
    "model_version_info",
    "trend",
    "with_usage",
]


def drift_badge(report: DriftView | None) -> DriftBadge | None:
    """The control API's drift answer (`GET .../drift`) as the sidebar's badge.

    The card's figures (`notebook.drift.drift_figures`), so both show the same.
    """
    if report is None:
        return None
    return DriftBadge.model_validate(drift_figures(report))


def deployment_info(
    described: Description,
    metrics: MetricsSample,
    arm_metrics: dict[tuple[str, str | None], MetricsSample] | None = None,
    drift: DriftBadge | None = None,
) -> DeploymentInfo:
    """A deployment as the sidebar shows it: the backend's description plus the sidebar's fields.

    The description's own fields (target, namespace, spec, url, ...) are there as
    `Description.model_dump(mode="json")` has them; `traffic` is the sidebar's list of arms.
    """
    spec, stable = described.spec, described.stable
    batching = spec.batching
    return DeploymentInfo(
        name=described.name,
        target=described.target,
        namespace=described.namespace,
        status=described.status,
        reason=described.reason,
        stage=described.stage,
        revision=described.revision,
        stable_revision=stable.revision if stable else None,
        model=spec.storage_uri,
        stable_model=stable.spec.storage_uri if stable else None,
        canary_percent=spec.canary_traffic_percent if stable else None,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        max_batch_size=batching.max_batch_size if batching else None,
        max_latency_ms=batching.max_latency_ms if batching else None,
        auth=spec.auth,
        url=described.url,
        spec=spec.model_dump(mode="json", exclude_defaults=True),
        traffic=[_arm(arm, arm_metrics or {}) for arm in described.traffic.split]
        if described.traffic
        else [],
        metrics=metrics,
        drift=drift,
        created=described.created,
        updated=described.updated,
    )


def _arm(arm: Arm, figures: dict[tuple[str, str | None], MetricsSample]) -> TrafficArm:
    return TrafficArm(variant=arm.variant, version=arm.version, percent=arm.percent,
                      metrics=figures.get((arm.variant, arm.version)))  # fmt: skip


def arm_metrics(variants: DeploymentVariants) -> dict[tuple[str, str | None], MetricsSample]:
    """The control API's `variants` answer: each arm's figures by (variant, version)."""
    return {(found.variant, found.version): metrics_sample(found) for found in variants.variants}


def metrics_sample(figures: LatencySummary) -> MetricsSample:
    """The control API's `metrics` answer (`LatencyWindow.summary`) as a sparkline point."""
    return MetricsSample(
        requests=figures.requests,
        rps=figures.rps,
        error_rate=figures.error_rate,
        p50_ms=_number(figures.p50_ms),
        p99_ms=_number(figures.p99_ms),
    )


def key_info(record: KeyRecord) -> KeyInfo:
    """A key's public record (the server's or `ApiKey.public()`), never the key itself."""
    return KeyInfo(
        id=record.id,
        prefix=record.prefix,
        name=record.name,
        scopes=record.scopes,
        state=record.state,
        created=_number(record.created),
        expires=_number(record.expires),
    )


def model_summary(row: dict[str, Any]) -> ModelSummary:
    """One row of `Registry.models()`."""
    return ModelSummary(
        name=str(row["name"]),
        latest_version=_text(row.get("latest_version")),
        aliases={str(k): str(v) for k, v in (row.get("aliases") or {}).items()},
        tags={str(k): str(v) for k, v in (row.get("tags") or {}).items()},
        description=_text(row.get("description")) or "",
        created=_iso(row.get("created")),
        updated=_iso(row.get("updated")),
    )


def model_version_info(name: str, row: dict[str, Any]) -> ModelVersionInfo:
    """One row of `Registry.versions(name)`."""
    return ModelVersionInfo(
        name=name,
        version=str(row["version"]),
        uri=str(row["uri"]),
        flavor=_text(row.get("flavor")),
        aliases=[str(alias) for alias in row.get("aliases") or ()],
        tags={str(k): str(v) for k, v in (row.get("tags") or {}).items()},
        description=_text(row.get("description")) or "",
        status=_text(row.get("status")) or "READY",
        created=_iso(row.get("created")),
        run_id=_text(row.get("run_id")),
    )


def matches(model: ModelSummary, search: str) -> bool:
    """Whether `search` occurs (any case) in the model's name, tags, aliases or description."""
    wanted = search.strip().casefold()
    if not wanted:
        return True
    fields = [model.name, model.description, *model.aliases, *model.tags.keys(),
              *model.tags.values()]  # fmt: skip
    return any(wanted in field.casefold() for field in fields)


def _text(value: Any) -> str | None:
    """A string cell of a DataFrame (pandas may hold a missing one as NaN)."""
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _iso(value: Any) -> str | None:
    """A timestamp cell (a `datetime` or pandas' `Timestamp`; NaT when missing) as ISO 8601."""
    if isinstance(value, datetime) and value == value:  # NaT is not equal to itself
        return value.isoformat()
    return None


# -- resource use, cost, trends (issue 19) -------------------------------------------------------


def with_usage(
    sample: MetricsSample, figures: DeploymentFigures, cost: DeploymentCost | None
) -> MetricsSample:
    """`sample` with the control API's resource figures (`metrics`) and last hour's `cost`.

    The card's figures (`notebook.usage.usage_figures`), so both show the same numbers.
    """
    return MetricsSample.model_validate({**sample.model_dump(), **usage_figures(figures, cost)})


def trend(history: DeploymentHistory) -> Trend:
    """The control API's `history` answer as the sparklines' points."""
    bucket_s = float(history.bucket_s or 60)
    points = [TrendPoint(t=row.t, requests=row.requests, rps=row.requests / bucket_s,
                         p50_ms=_number(row.p50_ms), p99_ms=_number(row.p99_ms), cost=row.cost)
              for row in history.rows]  # fmt: skip
    return Trend(name=history.name, since_s=history.since_s, points=points)
