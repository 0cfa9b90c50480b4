"""Server-side figures of a deployment on KServe, from the nstarx runtime in its pods.

One model: its pod's control API answers them (`/nstarx/v1/deployments/NAME/metrics`, the same
computation as on the laptop). A split: KServe's graph router (Go) keeps no figures, so each
variant's pod is asked for its figures and the latency and outcome of each request of the
window; the split's own figures are computed from all of them with the server's own summary
(`monitoring/latency.py`), as the local server computes a split's from every request. Each
variant's figures come as its pod computed them, with its share of traffic.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import httpx

from nstarx_jupyter.deployment.kserve import NSTARX_RUNTIME
from nstarx_jupyter.deployment.kserve_status import status_of
from nstarx_jupyter.deployment.kube_api import http_error
from nstarx_jupyter.deployment.local_answers import parse_answer
from nstarx_jupyter.errors import UnavailableError, UnsupportedError
from nstarx_jupyter.monitoring.latency import latency_summary
from nstarx_jupyter.protocol.control import (
    DeploymentMetrics,
    ResourceTotals,
    SplitMetrics,
    SplitVariantFigures,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TOKEN_ENV", "pod_metrics", "split_metrics", "url_of"]

TOKEN_ENV = "NSTARX_KSERVE_TOKEN"  # noqa: S105 - the variable's name, not a token
"""A bearer token for the cluster's inference URL (an ingress or Authorino in front of it)."""


def url_of(name: str, found: Mapping[str, Any]) -> str:
    """An InferenceService's or InferenceGraph's `status.url`, or why it has none yet."""
    url = found.get("status", {}).get("url")
    if not url:
        _, reason = status_of(dict(found))
        raise UnavailableError(
            f"'{name}' is not routed yet: the {found['kind']} has no status.url"
            + (f" ({reason})" if reason else "")
            + "; watch it until it is ready"
        )
    return str(url).rstrip("/")


def pod_metrics(
    isvc: Mapping[str, Any], window_s: float, *, samples: bool = False, what: str | None = None
) -> DeploymentMetrics:
    """The figures the nstarx runtime of InferenceService `isvc` answers at its URL."""
    name = isvc["metadata"]["name"]
    what = what or f"'{name}'"
    _check_runtime(isvc, what)
    url = url_of(name, isvc)
    token = os.environ.get(TOKEN_ENV)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params: dict[str, Any] = {"window_s": window_s}
    if samples:
        params["samples"] = "true"
    try:
        answer = httpx.get(f"{url}/nstarx/v1/deployments/{name}/metrics", params=params,
                           headers=headers, timeout=30)  # fmt: skip
    except httpx.HTTPError as exc:
        raise UnavailableError(f"metrics: cannot reach {url}: {exc}") from None
    if answer.status_code != 200:
        raise http_error(answer.status_code, f"metrics of {what} at {url}: {answer.text}")
    path = f"GET /nstarx/v1/deployments/{name}/metrics"
    return parse_answer(DeploymentMetrics, answer.json(), path, f"the nstarx runtime at {url}")


def _check_runtime(isvc: Mapping[str, Any], what: str) -> None:
    runtime = isvc["spec"]["predictor"].get("model", {}).get("runtime")
    if runtime != NSTARX_RUNTIME:
        raise UnsupportedError(
            f"metrics: {what} runs on runtime '{runtime or 'auto'}', not nstarx's; server-side "
            "figures need the nstarx runtime (or read them from Prometheus)"
        )


def split_metrics(
    name: str,
    steps: list[tuple[str, str, float]],
    services: Mapping[str, Mapping[str, Any]],
    window_s: float,
) -> SplitMetrics:
    """A split's figures from its variants' pods: `steps` are (variant, service, percent)."""
    parts = []
    for variant, service, percent in steps:  # every variant's checked before any is asked
        isvc = services.get(service)
        if isvc is None:
            raise UnavailableError(
                f"metrics: variant '{variant}' of '{name}' has no InferenceService '{service}'; "
                "apply the deployment again"
            )
        what = f"variant '{variant}' of '{name}' (InferenceService '{service}')"
        _check_runtime(isvc, what)
        parts.append((variant, service, percent, isvc, what))
    latencies: list[float] = []
    outcomes: list[bool] = []
    variants = []
    for variant, service, percent, isvc, what in parts:
        figures = pod_metrics(isvc, window_s, samples=True, what=what)
        if figures.samples is not None:
            latencies.extend(figures.samples.latency_s)
            outcomes.extend(figures.samples.ok)
        own = figures.model_dump(exclude={"name", "samples"})
        variants.append(SplitVariantFigures.model_validate(
            {"variant": variant, "service": service, "percent": percent, **own}))  # fmt: skip
    totals = ResourceTotals(cpu_s=sum(row.resources.cpu_s for row in variants),
                            rss_bytes=sum(row.resources.rss_bytes for row in variants))  # fmt: skip
    summary = latency_summary(latencies, outcomes, window_s)
    return SplitMetrics.model_validate(
        {"name": name, **summary, "resources": totals, "variants": variants}
    )
