"""The model registry: a catalog of versioned models on MLflow (SQLite under $NSTARX_HOME)."""

from __future__ import annotations

from nstarx_jupyter.registry.catalog import (
    LocalModel,
    ModelVersion,
    Registry,
    mlflow_runtime,
    parse_model_uri,
)

__all__ = ["LocalModel", "ModelVersion", "Registry", "mlflow_runtime", "parse_model_uri"]
