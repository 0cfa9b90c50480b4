"""scikit-learn runtime: joblib, pickle and skops artifacts of any estimator or pipeline."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nstarx_jupyter.errors import ForbiddenError, InvalidInputError, ModelLoadError, require
from nstarx_jupyter.protocol.datatypes import datatype_of
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors, find_artifact
from nstarx_jupyter.runtimes.sklearn_inputs import SklearnInputs, infer_inputs

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["SklearnRuntime"]

SUFFIXES = (".joblib", ".pkl", ".pickle", ".skops")
_DIR_NAMES = tuple(f"model{suffix}" for suffix in SUFFIXES)


class SklearnRuntime(Runtime):
    """Serves a fitted scikit-learn estimator (or anything with its `predict` API)."""

    runtime_name: ClassVar[str] = "sklearn"
    model: Any = None
    _inputs: SklearnInputs | None = None

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """Say whether `path` is a joblib/pickle/skops file or a folder holding `model.<suffix>`."""
        return _artifact(path) is not None

    @classmethod
    def runs_code_on_load(cls, path: Path) -> bool:
        """Pickle and joblib files run code when they load; skops files do not."""
        artifact = _artifact(path)
        return artifact is not None and artifact.suffix != ".skops"

    @classmethod
    def check_artifact(cls, path: Path, options: Mapping[str, Any]) -> None:
        """A skops file holds only types skops trusts or `options["trusted_types"]` lists."""
        artifact = _artifact(path)
        if artifact is not None and artifact.suffix == ".skops":
            try:
                _check_skops(artifact, options.get("trusted_types"))
            except ForbiddenError:
                raise
            except Exception as exc:  # skops reads a zip: a broken or disguised file
                raise ModelLoadError(f"cannot read {artifact}: {exc}") from exc

    def load(self) -> None:
        """Load the estimator; skops files are checked against skops' list of trusted types."""
        artifact = _artifact(self.path) if self.path is not None else None
        if artifact is None:
            raise ModelLoadError(f"no scikit-learn artifact ({', '.join(SUFFIXES)}) at {self.path}")
        try:
            self.model = _read(artifact, trusted=self.options.get("trusted_types"))
        except (ModelLoadError, ForbiddenError):
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load {artifact}: {exc}") from exc
        if not callable(getattr(self.model, "predict", None)):
            raise ModelLoadError(f"{artifact} holds a {type(self.model).__name__}, not a model")
        # A model fitted on a DataFrame warns on every array; the records codec checks names.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        self._inputs = infer_inputs(self.model, self.options)
        self.ready = True

    @classmethod
    def of(cls, model: Any, options: Mapping[str, Any] | None = None) -> SklearnRuntime:
        """A loaded runtime over a fitted model in this process, answering as a served one would.

        `deploy(optimize=True)` compares the model's ONNX conversion with it, without writing
        the model to a file first.
        """
        if not callable(getattr(model, "predict", None)):
            raise InvalidInputError(f"a {type(model).__name__} is not a model (no predict)")
        runtime = cls(None, options=options)
        runtime.model = model
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        runtime._inputs = infer_inputs(model, runtime.options)
        runtime.ready = True
        return runtime

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Run `predict` (and `predict_proba` when asked for) on the model's input.

        A 2-D array for numeric models; a DataFrame of the columns for models with string
        columns; a list of strings for a text pipeline.
        """
        x = self._model_input(inputs)
        wanted = outputs or ("predict",)
        result: Tensors = {}
        try:
            for name in wanted:
                if name == "predict":
                    result[name] = np.asarray(self.model.predict(x))
                elif name == "predict_proba" and hasattr(self.model, "predict_proba"):
                    result[name] = np.asarray(self.model.predict_proba(x))
                else:
                    raise InvalidInputError(f"unknown output '{name}'")
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"the model rejected the input: {exc}") from exc
        return result

    def _model_input(self, inputs: Tensors) -> Any:
        if self._inputs is None or self._inputs.kind == "matrix":
            (x,) = inputs.values()
            return x
        if self._inputs.kind == "text":
            (x,) = inputs.values()
            return np.asarray(_texts(x.reshape(-1)), dtype=object)
        pandas = require("pandas", "mlflow")  # the model was fitted on a DataFrame
        return pandas.DataFrame({
            column.name: _times(pandas, column.name, inputs[column.name]) if column.datetime
            else _column(inputs[column.name]) for column in self._inputs.columns})  # fmt: skip

    def rows_independent(self) -> bool:
        """Whether every estimator in the model is from a library that predicts row by row.

        Those are scikit-learn, XGBoost and LightGBM; a user's own step or a FunctionTransformer
        may look across rows, so such models are not batched by default.
        """
        return all(_row_wise(step) for step in _estimators(self.model))

    def metadata(self) -> ModelSignature:
        """Derive inputs from the model (see `sklearn_inputs`), outputs from `classes_`."""
        model = self.model
        inputs = self._inputs or infer_inputs(model, self.options)
        labels = getattr(model, "classes_", None)
        outputs = [_predict_spec(model, labels)]
        if labels is not None and hasattr(model, "predict_proba"):
            outputs.append(TensorSpec("predict_proba", "FP64", (-1, len(labels))))
        return ModelSignature(
            platform="sklearn",
            inputs=_input_specs(model, inputs),
            outputs=tuple(outputs),
            default_outputs=("predict",),
            feature_names=inputs.names() if inputs.kind != "text" and inputs.columns else None,
            class_labels=tuple(np.asarray(labels).tolist()) if labels is not None else None,
        )


def _input_specs(model: Any, inputs: SklearnInputs) -> tuple[TensorSpec, ...]:
    if inputs.kind != "matrix":
        return tuple(TensorSpec(column.name, column.datatype, (-1,)) for column in inputs.columns)
    n_features = int(getattr(model, "n_features_in_", -1))
    if inputs.columns and n_features == -1:
        n_features = len(inputs.columns)
    return (TensorSpec("input-0", "FP64", (-1, n_features)),)


def _texts(values: np.ndarray[Any, Any]) -> list[Any]:
    """Strings for the model: BYTES arrive as `bytes` from binary and gRPC requests."""
    try:
        return [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"a BYTES input is not UTF-8 text: {exc}") from None


def _times(pandas: Any, name: str, array: np.ndarray[Any, Any]) -> Any:
    """ISO-8601 strings as naive UTC `datetime64` (a zone-less string is taken as UTC)."""
    try:
        parsed = pandas.to_datetime(_texts(array.reshape(-1)), utc=True, format="ISO8601")
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"input '{name}': not an ISO-8601 date and time ({exc})") from None
    return parsed.tz_convert(None)


def _column(array: np.ndarray[Any, Any]) -> Any:
    flat = array.reshape(-1)
    return np.asarray(_texts(flat), dtype=object) if flat.dtype.kind in "OSU" else flat


ROW_WISE_LIBRARIES = ("sklearn.", "xgboost.", "lightgbm.")
"""Libraries whose fitted estimators transform and predict each row on its own."""


def _row_wise(estimator: Any) -> bool:
    if type(estimator).__name__ == "FunctionTransformer":  # runs arbitrary user code
        return False
    return type(estimator).__module__.startswith(ROW_WISE_LIBRARIES)


def _estimators(model: Any) -> list[Any]:
    """The model and every estimator nested in it (pipeline steps, ensemble members, ...)."""
    found = [model]
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        try:
            params = get_params(deep=True)
        except Exception:  # noqa: BLE001 - an odd estimator: judge it by its own class only
            return found
        found += [value for value in params.values() if callable(getattr(value, "fit", None))]
        for value in params.values():  # ColumnTransformer and friends hold (name, step, cols)
            if isinstance(value, list):
                found += [part for item in value if isinstance(item, tuple) for part in item
                          if callable(getattr(part, "fit", None))]  # fmt: skip
    return found


def _artifact(path: Path | None) -> Path | None:
    return find_artifact(path, _DIR_NAMES, lambda file: file.suffix in SUFFIXES)


def _read(artifact: Path, trusted: Any) -> Any:
    if artifact.suffix == ".skops":
        sio = _check_skops(artifact, trusted)
        return sio.load(artifact, trusted=list(trusted or ()) or None)
    joblib = require("joblib", "sklearn")
    return joblib.load(artifact)


def _check_skops(artifact: Path, trusted: Any) -> Any:
    """Return `skops.io` once `artifact` is known to hold only trusted types."""
    sio = require("skops.io", "sklearn")
    untrusted = [t for t in sio.get_untrusted_types(file=artifact) if t not in (trusted or ())]
    if untrusted:
        raise ForbiddenError(
            f"{artifact} contains types skops does not trust: {', '.join(untrusted)}; "
            "pass them in the model's trusted_types option if you trust this file"
        )
    return sio


def _predict_spec(model: Any, labels: Any) -> TensorSpec:
    if labels is not None:
        return TensorSpec("predict", datatype_of(np.asarray(labels)), (-1,))
    n_outputs = int(getattr(model, "n_outputs_", 1))
    shape = (-1,) if n_outputs == 1 else (-1, n_outputs)
    return TensorSpec("predict", "FP64", shape)
