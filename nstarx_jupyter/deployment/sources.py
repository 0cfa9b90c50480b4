"""From what a user names (a model file, a registry URI, a name and version) to a spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.errors import InvalidInputError, ModelLoadError
from nstarx_jupyter.model_uri import ModelUri, registry_uri
from nstarx_jupyter.runtimes.devices import DEVICE_OPTION, wanted_device

__all__ = ["GPU_RESOURCE", "spec_for", "storage_uri_of", "with_device"]

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource NVIDIA's device plugin offers (KServe's GPU examples ask for it)."""


def storage_uri_of(source: str | Path, version: str | int | None = None) -> str:
    """The storage URI of a model file or folder, a registry URI, or a registered name.

    Raises:
        InvalidInputError: `source` is neither an existing path nor a registry URI.
    """
    named = ModelUri.parse(source) if isinstance(source, str) else None
    if named is not None and named.is_registry:
        return named.text
    path = named.local_path() if named is not None and named.is_local else Path(source).expanduser()
    if path.exists():
        return str(path.resolve())
    if isinstance(source, str) and version is not None:
        return registry_uri(source, version)
    raise InvalidInputError(f"'{source}' is neither a file nor a registry URI")


def spec_for(
    storage_uri: str,
    name: str,
    *,
    min_replicas: int = 1,
    max_replicas: int = 1,
    batching: dict[str, Any] | None = None,
    container_concurrency: int | None = None,
    timeout_s: int | None = None,
    resources: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    auth: bool = True,
    trusted: bool = False,
    sinks: list[Any] | None = None,
    output_names: dict[str, str] | None = None,
    device: str | None = None,
) -> DeploymentSpec:
    """The spec `deploy()` and `nstarx deploy` send: scale-to-zero deploys in Knative mode.

    `trusted` vouches for a file that runs code on load: the owner named it (`nstarx deploy`).
    `device` (`auto`, `cpu`, `gpu`, `cuda:N`, `tensorrt`) becomes the runtime's `device` option;
    a GPU device also asks the cluster for one (`nvidia.com/gpu: 1` in the limits, unless the
    resources already name a GPU count).
    """
    if device is not None:
        options, resources = with_device(device, options, resources)
    return DeploymentSpec.build(
        name=name, storage_uri=storage_uri, min_replicas=min_replicas,
        max_replicas=max_replicas, batching=batching, container_concurrency=container_concurrency,
        timeout_s=timeout_s, resources=resources, options=options or {}, auth=auth,
        trusted=trusted, deployment_mode="Knative" if min_replicas == 0 else "Standard",
        sinks=list(sinks or []), output_names=dict(output_names or {}),
    )  # fmt: skip


def with_device(
    device: str, options: dict[str, Any] | None, resources: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Options with `device` set, and resources asking for a GPU when `device` is one.

    Raises:
        InvalidInputError: `device` is not one the runtimes know.
    """
    try:
        wanted = wanted_device({DEVICE_OPTION: device})
    except ModelLoadError as exc:
        raise InvalidInputError(exc.message) from None
    options = {**(options or {}), DEVICE_OPTION: wanted}
    if wanted in ("auto", "cpu"):
        return options, resources
    limits = dict((resources or {}).get("limits") or {})
    limits.setdefault(GPU_RESOURCE, "1")
    return options, {**(resources or {}), "limits": limits}
