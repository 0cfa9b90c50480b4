"""SHAP values of one model: the explainer that fits it, built once, and bounded explanations.

`ModelExplainer.build` picks the explainer by what the model is: a linear model (`coef_` and
`intercept_`, as scikit-learn's) gets `shap.LinearExplainer` over a background sample (exact,
milliseconds); a tree model or ensemble that `shap.TreeExplainer` accepts (scikit-learn trees
and forests, XGBoost and LightGBM boosters) gets it with the trees' own cover as background
(exact, no sample needed); anything else gets `shap.KernelExplainer` over its predict function,
with a k-means summary of at most `KERNEL_BACKGROUND` background rows and `KERNEL_SAMPLES`
coalitions per row (an estimate, and the slow one: its cost is rows x samples x background
predictions). `shap` is imported here only, when a model is first explained.

Every explanation is additive: `base[k] + sum(values[row, :, k])` is the model's output `k` in
the explained space (`probability` for tree classifiers and kernel over `predict_proba`,
`log-odds` for linear classifiers and boosters' margins, `raw` for regressors).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nstarx_jupyter.errors import InvalidInputError, require

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "KERNEL_BACKGROUND",
    "KERNEL_SAMPLES",
    "LINEAR_BACKGROUND",
    "Explanation",
    "ModelExplainer",
    "mean_abs",
]

KERNEL_BACKGROUND = 20
"""Background rows of the kernel explainer (a k-means summary of the background sample)."""
KERNEL_SAMPLES = 256
"""Coalitions the kernel explainer evaluates per row (all of them up to 8 features)."""
LINEAR_BACKGROUND = 10_000
"""Background rows of the linear explainer: all of a reference (only their means are used)."""


@dataclass(slots=True)
class Explanation:
    """SHAP values of some rows: `values[row, feature, output]`, `base[output]`."""

    values: np.ndarray[Any, Any]
    base: np.ndarray[Any, Any]
    outputs: list[str]
    """The label of each explained output (a class, or `output`)."""
    explainer: str
    space: str
    seconds: float

    def picked(self, label: str | None = None) -> list[int]:
        """The output explained for each row: `label`'s, else the largest (the predicted class)."""
        if label is not None:
            if label not in self.outputs:
                raise InvalidInputError(f"class: '{label}' is not one of "
                                        f"{', '.join(self.outputs)}")  # fmt: skip
            return [self.outputs.index(label)] * self.values.shape[0]
        if len(self.outputs) == 1:
            return [0] * self.values.shape[0]
        totals = self.base[None, :] + self.values.sum(axis=1)
        return [int(k) for k in totals.argmax(axis=1)]


