"""Rollout steps of `DeploymentService`: canary, blue-green, A/B splits, shadows, fallbacks, rules.

Canary, promote and rollback are KServe's own (`canaryTrafficPercent`), so they run on every
backend; a plain split between variants is an InferenceGraph on a cluster. Header rules, sticky
callers, regions, shadows and fallbacks exist only on nstarx's server: on another backend they
are refused with the reason `to_kserve()` gives.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.kserve import _NO_KSERVE_FIELD
from nstarx_jupyter.deployment.spec import DeploymentSpec, Traffic, Variant
from nstarx_jupyter.errors import InvalidInputError, UnsupportedError

if TYPE_CHECKING:
    from collections.abc import Callable

    from nstarx_jupyter.deployment.artifacts import Source
    from nstarx_jupyter.deployment.backend import Backend, Description, TrafficView
    from nstarx_jupyter.registry import ModelVersion

__all__ = ["Rollouts"]


class Rollouts:
    """The rollout steps (`DeploymentService` provides the backend, sources and `update`)."""

    backend: Backend

    if TYPE_CHECKING:

        def update(self, name: str, change: Callable[[Description], DeploymentSpec]) -> Description:
            """See `DeploymentService.update`."""

        def _source(
            self,
            model_or_uri: Any,
            name: str,
            version: str | int | None,
            storage_uri: str | None,
            register: dict[str, Any] | None = None,
            store: str | None = None,
        ) -> Source: ...

        def _register_behind(
            self, model: Any, spec: DeploymentSpec, **register: Any
        ) -> Future[ModelVersion]: ...

        def traffic(self, name: str) -> TrafficView:
            """See `DeploymentService.traffic`."""

        def staged_version(self, name: str) -> str:
            """See `DeploymentService.staged_version`."""

    # -- canary and blue-green: revisions of the deployment's own model ------------------------

    def canary(
        self,
        name: str,
        model_or_uri: Any,
        percent: int = 10,
        *,
        version: str | int | None = None,
        storage_uri: str | None = None,
    ) -> tuple[Description, Future[ModelVersion] | None]:
        """Send `percent` % of requests to a new model (KServe's `canaryTrafficPercent`).

        The new model becomes the latest revision; the revision that last had all the traffic
        keeps the rest until `promote` or `rollback`. A fitted model is served at once and
        registered behind on the local server (registered first on a cluster), as with `deploy`.
        Returns the description and the registration (None unless the model was fitted).
        """
        if not 0 <= percent <= 100:
            raise InvalidInputError("percent: between 0 and 100")
        source = self._source(model_or_uri, name, version, storage_uri)
        applied = self.update(
            name,
            lambda now: now.spec.replace(storage_uri=source.uri, canary_traffic_percent=percent,
                                         trusted=now.spec.trusted or source.trusted),
        )  # fmt: skip
        if not source.fitted:
            return applied, None
        if source.registered is not None:
            done: Future[ModelVersion] = Future()
            done.set_result(source.registered)
            return applied, done
        return applied, self._register_behind(model_or_uri, applied.spec)

    def set_canary_percent(self, name: str, percent: int) -> Description:
        """Move the canary's share of traffic (no new revision, no reload)."""

        def change(now: Description) -> DeploymentSpec:
            if now.stable is None:
                raise InvalidInputError(f"'{name}' has no canary running")
            return now.spec.replace(canary_traffic_percent=percent)

        return self.update(name, change)

    def promote(self, name: str) -> Description:
        """Give the latest revision all the traffic; the previous one unloads when idle."""

        def change(now: Description) -> DeploymentSpec:
            if now.stable is None:
                raise InvalidInputError(f"'{name}' has no canary or staged model to promote")
            return now.spec.replace(canary_traffic_percent=None)

        return self.update(name, change)

    def rollback(self, name: str) -> Description:
        """Give the last rolled-out revision all the traffic back and drop the canary.

        The stable model serves again as a new revision (its loaded copy keeps answering: a
        registry model is not reloaded); routing variants set since stay as they are.
        """

        def change(now: Description) -> DeploymentSpec:
            if now.stable is None:
                raise InvalidInputError(f"'{name}' has no canary to roll back")
            return now.stable.spec.replace(canary_traffic_percent=None, traffic=now.spec.traffic)

        return self.update(name, change)

    def stage(
        self, name: str, model_or_uri: Any, *, version: str | int | None = None,
        storage_uri: str | None = None,
    ) -> tuple[str, Future[ModelVersion] | None]:  # fmt: skip
        """Blue-green: load a new model next to the live one with no traffic.

        Returns the staged revision's version (ask it with `predict(..., version=...)`) and the
        registration of a fitted model; `switch` then moves all traffic at once.
        """
        _, registration = self.canary(name, model_or_uri, 0, version=version,
                                      storage_uri=storage_uri)  # fmt: skip
        return self.staged_version(name), registration

    def switch(self, name: str) -> Description:
        """Blue-green: move all traffic to the staged model at once (a promote)."""
        return self.promote(name)

    # -- other variants: A/B splits, shadows, fallbacks, rules -----------------------------------

    def set_traffic(
        self,
        name: str,
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
    ) -> Description:
        """Replace the deployment's traffic policy (see `Traffic`); None fields are cleared.

        `variants` maps variant names to models (fitted, files or registry URIs); the
        deployment's own model is `primary`. Variants kept from the current policy and not
        named again stay defined. On a cluster only a plain `split` can run (an InferenceGraph).
        """
        routing = {"sticky_header": sticky_header, "rules": rules, "regions": regions,
                   "shadow": shadow, "fallback": fallback}  # fmt: skip
        self._refuse_local_routing([field for field, value in routing.items() if value])
        sources = {variant: self._source(model, name, None, None)
                   for variant, model in (variants or {}).items()}  # fmt: skip
        given = {variant: Variant(name=variant, storage_uri=source.uri)
                 for variant, source in sources.items()}  # fmt: skip
        trusted = any(source.trusted for source in sources.values())

        def change(now: Description) -> DeploymentSpec:
            spec = now.spec
            known = {v.name: v for v in spec.traffic.variants} if spec.traffic else {}
            known.update(given)
            doc = {"variants": list(known.values()), "split": split or {},
                   "fallback_timeout_ms": fallback_timeout_ms, "networks": networks or {},
                   **{field: value for field, value in routing.items() if value}}  # fmt: skip
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

        return self.update(name, change)

    def shadow(self, name: str, model_or_uri: Any, *, variant: str = "shadow") -> Description:
        """Copy every request to `model_or_uri`; its answers are compared, never returned."""
        self._refuse_local_routing(["shadow"])
        current = self._traffic_fields(name)
        current.update(shadow=variant, variants={variant: model_or_uri})
        return self.set_traffic(name, **current)

    def fallback(
        self, name: str, model_or_uri: Any, *, variant: str = "fallback",
        timeout_ms: int | None = None,
    ) -> Description:  # fmt: skip
        """Answer with `model_or_uri` when the chosen variant fails or takes over `timeout_ms`."""
        self._refuse_local_routing(["fallback"])
        current = self._traffic_fields(name)
        current.update(fallback=variant, fallback_timeout_ms=timeout_ms,
                       variants={variant: model_or_uri})  # fmt: skip
        return self.set_traffic(name, **current)

    def _traffic_fields(self, name: str) -> dict[str, Any]:
        spec = self.backend.describe(name).spec
        if spec.traffic is None:
            return {}
        doc = spec.traffic.model_dump(exclude={"variants", "region_header"})
        return {key: value for key, value in doc.items() if value not in (None, {}, [])}

    def _refuse_local_routing(self, fields: list[str]) -> None:
        """Refuse, on a backend other than the local server, routing only nstarx's server does."""
        if self.backend.target == "local" or not fields:
            return
        reasons = "; ".join(f"traffic.{field}: {_NO_KSERVE_FIELD[field]}" for field in fields)
        raise UnsupportedError(
            f"{reasons}. KServe cannot route this way, so this policy runs on nstarx's local "
            "server only"
        )


def _used(traffic: Traffic) -> set[str]:
    """The variants a policy refers to (others would load for nothing)."""
    used = {name for name, percent in traffic.split.items() if percent}
    used.update(rule.variant for rule in traffic.rules)
    used.update(traffic.regions.values())
    used.update(filter(None, (traffic.shadow, traffic.fallback)))
    return used
