"""Deployments: the spec, its KServe manifests, and (later) the local and KServe backends."""

from __future__ import annotations

from nstarx_jupyter.deployment.spec import Batching, DeploymentSpec, Resources

__all__ = ["Batching", "DeploymentSpec", "Resources"]
