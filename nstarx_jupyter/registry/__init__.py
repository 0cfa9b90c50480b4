"""The model registry: a catalog of versioned models on MLflow (SQLite under $NSTARX_HOME)."""

from __future__ import annotations

from nstarx_jupyter.registry.catalog import LocalModel, ModelVersion, Registry, parse_model_uri
from nstarx_jupyter.registry.mlflow_support import mlflow_runtime

__all__ = ["LocalModel", "ModelVersion", "Registry", "mlflow_runtime", "parse_model_uri"]
