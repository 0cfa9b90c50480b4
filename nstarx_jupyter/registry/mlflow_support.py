"""MLflow at arm's length: importing it quietly, reading its errors and models, logging arguments.

What the catalog needs from MLflow beyond its client calls, kept apart from the catalog itself.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError, ModelLoadError, require
from nstarx_jupyter.registry.flavors import runtime_for

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "feature_names",
    "head",
    "infer_signature",
    "is_missing",
    "load_mlflow",
    "mlflow_runtime",
    "pinned_requirements",
]


def mlflow_runtime(folder: Path) -> tuple[str, Path, dict[str, Any]]:
    """Runtime, artifact and options for an MLflow model folder (one holding `MLmodel`)."""
    import yaml

    try:
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{folder / 'MLmodel'}: {exc}") from exc
    if not isinstance(mlmodel, dict):
        raise ModelLoadError(f"{folder / 'MLmodel'} is not an MLflow model description")
    return runtime_for(mlmodel, folder)


def load_mlflow() -> Any:
    """Import MLflow (extra `mlflow`) without its telemetry, first-import warnings and chatter."""
    # MLflow 3 reports usage to its authors unless told not to; ask before sending anything.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with warnings.catch_warnings():
        # mlflow.pyfunc warns about its own type hints when first imported: not the user's news.
        warnings.filterwarnings("ignore", ".*type hint is inferred as AnyType", UserWarning)
        mlflow = require("mlflow", "mlflow")
        require("mlflow.pyfunc", "mlflow")
    # "Creating initial MLflow database tables..." on a new store is MLflow's housekeeping, printed
    # at INFO under every first deploy; quiet it unless the user set that logger's level.
    migrations = logging.getLogger("mlflow.store.db.utils")
    if migrations.level == logging.NOTSET:
        migrations.setLevel(logging.WARNING)
    return mlflow


def is_missing(exc: BaseException) -> bool:
    """Whether MLflow said "does not exist" (and not: locked, unreachable, broken)."""
    code = str(getattr(exc, "error_code", ""))
    return code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower()


def pinned_requirements(module: Any) -> list[str]:
    """The flavour's pinned requirements, given up front.

    Otherwise MLflow infers them by loading the model again in a subprocess: 4 s of every
    registration (measured), against 0.05 s.
    """
    defaults = module.get_default_pip_requirements
    wanted = {"include_skops": True, "include_cloudpickle": False}
    accepted = inspect.signature(defaults).parameters
    return list(defaults(**{key: value for key, value in wanted.items() if key in accepted}))


def head(data: Any, rows: int = 5) -> Any:
    """The first `rows` rows of a DataFrame, array or list (None stays None)."""
    if data is None:
        return None
    if hasattr(data, "iloc"):
        return data.iloc[:rows]
    return data[:rows]


def infer_signature(mlflow: Any, model: Any, sample: Any) -> Any:
    """MLflow's signature from `sample` and the model's answer to it (None without a sample)."""
    if sample is None:
        return None
    try:
        return mlflow.models.infer_signature(sample, model.predict(sample))
    except Exception as exc:
        raise InvalidInputError(f"cannot infer a signature from the example: {exc}") from exc


def feature_names(model: Any, data: Any) -> list[str] | None:
    """Column names of the data, else the names the model was fitted with."""
    if hasattr(data, "columns"):
        return [str(c) for c in data.columns]
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None
