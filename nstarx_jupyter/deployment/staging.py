"""Staged copies of fitted models: what a deployment serves while the registry takes them."""

from __future__ import annotations

import io
import json
import logging
import shutil
import time
import uuid
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import atomic_write, nstarx_home
from nstarx_jupyter.registry.flavors import flavor_of

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["remove_staged", "stage_model"]

log = logging.getLogger(__name__)


def stage_model(model: Any, name: str) -> tuple[Path, bool]:
    """Save a fitted model where the server can read it: serving starts before MLflow is done.

    Returns the file or folder and whether it must be served as `trusted`. A scikit-learn model
    is staged with skops in a folder whose `model-settings.json` lists the types skops does not
    know (the object comes from this process, as `Registry.register` vouches for it), so it
    loads without running code; ONNX is data. Only what skops cannot save (and XGBoost or
    LightGBM estimators, which the registry pickles too) is staged with joblib, as trusted: the
    caller's own object, in the owner's home, sent with the admin token.
    """
    flavor = flavor_of(model)  # refuses what the registry could not take either
    folder = nstarx_home() / "staging" / name
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    if flavor.name == "onnx":
        return atomic_write(folder / f"{stem}.onnx", model.SerializeToString()), False
    if flavor.name == "sklearn":
        staged = _stage_skops(model, folder / stem)
        if staged is not None:
            return staged, False
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return atomic_write(folder / f"{stem}.joblib", buffer.getvalue()), True


def _stage_skops(model: Any, target: Path) -> Path | None:
    """`target/model.skops` and the types it holds in `model-settings.json`; None if skops can't."""
    import skops.io

    try:
        data = skops.io.dumps(model)
        types = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - skops raises what the object's own state raises
        log.info("skops cannot save %s (%s): staging it with joblib", type(model).__name__, exc)
        return None
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / "model.skops", data)
    settings = {"options": {"trusted_types": types}} if types else {}
    atomic_write(target / "model-settings.json", json.dumps(settings))
    return target


def remove_staged(staged: Path) -> None:
    """Delete a staged file or folder."""
    if staged.is_dir():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)
