"""From what a user names (a model file, a registry URI, a name and version) to a spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.errors import InvalidInputError

__all__ = ["spec_for", "storage_uri_of"]


def storage_uri_of(source: str | Path, version: str | int | None = None) -> str:
    """The storage URI of a model file or folder, a registry URI, or a registered name.

    Raises:
        InvalidInputError: `source` is neither an existing path nor a registry URI.
    """
    if isinstance(source, str) and source.startswith("models:/"):
        return source
    path = Path(source).expanduser()
    if path.exists():
        return str(path.resolve())
    if isinstance(source, str) and version is not None:
        return f"models:/{source}/{version}"
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
) -> DeploymentSpec:
    """The spec `deploy()` and `nstarx deploy` send: scale-to-zero deploys in Knative mode.

    `trusted` vouches for a file that runs code on load: the owner named it (`nstarx deploy`).
    """
    return DeploymentSpec.build(
        name=name, storage_uri=storage_uri, min_replicas=min_replicas,
        max_replicas=max_replicas, batching=batching, container_concurrency=container_concurrency,
        timeout_s=timeout_s, resources=resources, options=options or {}, auth=auth,
        trusted=trusted, deployment_mode="Knative" if min_replicas == 0 else "Standard",
        sinks=list(sinks or []), output_names=dict(output_names or {}),
    )  # fmt: skip
