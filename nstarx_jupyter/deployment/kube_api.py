"""Talking to the Kubernetes API for `KServeBackend`: the connection, KServe's kinds, its errors.

The API server's answers become the package's errors, each one line: a 422 names the refused
fields (its Status' causes), a 409 the fields another field manager owns, a 404 without a name
says KServe's CRDs are missing.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import yaml

from nstarx_jupyter.deployment.kubeconfig import in_cluster_namespace, kubeconfig_path
from nstarx_jupyter.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    NstarxError,
    UnauthenticatedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["FIELD_MANAGER", "GROUP", "KINDS", "NoKServeError", "api_error", "connect",
           "http_error"]  # fmt: skip

GROUP = "serving.kserve.io"
FIELD_MANAGER = "nstarx"
KINDS: dict[str, tuple[str, str, bool]] = {
    "InferenceService": ("v1beta1", "inferenceservices", True),
    "InferenceGraph": ("v1alpha1", "inferencegraphs", True),
    "ServingRuntime": ("v1alpha1", "servingruntimes", True),
    "ClusterServingRuntime": ("v1alpha1", "clusterservingruntimes", False),
}
"""KServe's kinds: (version, plural, namespaced)."""
_CONFLICT_WITH = re.compile(r'conflicts? with "([^"]+)"')


class NoKServeError(NotFoundError):
    """The cluster has no such resource type: KServe (its CRDs) is not installed."""


def api_error(exc: Any, kind: str, name: str | None, namespace: str) -> NstarxError:
    """One line naming what the API server refused and why (from its Status document)."""
    try:
        status = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        status = {}
    if not isinstance(status, dict):
        status = {}
    message = " ".join(str(status.get("message") or exc.reason or "").split())
    details = status.get("details") or {}
    causes = details.get("causes") or []
    what = f"{kind} '{name}'" if name else kind
    code = int(exc.status or 0)
    if code == 422:
        fields = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}".strip()
                           for c in causes) or message  # fmt: skip
        return InvalidInputError(f"{what} refused by the API server: {fields}")
    if code == 409:
        return _conflict(what, message, causes)
    if code == 404:
        if not details.get("name"):
            return NoKServeError(
                f"the cluster has no {kind} resource ({GROUP}): is KServe installed? "
                f"(kubectl get crd {KINDS.get(kind, ('', kind.lower() + 's'))[1]}.{GROUP})"
            )
        if details.get("kind") == "namespaces":
            return NotFoundError(f"no namespace '{details['name']}' on this cluster")
        return NotFoundError(f"no {what} in namespace '{namespace}'")
    return http_error(code, f"{what}: {message or exc.reason}")


def _conflict(what: str, message: str, causes: list[dict[str, Any]]) -> ConflictError:
    owned = [c for c in causes if c.get("reason") == "FieldManagerConflict"]
    if not owned:  # a precondition: the resourceVersion (if_revision) no longer current
        return ConflictError(f"{what} changed meanwhile: {message}")
    managers = sorted({m for c in owned for m in _CONFLICT_WITH.findall(c.get("message", ""))})
    fields = ", ".join(str(c.get("field", "?")).lstrip(".") for c in owned)
    return ConflictError(
        f"{what}: {fields} set by field manager {', '.join(map(repr, managers)) or '?'}; "
        "nstarx does not overwrite another manager's fields: put their value in the spec, or "
        "have them remove it"
    )


def http_error(code: int, message: str) -> NstarxError:
    """The package's error for an HTTP status, its message on one line."""
    kinds: dict[int, type[NstarxError]] = {
        400: InvalidInputError, 401: UnauthenticatedError, 403: ForbiddenError,
        404: NotFoundError, 409: ConflictError, 422: InvalidInputError,
    }  # fmt: skip
    error = kinds.get(code, UnavailableError)
    return error(" ".join(message.split()))


# -- connection ----------------------------------------------------------------------------------


def connect(k8s: Any, context: str | None, kubeconfig: str | Path | None) -> tuple[Any, str]:
    """An API client and the default namespace: from a kubeconfig, else the pod's account."""
    path = kubeconfig_path(kubeconfig)
    config = k8s.config
    if path is None:
        pod_namespace = in_cluster_namespace()
        if context is None and pod_namespace is not None:
            configuration = k8s.client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return k8s.client.ApiClient(configuration), pod_namespace
        raise UnavailableError(
            "no Kubernetes cluster configured: set KUBECONFIG (or pass kubeconfig=...), or run "
            "inside a pod with a service account"
        )
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c["name"] == context), None) if context else active
        if chosen is None:
            known = ", ".join(sorted(c["name"] for c in contexts))
            raise InvalidInputError(f"context: no context '{context}' in {path}; known: {known}")
        api_client = config.new_client_from_config(
            config_file=path, context=chosen["name"], persist_config=False
        )
    except (config.ConfigException, yaml.YAMLError) as exc:  # missing parts, or not YAML
        raise UnavailableError(f"kubeconfig {path}: {' '.join(str(exc).split())}") from None
    return api_client, chosen.get("context", {}).get("namespace") or "default"
