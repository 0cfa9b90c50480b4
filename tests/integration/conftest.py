"""Integration fixtures: the real Kubernetes API server of tests/support/kube.py."""

from __future__ import annotations

from tests.support.kube import kube_cluster, kube_namespace

__all__ = ["kube_cluster", "kube_namespace"]
