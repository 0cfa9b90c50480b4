"""XGBoost runtime: models saved by `Booster.save_model` as JSON or UBJSON, served by `Booster`.

Classifiers (`binary:*` and `multi:*` objectives) answer `predict` (the class index, INT64) and,
unless the objective is `binary:hinge`, `predict_proba` (one column per class, `[1 - p, p]` for a
binary model); every other objective answers `predict` as XGBoost produces it (FP32). A model
trained with early stopping predicts with the trees up to its best iteration, as XGBoost's
scikit-learn estimators do.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nstarx_jupyter.errors import InvalidInputError, ModelLoadError, require
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["XGBoostRuntime"]

_DIR_NAMES = ("model.json", "model.ubj", "model.bst")
_HEAD_BYTES = 256
_PROBA_OBJECTIVES = ("binary:logistic", "binary:logitraw", "multi:softprob", "multi:softmax")


class XGBoostRuntime(Runtime):
    """Serves an XGBoost `Booster` with `inplace_predict` (no DMatrix per request)."""

    runtime_name: ClassVar[str] = "xgboost"
    booster: Any = None
    _objective = ""
    _n_classes = 0
    _n_targets = 1
    _iterations = (0, 0)

    def rows_independent(self) -> bool:
        """A booster scores each row on its own: requests may share a predict call."""
        return True

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """Say whether `path` is an XGBoost JSON/UBJSON model or a folder holding `model.<ext>`."""
        return _artifact(path) is not None

    def load(self) -> None:
        """Load the booster and read its objective and class count from its saved config.

        The booster predicts on `options["nthread"]` threads (1 by default: a server shares cores).
        """
        artifact = _artifact(self.path) if self.path is not None else None
        if artifact is None:
            raise ModelLoadError(f"no XGBoost model (.json, .ubj, {_DIR_NAMES}) at {self.path}")
        xgb = require("xgboost", "xgboost")
        try:
            booster = xgb.Booster()
            booster.load_model(artifact)
            booster.set_param({"nthread": int(self.options.get("nthread", 1))})
            learner = json.loads(booster.save_config())["learner"]
        except (ValueError, OSError, KeyError) as exc:  # XGBoostError is a ValueError
            raise ModelLoadError(f"cannot load {artifact}: {_first_line(exc)}") from exc
        params = learner.get("learner_model_param", {})
        self._objective = str(learner.get("objective", {}).get("name", ""))
        self._n_targets = max(int(params.get("num_target", 1)), 1)
        self._iterations = _iteration_range(booster, learner)
        if self._objective.startswith("binary:"):
            self._n_classes = 2
        elif self._objective.startswith("multi:"):
            self._n_classes = int(params.get("num_class", 0))
        self.booster = booster
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Run `inplace_predict` once and derive every requested output from it."""
        (x,) = inputs.values()
        wanted = tuple(outputs or ("predict",))
        known = self._output_names()
        self.check_outputs(wanted, known)
        try:
            if not self._n_classes:
                return {"predict": self._inplace_predict(x)}
            if self._objective == "binary:hinge":
                return {"predict": self._inplace_predict(x).astype(np.int64)}
            proba = self._proba(x)
        except (ValueError, TypeError) as exc:  # XGBoostError is a ValueError
            raise InvalidInputError(f"the model rejected the input: {_first_line(exc)}") from exc
        result: Tensors = {"predict": np.argmax(proba, axis=1).astype(np.int64)}
        result["predict_proba"] = proba
        return {name: result[name] for name in wanted}

    def metadata(self) -> ModelSignature:
        """Derive the input width from `num_features()` and the outputs from the objective."""
        booster = self.booster
        names = self.options.get("feature_names") or booster.feature_names
        labels = tuple(range(self._n_classes)) if self._n_classes else None
        if self._n_classes:
            outputs = [TensorSpec("predict", "INT64", (-1,))]
            if self._objective in _PROBA_OBJECTIVES:
                outputs.append(TensorSpec("predict_proba", "FP32", (-1, self._n_classes)))
        else:
            shape = (-1,) if self._n_targets == 1 else (-1, self._n_targets)
            outputs = [TensorSpec("predict", "FP32", shape)]
        return ModelSignature(
            platform="xgboost",
            inputs=(TensorSpec("input-0", "FP32", (-1, int(booster.num_features()))),),
            outputs=tuple(outputs),
            default_outputs=("predict",),
            feature_names=tuple(names) if names else None,
            class_labels=labels,
            extra={"objective": self._objective},
        )

    def _output_names(self) -> tuple[str, ...]:
        if self._n_classes and self._objective in _PROBA_OBJECTIVES:
            return ("predict", "predict_proba")
        return ("predict",)

    def _inplace_predict(
        self, x: np.ndarray[Any, Any], kind: str = "value"
    ) -> np.ndarray[Any, Any]:
        return np.asarray(
            self.booster.inplace_predict(x, predict_type=kind, iteration_range=self._iterations)
        )

    def _proba(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self._objective in ("binary:logistic", "multi:softprob"):
            values = self._inplace_predict(x)
        else:  # logitraw and softmax predict margins or indices: take the margins
            margin = self._inplace_predict(x, "margin")
            if self._objective == "binary:logitraw":
                values = 1.0 / (1.0 + np.exp(-margin))
            else:
                shifted = np.exp(margin - margin.max(axis=1, keepdims=True))
                values = shifted / shifted.sum(axis=1, keepdims=True)
        if self._n_classes == 2 and values.ndim == 1:
            values = np.column_stack((1.0 - values, values))
        return values.astype(np.float32, copy=False)


def _iteration_range(booster: Any, learner: dict[str, Any]) -> tuple[int, int]:
    """Stop at the best iteration of early stopping, as XGBoost's scikit-learn API does."""
    best = booster.attr("best_iteration")
    if best is None or learner.get("gradient_booster", {}).get("name") == "gblinear":
        return (0, 0)
    return (0, int(best) + 1)


def _artifact(path: Path | None) -> Path | None:
    if path is None:
        return None
    if path.is_file():
        return path if _is_xgboost_file(path) else None
    if path.is_dir():
        found = [path / name for name in _DIR_NAMES if (path / name).is_file()]
        if len(found) == 1 and (found[0].suffix == ".bst" or _is_xgboost_file(found[0])):
            return found[0]
    return None


def _is_xgboost_file(path: Path) -> bool:
    """Check the head of the file: XGBoost writes the `learner` key first in JSON and UBJSON."""
    if path.suffix not in (".json", ".ubj"):
        return False
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
    except OSError:
        return False
    if path.suffix == ".ubj":
        return head.startswith(b"{") and b"learner" in head[:32]
    compact = re.sub(rb"\s+", b"", head)
    return compact.startswith(b'{"learner":') or (
        compact.startswith(b'{"version":[') and b'"learner":' in compact
    )


def _first_line(exc: BaseException) -> str:
    """XGBoost appends a native stack trace to its messages; the first line is the message."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
