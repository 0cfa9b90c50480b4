"""nstarx_jupyter: Jupyter-first model serving with a local KServe-compatible server."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AnalysisPolicy",
    "AsyncInferenceClient",
    "Component",
    "ComponentConfig",
    "Deployment",
    "DeploymentSpec",
    "FlowEditor",
    "InferenceClient",
    "MissingExtraError",
    "ModelSettings",
    "ModelVersion",
    "NstarxError",
    "Pipeline",
    "PipelineSpec",
    "Registry",
    "Runtime",
    "__version__",
    "access_rules",
    "audit_log",
    "create_key",
    "deploy",
    "list_keys",
    "register_component",
    "revoke_key",
    "rotate_key",
    "set_access",
]

if TYPE_CHECKING:
    from nstarx_jupyter.client import AsyncInferenceClient, InferenceClient
    from nstarx_jupyter.deployment import DeploymentSpec
    from nstarx_jupyter.errors import MissingExtraError, NstarxError
    from nstarx_jupyter.notebook.analysis import AnalysisPolicy
    from nstarx_jupyter.notebook.api import Deployment, deploy
    from nstarx_jupyter.notebook.flow import FlowEditor
    from nstarx_jupyter.notebook.pipeline import Pipeline
    from nstarx_jupyter.notebook.security import (
        access_rules,
        audit_log,
        create_key,
        list_keys,
        revoke_key,
        rotate_key,
        set_access,
    )
    from nstarx_jupyter.pipelines import (
        Component,
        ComponentConfig,
        PipelineSpec,
        register_component,
    )
    from nstarx_jupyter.registry import ModelVersion, Registry
    from nstarx_jupyter.runtimes.base import Runtime
    from nstarx_jupyter.serving.settings import ModelSettings

_LAZY = {
    "MissingExtraError": "nstarx_jupyter.errors",
    "NstarxError": "nstarx_jupyter.errors",
    "Runtime": "nstarx_jupyter.runtimes.base",
    "ModelSettings": "nstarx_jupyter.serving.settings",
    "Registry": "nstarx_jupyter.registry",
    "InferenceClient": "nstarx_jupyter.client",
    "AsyncInferenceClient": "nstarx_jupyter.client",
    "DeploymentSpec": "nstarx_jupyter.deployment",
    "Deployment": "nstarx_jupyter.notebook.api",
    "deploy": "nstarx_jupyter.notebook.api",
    "ModelVersion": "nstarx_jupyter.registry",
    "AnalysisPolicy": "nstarx_jupyter.notebook.analysis",
    "Pipeline": "nstarx_jupyter.notebook.pipeline",
    "FlowEditor": "nstarx_jupyter.notebook.flow",
    "PipelineSpec": "nstarx_jupyter.pipelines",
    "Component": "nstarx_jupyter.pipelines",
    "ComponentConfig": "nstarx_jupyter.pipelines",
    "register_component": "nstarx_jupyter.pipelines",
    "access_rules": "nstarx_jupyter.notebook.security",
    "audit_log": "nstarx_jupyter.notebook.security",
    "create_key": "nstarx_jupyter.notebook.security",
    "list_keys": "nstarx_jupyter.notebook.security",
    "revoke_key": "nstarx_jupyter.notebook.security",
    "rotate_key": "nstarx_jupyter.notebook.security",
    "set_access": "nstarx_jupyter.notebook.security",
}


def __getattr__(name: str) -> Any:
    """Import public names on first use so `import nstarx_jupyter` stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nstarx_jupyter' has no attribute {name!r}")

    return getattr(importlib.import_module(module), name)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext nstarx_jupyter`: register `%%deploy`, `%predict` and `%nstarx`."""
    importlib.import_module("nstarx_jupyter.notebook.magics").register(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt extension (the wheel also installs it in share/)."""
    return [{"src": "labextension", "dest": "nstarx-jupyter"}]


# The server extension is `nstarx_jupyter.labapi` (its own `_jupyter_server_extension_points`,
# enabled by jupyter-config/server-config/nstarx_jupyter.json), not this package: naming it here
# would make every module that imports `nstarx_jupyter` depend on the top layer.
