"""Rollouts from a notebook cell: canary, blue-green, A/B splits, shadows, fallbacks, rules.

Each is a step of `DeploymentService` (one conditional change of the deployment's spec, retried
on top of a newer one when another client changed it meanwhile); this mixin gives `Deployment`
those steps by its own name, plus the local server's per-variant figures and A/B report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nstarx_jupyter.monitoring.live import VariantChart
from nstarx_jupyter.notebook.abreport import ABReport
from nstarx_jupyter.notebook.analysis import CanaryAnalysis

if TYPE_CHECKING:
    from concurrent.futures import Future

    from nstarx_jupyter.deployment.backend import Backend, Description, TrafficView
    from nstarx_jupyter.deployment.service import DeploymentService
    from nstarx_jupyter.notebook.analysis import AnalysisPolicy
    from nstarx_jupyter.registry import ModelVersion

__all__ = ["RolloutMixin"]


class RolloutMixin:
    """Traffic methods of `Deployment` (which provides `name`, `service` and `registration`)."""

    name: str
    backend: Backend
    service: DeploymentService
    registration: Future[ModelVersion] | None
    _charts: list[Any]

    # -- canary and blue-green: revisions of the deployment's own model ------------------------

    def canary(
        self,
        model_or_uri: Any,
        percent: int = 10,
        *,
        version: str | int | None = None,
        storage_uri: str | None = None,
        auto: AnalysisPolicy | None = None,
    ) -> Any:
        """Send `percent` % of requests to a new model (KServe's `canaryTrafficPercent`).

        The new model becomes the latest revision; the revision that last had all the traffic
        keeps the rest until `promote()` or `rollback()`. A fitted model is served at once and
        registered behind, as with `deploy()` (on KServe: registered first, or read from
        `storage_uri`). Returns the deployment's `Description`, or with `auto` (local server) a
        running `CanaryAnalysis` that steps the traffic up through `auto.steps` while error rate
        and p99 stay within its margins, and rolls back on its own when they don't.
        """
        if auto is not None:
            self.service.local("variants")  # the analysis reads per-variant figures
            percent = auto.steps[0]
        applied, registration = self.service.canary(
            self.name, model_or_uri, percent, version=version, storage_uri=storage_uri
        )
        if registration is not None:
            self.registration = registration
        if auto is not None:
            self.note(f"canary analysis started: steps {list(auto.steps)}")
            return CanaryAnalysis(self, auto).start()
        return applied

    def note(self, text: str) -> None:
        """Write a line into the deployment's events (`logs()`)."""
        self.service.note(self.name, text)

    def set_canary_percent(self, percent: int) -> Description:
        """Move the canary's share of traffic (no new revision, no reload)."""
        return self.service.set_canary_percent(self.name, percent)

    def promote(self) -> Description:
        """Give the latest revision all the traffic; the previous one unloads when idle."""
        return self.service.promote(self.name)

    def rollback(self) -> Description:
        """Give the last rolled-out revision all the traffic back and drop the canary.

        The stable model serves again as a new revision (its loaded copy keeps answering: a
        registry model is not reloaded); routing variants set since stay as they are.
        """
        return self.service.rollback(self.name)

    def stage(
        self, model_or_uri: Any, *, version: str | int | None = None,
        storage_uri: str | None = None,
    ) -> str:  # fmt: skip
        """Blue-green: load a new model next to the live one with no traffic.

        Returns the staged model's version: check it with `predict(data, version=...)`, then
        `switch()` moves all traffic at once (or `rollback()` drops it).
        """
        staged, registration = self.service.stage(
            self.name, model_or_uri, version=version, storage_uri=storage_uri
        )
        if registration is not None:
            self.registration = registration
        return staged

    def switch(self) -> Description:
        """Blue-green: move all traffic to the staged model at once."""
        return self.service.switch(self.name)

    # -- other variants: A/B splits, shadows, fallbacks, rules -----------------------------------

    def set_traffic(self, split: dict[str, int] | None = None, **policy: Any) -> Description:
        """Replace the deployment's traffic policy (see `Traffic`); None fields are cleared.

        `policy`: `variants` (variant name to model: fitted, file or registry URI; the
        deployment's own model is `primary`), `sticky_header`, `shadow`, `fallback`,
        `fallback_timeout_ms`, `rules`, `regions`, `networks`. Variants kept from the current
        policy and not named again stay defined. Example: an A/B test sticky per user::

            dep.set_traffic({"primary": 50, "challenger": 50}, variants={"challenger": model},
                            sticky_header="X-User-Id")

        Only a plain split runs on KServe (an InferenceGraph); the rest is the local server's.
        """
        return self.service.set_traffic(self.name, split, **policy)

    def shadow(self, model_or_uri: Any, *, name: str = "shadow") -> Description:
        """Copy every request to `model_or_uri`; its answers are compared, never returned."""
        return self.service.shadow(self.name, model_or_uri, variant=name)

    def fallback(
        self, model_or_uri: Any, *, name: str = "fallback", timeout_ms: int | None = None
    ) -> Description:
        """Answer with `model_or_uri` when the chosen variant fails or takes over `timeout_ms`."""
        return self.service.fallback(self.name, model_or_uri, variant=name, timeout_ms=timeout_ms)

    def traffic(self) -> TrafficView:
        """The current split (variant, version, percent) and rules, shadow and fallback."""
        return self.service.traffic(self.name)

    def ab_report(
        self,
        *,
        control: str | None = None,
        window_s: float | None = None,
        minimum_effect: float = 0.05,
        alpha: float = 0.05,
        power: float = 0.8,
    ) -> ABReport:
        """Which variant is better, tested against `control` (`stable` in a canary, else `primary`).

        Per variant: requests, latency, errors and outcomes, each with its test. Outcomes come
        from feedback (`POST .../feedback` or `client.feedback`). Until a variant has the sample
        `minimum_effect` needs at `alpha` and `power`, the verdict says to keep collecting,
        whatever the p-value: stopping at the first significant look inflates false positives.
        The local server's: KServe keeps no per-variant outcomes.
        """
        report = self.service.local("ab_report").ab_report(
            self.name, control=control, window_s=window_s, minimum_effect=minimum_effect,
            alpha=alpha, power=power,
        )  # fmt: skip
        return ABReport(report)

    def variant_chart(self, window_s: float = 10.0, interval_s: float = 1.0) -> Any:
        """A live plotly chart of req/s and p99 per variant (extra `notebook`): watch a split."""
        chart = VariantChart(self.variants, title=self.name, window_s=window_s,
                             interval_s=interval_s).start()  # fmt: skip
        self._charts.append(chart)
        return chart.figure

    def variants(self, window_s: float = 60) -> dict[str, Any]:
        """Per variant: version, share, requests, errors and p50/p95/p99 of the last `window_s`."""
        return self.service.local("variants").variants(self.name, window_s).model_dump()
