"""Which MLflow flavour logs a model object, and which of our runtimes serves a logged model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError, ModelLoadError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Flavor", "flavor_of", "runtime_for"]


@dataclass(frozen=True, slots=True)
class Flavor:
    """An MLflow flavour: its module and the keyword `log_model` takes the model under."""

    name: str
    module: str
    model_arg: str
    extra: tuple[tuple[str, Any], ...] = ()

    def log_kwargs(self, model: Any) -> dict[str, Any]:
        """Keyword arguments for `mlflow.<flavour>.log_model`, the model included.

        scikit-learn models are saved with skops, which refuses types outside its safe list
        (trees, for one) unless they are named as trusted. The object being registered comes
        from the caller's own process, so its types are trusted here and listed in the MLmodel;
        whoever loads the file later sees exactly which types were vouched for.
        """
        kwargs = {self.model_arg: model, **dict(self.extra)}
        if self.name == "sklearn":
            import skops.io

            trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
            if trusted:
                kwargs["skops_trusted_types"] = trusted
        return kwargs


# XGBoost and LightGBM estimators are scikit-learn estimators too: test them first.
_FLAVORS = (
    ("xgboost", Flavor("xgboost", "mlflow.xgboost", "xgb_model", (("model_format", "json"),))),
    ("lightgbm", Flavor("lightgbm", "mlflow.lightgbm", "lgb_model")),
    ("onnx", Flavor("onnx", "mlflow.onnx", "onnx_model")),
    ("sklearn", Flavor("sklearn", "mlflow.sklearn", "sk_model")),
)


def flavor_of(model: Any) -> Flavor:
    """Pick the flavour for a fitted model object from the package that defines its class.

    Raises:
        InvalidInputError: the object is not a model of a supported framework.
    """
    for cls in type(model).__mro__:
        package = cls.__module__.partition(".")[0]
        for prefix, flavor in _FLAVORS:
            if package == prefix:
                return flavor
    if callable(getattr(model, "predict", None)) and hasattr(model, "get_params"):
        return dict(_FLAVORS)["sklearn"]  # a scikit-learn compatible estimator
    raise InvalidInputError(
        f"cannot register a {type(model).__module__}.{type(model).__name__}: register a "
        "scikit-learn, XGBoost, LightGBM or ONNX model, or deploy a saved file"
    )


def runtime_for(mlmodel: dict[str, Any], folder: Path) -> tuple[str, Path, dict[str, Any]]:
    """Name the runtime, the artifact file and the runtime options for a downloaded MLflow model.

    A skops file is opened with the types its MLmodel lists as trusted: the registry that
    wrote them is the user's own, the same trust MLflow's loader gives them.

    Raises:
        ModelLoadError: the model has no flavour one of our runtimes can serve.
    """
    flavors: dict[str, Any] = mlmodel.get("flavors") or {}
    for name in ("sklearn", "lightgbm"):
        conf = flavors.get(name)
        if conf is None:
            continue
        data = str(conf.get("pickled_model") or conf.get("data") or "model.pkl")
        options: dict[str, Any] = {}
        columns = _signature_columns(mlmodel)
        if columns:
            options["input_columns"] = columns
        if conf.get("skops_trusted_types"):
            options["trusted_types"] = [str(t) for t in conf["skops_trusted_types"]]
        # LightGBM's scikit-learn API (LGBMClassifier...) is pickled or skops; a Booster is text.
        if name == "sklearn" or data.endswith((".pkl", ".skops", ".pickle", ".joblib")):
            return "sklearn", folder / data, options
        return "lightgbm", folder / data, {}
    if "xgboost" in flavors:
        return "xgboost", folder / str(flavors["xgboost"]["data"]), {}
    if "onnx" in flavors:
        return "onnx", folder / str(flavors["onnx"]["data"]), {}
    raise ModelLoadError(
        f"the MLflow model at {folder} has flavours {', '.join(flavors) or 'none'}; "
        "nstarx serves sklearn, xgboost, lightgbm and onnx ones"
    )


def _signature_columns(mlmodel: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The column inputs of the MLmodel's signature (`[{"name", "type"}]`), if it has them.

    MLflow stores the schema as a JSON string; tensor signatures and unreadable ones give None
    (the runtime then reads the model itself).
    """
    signature = mlmodel.get("signature")
    raw = signature.get("inputs") if isinstance(signature, dict) else None
    try:
        items = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    if not isinstance(items, list) or not items:
        return None
    if not all(isinstance(item, dict) and isinstance(item.get("type"), str)
               and item["type"] != "tensor" for item in items):  # fmt: skip
        return None
    return [{"name": item.get("name"), "type": item["type"]} for item in items]
