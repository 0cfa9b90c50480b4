"""Which clusters this machine can reach: the kubeconfig's contexts, read as `kubectl` reads them.

`KServeBackend` connects through one context; a front end (the sidebar's picker) lists them all
first so the user picks one by name. Both find the kubeconfig the same way (`kubeconfig_path`):
`$KUBECONFIG` (its files merged, as `kubectl` does), else `~/.kube/config`; without one, inside a
pod, the pod's service account reaches its own cluster (`in_cluster_namespace`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nstarx_jupyter.errors import UnavailableError, require

__all__ = ["KubeContext", "in_cluster_namespace", "kube_contexts", "kubeconfig_path"]

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MAX_CONTEXTS = 200
"""A kubeconfig with more contexts than this is cut: a picker is no place for thousands."""


@dataclass(frozen=True, slots=True)
class KubeContext:
    """One context of the kubeconfig: a cluster, a user and a default namespace."""

    name: str
    cluster: str
    namespace: str
    """The context's namespace, or `default` when it names none (as `kubectl` does)."""
    current: bool
    """Whether it is the kubeconfig's `current-context`."""


def kubeconfig_path(explicit: str | Path | None = None) -> str | None:
    """The kubeconfig to read: `explicit`, else `$KUBECONFIG`, else `~/.kube/config` if present."""
    if explicit:
        return str(explicit)
    from_env = os.environ.get("KUBECONFIG")
    if from_env:
        return from_env
    default = Path("~/.kube/config").expanduser()
    return str(default) if default.exists() else None


def in_cluster_namespace() -> str | None:
    """Inside a pod (`$KUBERNETES_SERVICE_HOST`): its service account's namespace; else None."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    try:
        found = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:  # no namespace file mounted: the API server's default
        found = ""
    return found or "default"


def kube_contexts(kubeconfig: str | Path | None = None) -> tuple[str, list[KubeContext]]:
    """The kubeconfig's path and its contexts, current first then by name.

    Raises:
        MissingExtraError: the `kubernetes` client is not installed (extra `kserve`).
        UnavailableError: there is no kubeconfig, or it cannot be read (the message says which).
    """
    k8s = require("kubernetes", "kserve")
    import yaml  # the kubernetes client's own dependency: it parses the kubeconfig with it

    path = kubeconfig_path(kubeconfig)
    if path is None:
        raise UnavailableError(
            "no kubeconfig: set KUBECONFIG or write ~/.kube/config to reach a cluster"
        )
    try:
        listed, active = k8s.config.list_kube_config_contexts(config_file=path)
    except (k8s.config.ConfigException, yaml.YAMLError, OSError, ValueError) as exc:
        raise UnavailableError(f"kubeconfig {path}: {' '.join(str(exc).split())}") from None
    current = (active or {}).get("name")
    found = [_context(entry, current) for entry in listed or [] if entry.get("name")]
    found.sort(key=lambda context: (not context.current, context.name))
    return path, found[:MAX_CONTEXTS]


def _context(entry: dict[str, Any], current: str | None) -> KubeContext:
    body = entry.get("context") or {}
    return KubeContext(
        name=str(entry["name"]),
        cluster=str(body.get("cluster") or ""),
        namespace=str(body.get("namespace") or "default"),
        current=entry["name"] == current,
    )
