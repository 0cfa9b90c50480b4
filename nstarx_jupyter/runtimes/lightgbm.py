"""LightGBM runtime: text models written by `Booster.save_model`, served by `lightgbm.Booster`.

Classifiers (`binary`, `multiclass`, `multiclassova` objectives) answer `predict` (the class index,
INT64) and `predict_proba` (one column per class, `[1 - p, p]` for a binary model); every other
objective answers `predict` as LightGBM produces it (FP64).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nstarx_jupyter.errors import InvalidInputError, ModelLoadError, require
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.runtimes.base import Runtime, Tensors, find_artifact

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["LightGBMRuntime"]

SUFFIXES = (".txt", ".lgb", ".model")
_DIR_NAMES = tuple(f"model{suffix}" for suffix in SUFFIXES)
_HEAD_BYTES = 64
_CLASSIFIERS = ("binary", "multiclass", "multiclassova")
_DEFAULT_NAME = "Column_"


class LightGBMRuntime(Runtime):
    """Serves a LightGBM `Booster` loaded from its text model file."""

    runtime_name: ClassVar[str] = "lightgbm"
    booster: Any = None
    _objective = ""
    _n_classes = 0

    def rows_independent(self) -> bool:
        """A booster scores each row on its own: requests may share a predict call."""
        return True

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """Say whether `path` is a LightGBM text model (or a folder holding `model.<suffix>`).

        Any file whose header is LightGBM's (`tree`, then `version=v…`) is claimed, whatever its
        name; the suffixes only pick the file inside a folder.
        """
        return _artifact(path) is not None

    def load(self) -> None:
        """Load the booster and read its objective from the model's saved parameters."""
        artifact = _artifact(self.path) if self.path is not None else None
        if artifact is None:
            raise ModelLoadError(f"no LightGBM text model at {self.path}")
        lgb = require("lightgbm", "lightgbm")
        try:
            booster = lgb.Booster(model_file=str(artifact))
        except (lgb.basic.LightGBMError, ValueError, OSError) as exc:
            raise ModelLoadError(f"cannot load {artifact}: {exc}") from exc
        # The objective may carry its settings ("binary sigmoid:1"); the first word names it.
        self._objective = next(iter(str(booster.params.get("objective", "")).split()), "")
        if self._objective == "binary":
            self._n_classes = 2
        elif self._objective in _CLASSIFIERS:
            self._n_classes = int(booster.num_model_per_iteration())
        self.booster = booster
        self.ready = True

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Run `Booster.predict` once and derive every requested output from it.

        LightGBM predicts on `options["num_threads"]` threads (1 by default: a server shares cores).
        """
        (x,) = inputs.values()
        wanted = tuple(outputs or ("predict",))
        known = ("predict", "predict_proba") if self._n_classes else ("predict",)
        self.check_outputs(wanted, known)
        lgb = require("lightgbm", "lightgbm")
        threads = int(self.options.get("num_threads", 1))
        try:
            values = np.asarray(self.booster.predict(x, num_threads=threads))
        except (lgb.basic.LightGBMError, ValueError, TypeError) as exc:
            raise InvalidInputError(f"the model rejected the input: {exc}") from exc
        if not self._n_classes:
            return {"predict": values}
        if values.ndim == 1:
            values = np.column_stack((1.0 - values, values))
        result: Tensors = {"predict": np.argmax(values, axis=1).astype(np.int64)}
        result["predict_proba"] = values
        return {name: result[name] for name in wanted}

    def metadata(self) -> ModelSignature:
        """Derive the input width from `num_feature()` and the outputs from the objective."""
        booster = self.booster
        names = self.options.get("feature_names") or _feature_names(booster)
        if self._n_classes:
            outputs: tuple[TensorSpec, ...] = (
                TensorSpec("predict", "INT64", (-1,)),
                TensorSpec("predict_proba", "FP64", (-1, self._n_classes)),
            )
        else:
            n_models = int(booster.num_model_per_iteration())
            shape = (-1,) if n_models == 1 else (-1, n_models)
            outputs = (TensorSpec("predict", "FP64", shape),)
        return ModelSignature(
            platform="lightgbm",
            inputs=(TensorSpec("input-0", "FP64", (-1, int(booster.num_feature()))),),
            outputs=outputs,
            default_outputs=("predict",),
            feature_names=tuple(names) if names else None,
            class_labels=tuple(range(self._n_classes)) if self._n_classes else None,
            extra={"objective": self._objective},
        )


def _feature_names(booster: Any) -> list[str] | None:
    names = [str(name) for name in booster.feature_name()]
    defaults = [f"{_DEFAULT_NAME}{i}" for i in range(len(names))]
    return None if names == defaults else names


def _artifact(path: Path | None) -> Path | None:
    return find_artifact(path, _DIR_NAMES, _is_lightgbm_file)


def _is_lightgbm_file(path: Path) -> bool:
    """LightGBM text models start with a `tree` line followed by `version=v<N>`."""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
    except OSError:
        return False
    lines = head.splitlines()
    return len(lines) > 1 and lines[0].strip() == b"tree" and b"version=v" in head
