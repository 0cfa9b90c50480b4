"""Rollouts from a notebook cell: canary, blue-green, A/B splits, shadows, fallbacks, rules.

Each is one conditional change of the deployment's spec: it applies only while the revision it
read is still current (`if_revision`), so two notebooks steering one deployment cannot undo each
other's change without noticing (`ConflictError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.sources import storage_uri_of
from nstarx_jupyter.deployment.spec import PRIMARY, DeploymentSpec, Traffic, Variant
from nstarx_jupyter.errors import ConflictError, InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from nstarx_jupyter.deployment.local import LocalBackend
    from nstarx_jupyter.notebook.abreport import ABReport
    from nstarx_jupyter.notebook.analysis import AnalysisPolicy
    from nstarx_jupyter.registry import ModelVersion

__all__ = ["RolloutMixin"]

CONFLICT_RETRIES = 5
"""Reads and writes a change may take when the deployment keeps changing under it."""


class RolloutMixin:
    """Traffic methods of `Deployment` (which provides `name`, `backend` and `registration`)."""

    name: str
    backend: LocalBackend
    registration: Future[ModelVersion] | None
    _charts: list[Any]

    def _current(self) -> tuple[DeploymentSpec, int, dict[str, Any]]:
        described = self.backend.describe(self.name)
        spec = DeploymentSpec.build(**described["spec"])
        return spec, int(described["revision"]), described

    def _update(
        self, change: Callable[[DeploymentSpec, dict[str, Any]], DeploymentSpec]
    ) -> dict[str, Any]:
        """Apply `change` to the deployment as it is, retrying when it changed meanwhile.

        Like a PATCH with Kubernetes' retry-on-conflict: a change made between our read and our
        write (a registration switching to the registry, another notebook) makes the write fail
        with a conflict; the change is then made again on top of the newer state, not over it.
        """
        for attempt in range(CONFLICT_RETRIES):
            spec, revision, described = self._current()
            try:
                return dict(self.backend.apply(change(spec, described), if_revision=revision))
            except ConflictError:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _source(self, model_or_uri: Any, version: str | int | None) -> tuple[str, bool, bool]:
        """A model given any way `deploy()` takes it: storage URI, fitted?, must be `trusted`?

        A file the owner named is trusted, and so is a fitted model staged with joblib.
        """
        if isinstance(model_or_uri, str | Path):
            return storage_uri_of(model_or_uri, version), False, True
        from nstarx_jupyter.notebook.api import _stage

        staged, trusted = _stage(model_or_uri, self.name)
        return str(staged), True, trusted

    # -- canary and blue-green: revisions of the deployment's own model ------------------------

    def canary(
        self,
        model_or_uri: Any,
        percent: int = 10,
        *,
        version: str | int | None = None,
        auto: AnalysisPolicy | None = None,
    ) -> Any:
        """Send `percent` % of requests to a new model (KServe's `canaryTrafficPercent`).

        The new model becomes the latest revision; the revision that last had all the traffic
        keeps the rest until `promote()` or `rollback()`. A fitted model is served at once and
        registered behind, as with `deploy()`. Returns the deployment's description, or with
        `auto` a running `CanaryAnalysis` that steps the traffic up through `auto.steps` while
        error rate and p99 stay within its margins, and rolls back on its own when they don't.
        """
        if auto is not None:
            percent = auto.steps[0]
        if not 0 <= percent <= 100:
            raise InvalidInputError("percent: between 0 and 100")
        uri, fitted, trusted = self._source(model_or_uri, version)
        applied = self._update(
            lambda spec, _: spec.replace(
                storage_uri=uri, canary_traffic_percent=percent, trusted=spec.trusted or trusted
            )
        )
        if fitted:
            from nstarx_jupyter.notebook.api import _register_behind

            new = DeploymentSpec.build(**applied["spec"])
            self.registration = _register_behind(
                model_or_uri, new, int(applied["revision"]), self.backend
            )
        if auto is not None:
            from nstarx_jupyter.notebook.analysis import CanaryAnalysis

            self.note(f"canary analysis started: steps {list(auto.steps)}")
            return CanaryAnalysis(self, auto).start()
        return applied

    def note(self, text: str) -> None:
        """Write a line into the deployment's log (`logs()`)."""
        self.backend.note(self.name, text)

    def set_canary_percent(self, percent: int) -> dict[str, Any]:
        """Move the canary's share of traffic (no new revision, no reload)."""

        def change(spec: DeploymentSpec, described: dict[str, Any]) -> DeploymentSpec:
            if "stable" not in described:
                raise InvalidInputError(f"'{self.name}' has no canary running")
            return spec.replace(canary_traffic_percent=percent)

        return self._update(change)

    def promote(self) -> dict[str, Any]:
        """Give the latest revision all the traffic; the previous one unloads when idle."""

        def change(spec: DeploymentSpec, described: dict[str, Any]) -> DeploymentSpec:
            if "stable" not in described:
                raise InvalidInputError(f"'{self.name}' has no canary or staged model to promote")
            return spec.replace(canary_traffic_percent=None)

        return self._update(change)

    def rollback(self) -> dict[str, Any]:
        """Give the last rolled-out revision all the traffic back and drop the canary.

        The stable model serves again as a new revision (its loaded copy keeps answering: a
        registry model is not reloaded); routing variants set since stay as they are.
        """

        def change(spec: DeploymentSpec, described: dict[str, Any]) -> DeploymentSpec:
            stable = described.get("stable")
            if stable is None:
                raise InvalidInputError(f"'{self.name}' has no canary to roll back")
            old = DeploymentSpec.build(**stable["spec"])
            return old.replace(canary_traffic_percent=None, traffic=spec.traffic)

        return self._update(change)

    def stage(self, model_or_uri: Any, *, version: str | int | None = None) -> str:
        """Blue-green: load a new model next to the live one with no traffic.

        Returns the staged model's version: check it with `predict(data, version=...)`, then
        `switch()` moves all traffic at once (or `rollback()` drops it).
        """
        self.canary(model_or_uri, 0, version=version)
        return self._latest_version()

    def switch(self) -> dict[str, Any]:
        """Blue-green: move all traffic to the staged model at once."""
        return self.promote()

    def _latest_version(self) -> str:
        for arm in self.backend.describe(self.name).get("traffic", {}).get("split", []):
            if arm["variant"] == "canary":
                return str(arm["version"])
        raise InvalidInputError(f"'{self.name}' has no staged revision")

    # -- other variants: A/B splits, shadows, fallbacks, rules -----------------------------------

    def set_traffic(
        self,
        split: dict[str, int] | None = None,
        *,
        variants: dict[str, Any] | None = None,
        sticky_header: str | None = None,
        shadow: str | None = None,
        fallback: str | None = None,
        fallback_timeout_ms: int | None = None,
        rules: list[dict[str, Any]] | None = None,
        regions: dict[str, str] | None = None,
        networks: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Replace the deployment's traffic policy (see `Traffic`); None fields are cleared.

        `variants` maps variant names to models (fitted, files or registry URIs); the
        deployment's own model is `primary`. Variants kept from the current policy and not
        named again stay defined. Example: an A/B test sticky per user::

            dep.set_traffic({"primary": 50, "challenger": 50}, variants={"challenger": model},
                            sticky_header="X-User-Id")
        """
        sources = {name: self._source(model, None) for name, model in (variants or {}).items()}
        given = {name: Variant(name=name, storage_uri=uri) for name, (uri, _, _) in sources.items()}
        trusted = any(trust for _, _, trust in sources.values())

        def change(spec: DeploymentSpec, _: dict[str, Any]) -> DeploymentSpec:
            known = {v.name: v for v in spec.traffic.variants} if spec.traffic else {}
            known.update(given)
            doc = {"variants": list(known.values()), "split": split or {},
                   "sticky_header": sticky_header, "shadow": shadow, "fallback": fallback,
                   "fallback_timeout_ms": fallback_timeout_ms, "rules": rules or [],
                   "regions": regions or {}, "networks": networks or {}}  # fmt: skip
            try:
                traffic = Traffic.model_validate(doc)
            except ValueError as exc:
                raise InvalidInputError(f"traffic: {exc}") from None
            used = _used(traffic)
            traffic = traffic.model_copy(
                update={"variants": [v for v in traffic.variants if v.name in used]}
            )
            empty = not traffic.variants and not traffic.split and not traffic.rules
            return spec.replace(traffic=None if empty else traffic,
                                trusted=spec.trusted or trusted)  # fmt: skip

        return self._update(change)

    def shadow(self, model_or_uri: Any, *, name: str = "shadow") -> dict[str, Any]:
        """Copy every request to `model_or_uri`; its answers are compared, never returned."""
        current = self._traffic_fields()
        current.update(shadow=name, variants={name: model_or_uri})
        return self.set_traffic(**current)

    def fallback(
        self, model_or_uri: Any, *, name: str = "fallback", timeout_ms: int | None = None
    ) -> dict[str, Any]:
        """Answer with `model_or_uri` when the chosen variant fails or takes over `timeout_ms`."""
        current = self._traffic_fields()
        current.update(fallback=name, fallback_timeout_ms=timeout_ms,
                       variants={name: model_or_uri})  # fmt: skip
        return self.set_traffic(**current)

    def _traffic_fields(self) -> dict[str, Any]:
        spec, _, _ = self._current()
        if spec.traffic is None:
            return {}
        doc = spec.traffic.model_dump(exclude={"variants", "region_header"})
        return {key: value for key, value in doc.items() if value not in (None, {}, [])}

    def traffic(self) -> dict[str, Any]:
        """The current split (variant, version, percent) and rules, shadow and fallback."""
        described = self.backend.describe(self.name)
        default = {"split": [{"variant": PRIMARY, "version": None, "percent": 100.0}]}
        return dict(described.get("traffic", default))

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
        """
        from nstarx_jupyter.notebook.abreport import ABReport

        doc = self.backend.ab_report(
            self.name, control=control, window_s=window_s, minimum_effect=minimum_effect,
            alpha=alpha, power=power,
        )  # fmt: skip
        return ABReport(doc)

    def variant_chart(self, window_s: float = 10.0, interval_s: float = 1.0) -> Any:
        """A live plotly chart of req/s and p99 per variant (extra `notebook`): watch a split."""
        from nstarx_jupyter.monitoring.live import VariantChart

        chart = VariantChart(self.variants, title=self.name, window_s=window_s,
                             interval_s=interval_s).start()  # fmt: skip
        self._charts.append(chart)
        return chart.figure

    def variants(self, window_s: float = 60) -> dict[str, Any]:
        """Per variant: version, share, requests, errors and p50/p95/p99 of the last `window_s`."""
        return self.backend.variants(self.name, window_s)


def _used(traffic: Traffic) -> set[str]:
    """The variants a policy refers to (others would load for nothing)."""
    used = {name for name, percent in traffic.split.items() if percent}
    used.update(rule.variant for rule in traffic.rules)
    used.update(traffic.regions.values())
    used.update(filter(None, (traffic.shadow, traffic.fallback)))
    return used
