"""How a deployment's spec becomes served models and a traffic plan (KServe's revision rules).

A spec change makes a new revision unless only traffic fields changed; during a canary the last
rolled-out revision (`stable`) keeps serving beside the latest. `models_for` lists the model
versions a deployment serves, `plan_for` the router's plan over them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.spec import PRIMARY, DeploymentSpec
from nstarx_jupyter.errors import ConflictError, InvalidInputError
from nstarx_jupyter.model_uri import ModelUri
from nstarx_jupyter.runtimes.loader import RUNTIMES
from nstarx_jupyter.serving.settings import ModelSettings, file_settings
from nstarx_jupyter.serving.trust import check_path_text, is_import_path
from nstarx_jupyter.traffic import Arm, TrafficPlan

if TYPE_CHECKING:
    from nstarx_jupyter.deployment.backend import Status

__all__ = [
    "Deployed",
    "check_revision",
    "models_for",
    "next_revision",
    "plan_for",
    "same_predictor",
    "settings_for",
    "stable_after",
    "traffic_view",
    "what_changed",
]


@dataclass(slots=True)
class Deployed:
    """A deployment as the control plane keeps it: spec, revision, status and times."""

    spec: DeploymentSpec
    revision: int
    created: float
    updated: float
    status: Status = "Ready"
    reason: str = ""
    stable: tuple[DeploymentSpec, int] | None = None
    """During a canary: the last rolled-out spec and revision, serving the rest of the traffic."""
    versions: dict[str, str] = field(default_factory=dict)
    """Model version served for each role: `latest`, `stable`, and each variant's name."""


_TRAFFIC_ONLY = {"canary_traffic_percent", "traffic"}
"""Spec fields whose change moves traffic without making a new revision (KServe's rule)."""


def settings_for(spec: DeploymentSpec, revision: int | str) -> ModelSettings:
    """The local server's settings for a deployment, with KServe's meanings kept.

    Raises:
        InvalidInputError: the spec names something the local server cannot read.
    """
    fields: dict[str, Any] = {
        "name": spec.name,
        "options": spec.options,
        "output_names": spec.output_names,
        "min_replicas": 0 if spec.min_replicas == 0 else 1,
        "container_concurrency": spec.container_concurrency or 0,
        "timeout_s": spec.timeout_s,
        "version": str(revision),
        "trusted": spec.trusted,
    }
    uri = spec.storage_uri
    if uri is None:
        raise InvalidInputError("storage_uri: the deployment names no model")
    named = ModelUri.parse(uri)
    if named.is_registry:
        fields["storage_uri"] = uri
        if named.version is not None:
            fields["version"] = named.version  # the registry's number is the one users know
    else:
        if not named.is_local:
            raise InvalidInputError(
                f"storage_uri: the local server reads files and registry URIs, not '{uri}'"
            )
        path = check_path_text(named.path)
        try:
            found = path.exists()
        except OSError as exc:  # unreadable folder on the way
            raise InvalidInputError(f"storage_uri: cannot read {path}: {exc.strerror}") from None
        if not found:
            raise InvalidInputError(f"storage_uri: {path} does not exist")
        fields["path"] = path
        saved = file_settings(path)  # a folder's model-settings.json, as `nstarx serve` reads it
        fields = {**saved, **fields, "options": {**saved.get("options", {}), **spec.options}}
    if spec.runtime in RUNTIMES or (spec.runtime and is_import_path(spec.runtime)):
        fields["runtime"] = spec.runtime  # a ServingRuntime name means nothing here: infer
    if spec.batching is not None:
        fields["max_batch_size"] = spec.batching.max_batch_size
        fields["max_latency_ms"] = float(spec.batching.max_latency_ms)
    return ModelSettings.build(**fields)


def check_revision(name: str, previous: Deployed | None, if_revision: int | None) -> None:
    """Raise `ConflictError` unless `if_revision` (when given) is still the current revision."""
    if if_revision is not None and (previous is None or previous.revision != if_revision):
        now_at = f"revision {previous.revision}" if previous else "deleted"
        raise ConflictError(f"'{name}' is no longer at revision {if_revision} (now {now_at})")


def next_revision(previous: Deployed | None, traffic_only: bool) -> int:
    """The revision a change makes: the same one for a traffic-only change, else the next."""
    if previous is None:
        return 1
    return previous.revision if traffic_only else previous.revision + 1


def same_predictor(old: DeploymentSpec, new: DeploymentSpec) -> bool:
    """Whether only traffic fields differ: KServe moves traffic without a new revision then.

    Applying an identical spec again is a new revision: the file behind a path may have changed.
    """
    return old.model_dump(exclude=_TRAFFIC_ONLY) == new.model_dump(
        exclude=_TRAFFIC_ONLY
    ) and old.model_dump(include=_TRAFFIC_ONLY) != new.model_dump(include=_TRAFFIC_ONLY)


def stable_after(
    previous: Deployed, spec: DeploymentSpec, traffic_only: bool
) -> tuple[DeploymentSpec, int] | None:
    """KServe's canary rule: the last rolled-out revision keeps `100 - canary` percent.

    A new revision with `canary_traffic_percent` set starts a canary against the revision that
    last had all the traffic (the previous stable one if a canary was already running); without
    it, or at 100, the newest revision takes everything (a promotion).
    """
    percent = spec.canary_traffic_percent
    if percent is None or percent == 100:
        return None
    if traffic_only:
        return previous.stable
    if previous.status == "Failed":
        return previous.stable
    return previous.stable or (previous.spec, previous.revision)