class ModelExplainer:
    """One model's explainer (built once per loaded model version; see the module docstring)."""

    def __init__(
        self,
        kind: str,
        run: Callable[[np.ndarray[Any, Any]], tuple[np.ndarray[Any, Any], Any]],
        outputs: Callable[[int], list[str]],
        space: str,
        features: int,
    ) -> None:
        self.kind = kind
        """`tree`, `linear` or `kernel`."""
        self._run = run
        self._outputs = outputs
        self.space = space
        self.features = features

    @classmethod
    def build(
        cls,
        model: Any,
        predict: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]],
        *,
        features: int,
        background: np.ndarray[Any, Any] | None,
        classes: Sequence[str] | None = None,
        probabilities: bool = False,
    ) -> ModelExplainer:
        """The explainer that fits `model` (None: only `predict` is known, so kernel).

        Args:
            model: the fitted model object (a scikit-learn estimator, a booster), or None.
            predict: rows -> the model's numeric output (probabilities for a classifier when
                `probabilities`); what the kernel explainer calls.
            features: columns of a row.
            background: rows standing for "feature unknown" (the drift reference sample);
                needed by the linear and kernel explainers, not by the tree one.
            classes: the classifier's labels, in the order of its outputs.
            probabilities: whether `predict` answers one probability per class.

        Raises:
            InvalidInputError: no background for an explainer that needs one.
        """
        shap = require("shap", "explain")
        labels = [str(c) for c in classes] if classes is not None else None

        def outputs(count: int) -> list[str]:
            if labels is not None and count == len(labels):
                return labels
            if labels is not None and count == 1 and len(labels) == 2:
                return [labels[1]]  # a binary model's one output: the second class
            return ["output"] if count == 1 else [f"output_{k}" for k in range(count)]

        if model is not None and _linear(model):
            bg = _need(background, "linear")[:LINEAR_BACKGROUND]
            masker = shap.maskers.Independent(bg, max_samples=len(bg))  # every row, not 100
            linear = shap.LinearExplainer(model, masker)
            space = "log-odds" if labels is not None else "raw"
            return cls("linear", lambda x: (linear.shap_values(x), linear.expected_value),
                       outputs, space, features)  # fmt: skip
        tree = _tree(shap, model) if model is not None else None
        if tree is not None:
            proba = labels is not None and type(model).__module__.startswith("sklearn.")
            space = "probability" if proba else ("log-odds" if labels is not None else "raw")

            def run_tree(x: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], Any]:
                return tree.shap_values(x, check_additivity=False), tree.expected_value

            return cls("tree", run_tree, outputs, space, features)
        bg = _need(background, "kernel")
        summary = shap.kmeans(bg, KERNEL_BACKGROUND) if len(bg) > KERNEL_BACKGROUND else bg
        kernel = shap.KernelExplainer(predict, summary)

        def run_kernel(x: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], Any]:
            values = kernel.shap_values(x, nsamples=KERNEL_SAMPLES, silent=True)
            return values, kernel.expected_value

        return cls("kernel", run_kernel, outputs,
                   "probability" if probabilities else "raw", features)  # fmt: skip

    def explain(self, rows: np.ndarray[Any, Any]) -> Explanation:
        """SHAP values of `rows` (2-D, `features` columns)."""
        if rows.ndim != 2 or rows.shape[1] != self.features:
            raise InvalidInputError(f"rows: {self.features} values each")
        started = time.perf_counter()
        raw_values, raw_base = self._run(rows)
        values, base = _normalised(raw_values, raw_base, rows.shape)
        return Explanation(values, base, self._outputs(values.shape[2]), self.kind, self.space,
                           time.perf_counter() - started)  # fmt: skip


def _linear(model: Any) -> bool:
    """A linear model shap's LinearExplainer reads (coefficients and an intercept)."""
    return hasattr(model, "coef_") and hasattr(model, "intercept_") and not hasattr(model, "steps")


def _tree(shap: Any, model: Any) -> Any:
    """`shap.TreeExplainer(model)`, or None when shap does not know the model as trees."""
    try:
        return shap.TreeExplainer(model)
    except Exception:  # noqa: BLE001 - shap says "not supported" in many ways: not a tree model
        return None


def _need(background: np.ndarray[Any, Any] | None, kind: str) -> np.ndarray[Any, Any]:
    if background is None or not len(background):
        raise InvalidInputError(
            f"the {kind} explainer needs background rows: give the deployment a reference "
            "(deploy(..., reference_data=X) or set_reference(X)) or send it traffic first"
        )
    return background


def _normalised(
    values: Any, base: Any, shape: tuple[int, ...]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """SHAP's answers (an array, a list per output, 2-D or 3-D) as `(rows, features, outputs)`."""
    if isinstance(values, list):
        values = np.stack([np.asarray(v, dtype=float) for v in values], axis=-1)
    array = np.asarray(values, dtype=float)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[:2] != shape:
        raise InvalidInputError(f"the explainer answered values of shape {array.shape}")
    bases = np.atleast_1d(np.asarray(base, dtype=float)).reshape(-1)
    if bases.size != array.shape[2]:
        bases = np.resize(bases, array.shape[2])
    return array, bases


def mean_abs(explanation: Explanation, label: str | None = None) -> np.ndarray[Any, Any]:
    """Each feature's mean |SHAP value| over the rows (of each row's explained output)."""
    picked = explanation.picked(label)
    rows = np.arange(explanation.values.shape[0])
    chosen = explanation.values[rows, :, picked]
    return np.abs(chosen).mean(axis=0)  # type: ignore[no-any-return]
