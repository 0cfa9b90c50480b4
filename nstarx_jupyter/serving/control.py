"""The control API (`/nstarx/v1`): deployments (deploy, list, inspect, delete, traffic).

A deployment is a `DeploymentSpec` served as one model under its name. Specs persist as JSON files
in the server's state folder and are served again when the server restarts. Every call needs the
admin token (kept owner-only in `$NSTARX_HOME/security`) or an API key with `manage` on the
deployment; deploying a registry model also needs its `deploy` permission. Keys, access rules and
the audit log are in `security_api`.

This is the transport-free service; `control_api` is its HTTP module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import atomic_write
from nstarx_jupyter.deployment.backend import DeploymentView, Stable, TrafficView
from nstarx_jupyter.deployment.spec import PRIMARY, DeploymentSpec
from nstarx_jupyter.errors import (
    ConflictError,
    InvalidInputError,
    ModelLoadError,
    NotFoundError,
    NstarxError,
)
from nstarx_jupyter.monitoring.abtest import ab_report
from nstarx_jupyter.pipelines.sinks import HIDDEN, WebhookSink, keep_secrets
from nstarx_jupyter.protocol.control import (
    AbReport,
    DeploymentMetrics,
    DeploymentVariants,
    ShadowFigures,
    VariantFigures,
)
from nstarx_jupyter.serving.drift_api import DriftApi
from nstarx_jupyter.serving.explain_api import ExplainApi
from nstarx_jupyter.serving.graph_api import GraphApi
from nstarx_jupyter.serving.jobs_api import JobsApi
from nstarx_jupyter.serving.loading import check_trusted
from nstarx_jupyter.serving.metrics import LatencyWindow
from nstarx_jupyter.serving.pipeline_api import PipelineApi
from nstarx_jupyter.serving.repository import ModelState
from nstarx_jupyter.serving.revisions import (
    Deployed,
    check_revision,
    models_for,
    next_revision,
    plan_for,
    same_predictor,
    stable_after,
    traffic_view,
    what_changed,
)
from nstarx_jupyter.serving.security_api import SecurityApi
from nstarx_jupyter.serving.settings import registry_models
from nstarx_jupyter.serving.trust import ArtifactPolicy, default_policy
from nstarx_jupyter.serving.usage_api import UsageApi
from nstarx_jupyter.traffic import Logged

if TYPE_CHECKING:
    from pathlib import Path

    from nstarx_jupyter.deployment.backend import Status
    from nstarx_jupyter.security import Guard, Principal
    from nstarx_jupyter.serving.dataplane import DataPlane
    from nstarx_jupyter.serving.settings import ModelSettings
    from nstarx_jupyter.serving.usage import UsageMonitor

__all__ = ["ControlPlane"]

log = logging.getLogger(__name__)


class ControlPlane:
    """Deployments on the local server, kept in `state_dir/deployments/NAME.json`."""

    def __init__(
        self,
        dataplane: DataPlane,
        state_dir: Path,
        guard: Guard,
        policy: ArtifactPolicy | None = None,
        *,
        usage: UsageMonitor | None = None,
    ) -> None:
        self.dataplane = dataplane
        self.policy = policy or default_policy()
        """Which files and runtimes a deployment may name (`nstarx serve --allow-path`)."""
        self.repository = dataplane.repository
        self.folder = state_dir / "deployments"
        self.events = state_dir / "events.log"
        self.guard = guard
        self.security = SecurityApi(dataplane)
        self.pipelines = PipelineApi(dataplane, state_dir, self.policy)
        self.graphs = GraphApi(dataplane, state_dir)
        self._deployed: dict[str, Deployed] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.usage = UsageApi(dataplane, state_dir, self._get, self.names, monitor=usage)
        """Resource use, cost and the per-minute trends of the deployments."""
        self.drift = DriftApi(dataplane, state_dir, self._get)
        """Drift of live traffic from each deployment's reference (its score goes into the
        rollups; its gauges into `/metrics`)."""
        dataplane.on_predict = self.drift.hub.tap
        self.usage.drift_score = self.drift.hub.score
        dataplane.metrics.registry.register(self.drift.hub.collector())
        self.explain = ExplainApi(dataplane, self.drift.hub, self._get)
        dataplane.pipelines.explainer = self.explain.explain_for_pipeline
        """SHAP values per row and feature importance over live traffic (drift's live rows)."""
        dataplane.metrics.registry.register(self.explain.collector())
        self.jobs = JobsApi(dataplane, state_dir, self.policy)
        """Batch jobs over files, resumed after a restart."""

    async def restore(self) -> None:
        """Serve the deployments saved by an earlier run; a broken one is reported, not fatal."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.usage.start()
        self.drift.hub.start()
        self.explain.start()
        for file in sorted(self.folder.glob("*.json")):
            try:
                doc = json.loads(file.read_text())
                spec = DeploymentSpec.build(**doc["spec"])
                stable = None
                if doc.get("stable"):
                    stable = (DeploymentSpec.build(**doc["stable"]["spec"]),
                              int(doc["stable"]["revision"]))  # fmt: skip
                await self._apply(spec, int(doc.get("revision", 1)), False,
                                  float(doc.get("created", time.time())), None, stable)  # fmt: skip
            except (OSError, ValueError, KeyError, NstarxError) as exc:
                log.error("cannot restore deployment from %s: %s", file, exc)
                if isinstance(exc, NstarxError):
                    self._keep_failed(file.stem, exc.message)
        await self.pipelines.restore()  # after the deployments their model nodes may call
        self.jobs.restore()  # after what they call
        self.graphs.restore()

    def _keep_failed(self, name: str, reason: str) -> None:
        """List a deployment that did not restore as `FAILED` in the model repository too.

        Its models then show in the V2 repository index, metadata and readiness with the
        reason, as a `nstarx serve --model` that fails to load does; a redeploy replaces them.
        """
        deployed = self._deployed.get(name)
        if deployed is None or deployed.status != "Failed":
            return
        with contextlib.suppress(NstarxError):  # the name is taken (`--model` of the same)
            for settings in models_for(deployed.spec, deployed.revision, None)[0]:
                entry = self.repository.add(settings)
                entry.state, entry.reason = ModelState.FAILED, reason

    async def apply(
        self,
        spec: DeploymentSpec,
        *,
        revision: int | None = None,
        save: bool = True,
        created: float | None = None,
        if_revision: int | None = None,
    ) -> DeploymentView:
        """Create or replace a deployment; a replacement is a new revision, swapped in ready.

        Changes to one deployment run one at a time. `if_revision` makes the change conditional
        (optimistic concurrency): it applies only while that revision is the current one.

        Raises:
            ConflictError: `if_revision` is no longer current (or the deployment is gone).
        """
        async with self._locks.setdefault(spec.name, asyncio.Lock()):
            return await self._apply(spec, revision, save, created, if_revision)

    async def _apply(
        self,
        spec: DeploymentSpec,
        revision: int | None,
        save: bool,
        created: float | None,
        if_revision: int | None,
        stable: tuple[DeploymentSpec, int] | None = None,
    ) -> DeploymentView:
        previous = self._deployed.get(spec.name)
        check_revision(spec.name, previous, if_revision)
        traffic_only = (
            previous is not None
            and previous.status != "Failed"
            and same_predictor(previous.spec, spec)
        )
        if revision is None:
            revision = next_revision(previous, traffic_only)
        if previous is not None and save:
            stable = stable_after(previous, spec, traffic_only)
        models, versions = self._models(spec, revision, stable)
        plan = plan_for(spec, versions)
        now = time.time()
        created = created or (previous.created if previous else now)
        public = self.guard.public
        was_public = spec.name in public
        if spec.auth:
            public.discard(spec.name)  # before the new revision answers anyone
        name = spec.name
        try:
            try:
                await self.repository.replace_all(
                    name, models, versions["latest"],
                    on_swap=lambda: self.dataplane.set_traffic(name, plan),
                )  # fmt: skip
            except ModelLoadError as exc:  # the user's file: their mistake to fix, not a 500
                raise InvalidInputError(f"the model did not load: {exc.message}") from exc
        except NstarxError as exc:
            if was_public:
                public.add(name)
            self._event(name, f"revision {revision} failed: {exc.message}")
            if previous is None:
                self._deployed[name] = Deployed(spec, revision, created, now, "Failed",
                                                 exc.message)  # fmt: skip
            raise
        if not spec.auth:
            public.add(name)
        self.dataplane.sinks.configure(name, spec.sinks, trusted=spec.trusted)
        deployed = Deployed(spec, revision, created, now, stable=stable, versions=versions)
        self._deployed[name] = deployed
        if save:
            self._save(deployed)
        self._event(name, what_changed(previous, deployed, save))
        return self.describe(name)

    def _models(
        self, spec: DeploymentSpec, revision: int, stable: tuple[DeploymentSpec, int] | None
    ) -> tuple[list[ModelSettings], dict[str, str]]:
        """`models_for`, within the policy: paths before anything is opened, then runtimes."""
        self.policy.check_spec(spec)
        self.dataplane.sinks.check(spec.name, spec.sinks, trusted=spec.trusted)  # before loading
        models, versions = models_for(spec, revision, stable)
        for settings in models:
            self.policy.check_settings(settings)  # a folder's model-settings.json may name one
            try:
                check_trusted(settings)  # refused now, even when it would load on first use
            except ModelLoadError as exc:
                raise InvalidInputError(f"the model did not load: {exc.message}") from exc
        return models, versions

    async def delete(self, name: str) -> None:
        """Stop serving a deployment and forget it."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            await self._delete(name)

    async def _delete(self, name: str) -> None:
        self._get(name)
        del self._deployed[name]
        with contextlib.suppress(NstarxError):
            await self.repository.remove(name)
        self.guard.public.discard(name)
        self.guard.keys.revoke_minted_for(name)  # its deploy's key; keys made on purpose stay
        self.dataplane.sinks.remove(name)
        (self.folder / f"{name}.json").unlink(missing_ok=True)
        self.drift.hub.forget(name)
        self.explain.forget(name)
        self._event(name, "deleted")

    def logs(self, name: str, lines: int = 200) -> list[str]:
        """The last `lines` events of a deployment (deploys, failures, restores, deletion)."""
        try:
            text = self.events.read_text()
        except FileNotFoundError:
            return []
        mine = [line for line in text.splitlines() if line.split(" ", 2)[1:2] == [name]]
        return mine[-lines:]

    def note(self, name: str, text: object) -> None:
        """Append a client's line (an automated rollout's decision, say) to the events."""
        self._get(name)
        if not isinstance(text, str) or not text.strip() or len(text) > 2000:
            raise InvalidInputError("text: a non-empty string of 2000 characters at most")
        self._event(name, " ".join(text.split()))  # one line, whatever was sent

    def history(self, name: str) -> list[str]:
        """`logs`, or `NotFoundError` for a name never deployed (a deleted one keeps them)."""
        lines = self.logs(name)
        if not lines:
            self._get(name)
        return lines

    def _event(self, name: str, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with contextlib.suppress(OSError), self.events.open("a") as out:
            out.write(f"{stamp} {name} {text}\n")

    def describe(self, name: str) -> DeploymentView:
        """A deployment's spec, revision, status and times (dump it with `exclude_defaults`)."""
        deployed = self._get(name)
        status, reason = deployed.status, deployed.reason
        if status == "Ready":
            with contextlib.suppress(NstarxError):
                entry = self.repository.entry(name)
                status = _STATUS.get(entry.state.value, "Idle")
                reason = entry.reason
        plan = self.dataplane.traffic(name)
        stable = None
        if deployed.stable is not None:
            stable_spec, stable_revision = deployed.stable
            stable = Stable(revision=stable_revision, spec=_shown(stable_spec))
        return DeploymentView(
            name=name, revision=deployed.revision, status=status, spec=_shown(deployed.spec),
            created=deployed.created, updated=deployed.updated,
            sinks=self.dataplane.sinks.stats(name), reason=reason or None,
            traffic=None if plan is None else TrafficView.model_validate(traffic_view(plan)),
            stable=stable,
        )  # fmt: skip

    async def ab_report(
        self,
        name: str,
        *,
        window_s: float | None = None,
        control: str | None = None,
        alpha: float = 0.05,
        power: float = 0.8,
        minimum_effect: float = 0.05,
    ) -> AbReport:
        """Each variant against the control: error rate, latency and outcomes, tested.

        `control` is a variant name (default: `stable` during a canary, else `primary`);
        `window_s` limits the analysis to recent requests (default: the whole request log);
        `minimum_effect` is the smallest change in an outcome rate worth detecting.

        The log is copied here, on the event loop (a few ms for 100k requests); the tests run
        in a worker thread: on a full log they take 130 ms (the first call, importing scipy,
        a second), which on the loop would stall every request in flight.
        """
        self._get(name)
        if not (0 < alpha < 1 and 0 < power < 1):
            raise InvalidInputError("alpha and power: between 0 and 1")
        plan = self.dataplane.traffic(name)
        log = self.dataplane.routes.logs.get(name)
        if plan is None or log is None:
            raise InvalidInputError(f"'{name}' keeps no request log")
        since = time.time() - window_s if window_s else 0.0
        rows = log.rows(since)
        labels = {version: plan.label(version) for version in {row[0] for row in rows}}

        def analyse() -> AbReport:
            groups: dict[str, list[Any]] = {}
            for row in rows:
                groups.setdefault(labels[row[0]], []).append(Logged._make(row))
            chosen = control or ("stable" if "stable" in groups else PRIMARY)
            return AbReport.model_validate({"name": name, "window_s": window_s,
                    **ab_report(groups, chosen, alpha=alpha, power=power,
                                minimum_effect=minimum_effect)})  # fmt: skip

        return await asyncio.get_running_loop().run_in_executor(None, analyse)

    def variants(self, name: str, window_s: float) -> DeploymentVariants:
        """Per variant: its version, share of traffic and the last `window_s` s of requests."""
        self._get(name)
        if not 0 < window_s <= 300:
            raise InvalidInputError("window_s: between 0 and 300 seconds")
        plan = self.dataplane.traffic(name)
        windows = self.repository.metrics.version_windows
        shares = {arm.version: arm.weight for arm in plan.arms} if plan is not None else {}
        variants = []
        for entry in self.repository.entries():
            if entry.settings.name != name:
                continue
            version = entry.settings.version
            window = windows.get((name, version)) or LatencyWindow()
            variants.append(VariantFigures.model_validate({
                "variant": plan.label(version) if plan is not None else "primary",
                "version": version,
                "percent": shares.get(version, 0.0 if plan is not None else 100.0),
                **window.summary(window_s),
            }))  # fmt: skip
        stats = self.dataplane.routes.shadows.get(name)
        shadow = None
        if stats is not None and plan is not None and plan.shadow is not None:
            shadow = ShadowFigures.model_validate({"variant": plan.label(plan.shadow),
                                                   **stats.summary()})  # fmt: skip
        return DeploymentVariants(name=name, variants=variants, shadow=shadow)

    def _get(self, name: str) -> Deployed:
        deployed = self._deployed.get(name)
        if deployed is None:
            raise NotFoundError(f"no deployment '{name}'")
        return deployed

    def names(self) -> list[str]:
        """Every deployment's name."""
        return sorted(self._deployed)

    def _save(self, deployed: Deployed) -> None:
        """Write whole or not at all: a crash leaves the old file or the new one."""
        doc: dict[str, Any] = {
            "spec": deployed.spec.model_dump(mode="json", exclude_defaults=True),
            "revision": deployed.revision, "created": deployed.created,
        }  # fmt: skip
        if deployed.stable is not None:
            stable_spec, stable_revision = deployed.stable
            doc["stable"] = {"spec": stable_spec.model_dump(mode="json", exclude_defaults=True),
                             "revision": stable_revision}  # fmt: skip
        atomic_write(self.folder / f"{deployed.spec.name}.json", json.dumps(doc, indent=1))

    def metrics(self, name: str, window_s: float, *, samples: bool = False) -> DeploymentMetrics:
        """Requests, rate, errors and exact latency percentiles over the last `window_s` s.

        Of a deployment, or of a model served from the command line (`--model`), as the nstarx
        runtime serves its one model in a KServe pod. With `samples`, each request's latency
        (s) and outcome too, for a client that merges several servers' requests (a split's
        variant pods on KServe) and summarises them as this does.
        """
        if name not in self.repository.names():
            self._get(name)
        if not 0 < window_s <= 300:
            raise InvalidInputError("window_s: between 0 and 300 seconds")
        window = self.repository.metrics.windows.get(name)
        if window is None:
            window = LatencyWindow()
        doc = {"name": name, **window.summary(window_s), "resources": self.usage.resources(name)}
        if samples:
            latencies_s, ok = window.samples(window_s)
            doc["samples"] = {"latency_s": latencies_s.tolist(), "ok": ok.tolist()}
        return DeploymentMetrics.model_validate(doc)

    async def deploy_as(self, principal: Principal, doc: dict[str, Any], *,
                        if_revision: int | None = None) -> DeploymentView:  # fmt: skip
        """Deploy `doc` (a `DeploymentSpec` as JSON, with its name) for `principal`.

        The caller must be allowed to deploy every registry model it names, and the artifact
        policy must allow its files and runtimes.
        """
        name = str(doc["name"])
        if self.dataplane.pipelines.get(name) is not None:
            raise ConflictError(f"a pipeline is already served as '{name}'")
        if self.dataplane.graphs.get(name) is not None:
            raise ConflictError(f"an inference graph is already served as '{name}'")
        spec = DeploymentSpec.build(**doc)
        previous = self._deployed.get(name)
        if spec.sinks:  # headers shown hidden and sent back keep their values
            try:
                kept = keep_secrets(spec.sinks, previous.spec.sinks if previous else [])
            except ValueError as exc:
                raise InvalidInputError(f"deployment spec field 'sinks': {exc}") from None
            spec = spec.replace(sinks=kept)
        self.policy.check_principal(spec, principal)
        variants = spec.traffic.variants if spec.traffic is not None else []
        uris = [spec.storage_uri, *(variant.storage_uri for variant in variants)]
        self.guard.check_models(principal, "deploy", registry_models(uris))
        started = time.perf_counter()
        described = await self.apply(spec, if_revision=if_revision)
        if spec.trusted:  # who vouched for code that runs on load, beside the call's own record
            self._event(name, f"revision {described.revision} trusted by {principal.key}")
            self.dataplane.audit.call(principal, "deployment.trusted", "control", name,
                                      str(described.revision), 200, started)  # fmt: skip
        return described

    async def close(self) -> None:
        """Write the trends' last minute and stop sampling (the server is stopping)."""
        await self.jobs.close()
        await self.drift.hub.close()
        await self.explain.close()
        await self.usage.close()


_STATUS: dict[str, Status] = {"READY": "Ready", "LOADING": "Loading", "FAILED": "Failed"}
"""A served model's state as its deployment's status (any other state: `Idle`)."""


def _shown(spec: DeploymentSpec) -> DeploymentSpec:
    """A spec as described to callers: sink headers (secrets) as `***`."""
    if not any(isinstance(sink, WebhookSink) and sink.headers for sink in spec.sinks):
        return spec
    doc = spec.model_dump(mode="json", exclude_defaults=True)
    for sink in doc.get("sinks", []):
        if sink.get("headers"):
            sink["headers"] = dict.fromkeys(sink["headers"], HIDDEN)
    return DeploymentSpec.build(**doc)