def models_for(
    spec: DeploymentSpec, revision: int, stable: tuple[DeploymentSpec, int] | None
) -> tuple[list[ModelSettings], dict[str, str]]:
    """The model versions a deployment serves, and which version plays which role."""
    latest = settings_for(spec, revision)
    models, versions = [latest], {"latest": latest.version}
    if stable is not None:
        old = settings_for(*stable)
        if old.version == latest.version:  # same registry version, other settings
            old = old.model_copy(update={"version": f"r{stable[1]}"})
        models.append(old)
        versions["stable"] = old.version
    for variant in spec.traffic.variants if spec.traffic is not None else ():
        variant_spec = spec.replace(
            storage_uri=variant.storage_uri, runtime=variant.runtime, options=variant.options,
            model_format=variant.model_format, canary_traffic_percent=None, traffic=None,
        )  # fmt: skip
        models.append(settings_for(variant_spec, variant.name).model_copy(
            update={"version": variant.name}))  # fmt: skip
        versions[variant.name] = variant.name
    return models, versions


def plan_for(spec: DeploymentSpec, versions: dict[str, str]) -> TrafficPlan:
    """The router's plan for a deployment.

    One arm when one version takes everything, so the answers still name variant and version.
    """
    traffic = spec.traffic
    canary = "stable" in versions
    latest = versions["latest"]
    labels = {latest: "canary" if canary else PRIMARY}
    arms: list[Arm] = []
    primary_share = float(traffic.split.get(PRIMARY, 0) if traffic and traffic.split else 100)
    if canary:
        percent = float(spec.canary_traffic_percent or 0)
        labels[versions["stable"]] = "stable"
        arms.append(Arm(versions["stable"], primary_share * (100 - percent) / 100, "stable"))
        arms.append(Arm(latest, primary_share * percent / 100, "canary"))
    else:
        arms.append(Arm(latest, primary_share, PRIMARY))
    if traffic is None:
        return TrafficPlan(tuple(arms), labels=labels)
    for variant in traffic.variants:
        labels[variant.name] = variant.name
        if traffic.split.get(variant.name):
            arms.append(Arm(variant.name, float(traffic.split[variant.name]), variant.name))

    def version_of(variant: str) -> str:
        return latest if variant == PRIMARY else versions[variant]

    networks = sorted(((ipaddress.ip_network(cidr, strict=False), region)
                       for cidr, region in traffic.networks.items()),
                      key=lambda item: -item[0].prefixlen)  # fmt: skip
    return TrafficPlan(
        tuple(arms),
        sticky_header=traffic.sticky_header,
        rules=tuple(
            (rule.header, frozenset(rule.values), version_of(rule.variant))
            for rule in traffic.rules
        ),
        regions={region: version_of(variant) for region, variant in traffic.regions.items()},
        networks=tuple(networks),
        region_header=traffic.region_header,
        shadow=version_of(traffic.shadow) if traffic.shadow else None,
        fallback=version_of(traffic.fallback) if traffic.fallback else None,
        fallback_timeout_s=(
            traffic.fallback_timeout_ms / 1000 if traffic.fallback_timeout_ms else None
        ),
        labels=labels,
    )


def traffic_view(plan: TrafficPlan) -> dict[str, Any]:
    """A deployment's traffic as `describe` shows it."""
    total = sum(arm.weight for arm in plan.arms) or 1.0
    view: dict[str, Any] = {
        "split": [{"variant": arm.variant, "version": arm.version,
                   "percent": round(100 * arm.weight / total, 3)} for arm in plan.arms],
    }  # fmt: skip
    if plan.sticky_header:
        view["sticky_header"] = plan.sticky_header
    if plan.rules:
        view["rules"] = [{"header": h, "values": sorted(v), "variant": plan.label(version)}
                         for h, v, version in plan.rules]  # fmt: skip
    if plan.regions:
        view["regions"] = {region: plan.label(v) for region, v in plan.regions.items()}
    if plan.shadow:
        view["shadow"] = plan.label(plan.shadow)
    if plan.fallback:
        view["fallback"] = plan.label(plan.fallback)
    return view


def what_changed(previous: Deployed | None, deployed: Deployed, save: bool) -> str:
    """The event line for an apply."""
    if not save:
        return f"restored revision {deployed.revision} from {deployed.spec.storage_uri}"
    percent = deployed.spec.canary_traffic_percent
    if previous is not None and previous.revision == deployed.revision:
        if deployed.stable is None and previous.stable is not None:
            return f"promoted revision {deployed.revision} to all traffic"
        if deployed.stable is not None:
            return f"canary revision {deployed.revision} at {percent}%"
        return f"traffic changed at revision {deployed.revision}"
    if deployed.stable is not None:
        return (f"deployed revision {deployed.revision} from {deployed.spec.storage_uri} as a "
                f"canary at {percent}% (revision {deployed.stable[1]} keeps the rest)")  # fmt: skip
    return f"deployed revision {deployed.revision} from {deployed.spec.storage_uri}"
