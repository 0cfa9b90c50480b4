"""Integration fixtures: the real Kubernetes API server of tests/support/kube.py and the
S3-compatible server of tests/support/s3.py."""

from __future__ import annotations

from tests.support.kube import kube_cluster, kube_namespace
from tests.support.s3 import s3_server

__all__ = ["kube_cluster", "kube_namespace", "s3_server"]
