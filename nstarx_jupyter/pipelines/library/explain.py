"""Feature contributions: the `explain` (linear) and `explain_tree` post-processors.

A linear model's score is `intercept + sum(coef * x)`; measured from a baseline (the features'
means), each feature contributes `coef * (x - baseline)`, and the contributions add up to the
score minus the baseline's score. A tree's score is the value of the leaf a record reaches; each
split on the way moves it from the parent's value to the child's, and that move is credited to
the split's feature (Saabas' method), so the contributions add up to the score minus the root's
value. The components never see the model: `linear_explainer_config` and
`tree_explainer_config` read it once, so the pipeline stays plain JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    Port,
    register_component,
)
from nstarx_jupyter.pipelines.library._fields import number, row_copies

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ["ExplainConfig", "LinearExplainer", "RankedContributions", "TreeExplainConfig",
           "TreeExplainer", "TreeNodes", "linear_explainer_config", "ranked",
           "tree_explainer_config"]  # fmt: skip


class RankedContributions(ComponentConfig):
    """What both explainers write: the contributions, largest first, into one field."""

    top_k: int = Field(
        default=0, ge=0, description="Keep the k largest contributions; 0 keeps them all."
    )
    output: str = Field(
        default="contributions",
        description="The field that receives {feature: contribution}, largest first.",
    )


class ExplainConfig(RankedContributions):
    """Config of `explain` (see `linear_explainer_config` to fill it from a fitted model)."""

    coefficients: dict[str, float] = Field(
        description="The linear model's coefficient per feature (log-odds for a classifier)."
    )
    intercept: float = Field(default=0.0, description="The linear model's intercept.")
    baseline: dict[str, float] = Field(
        default_factory=dict,
        description="Each feature's reference value (its mean); a feature without one uses 0.",
    )


@register_component
class LinearExplainer(Component[ExplainConfig]):
    """Explains a linear model's score as each feature's contribution, coef * (x - baseline)."""

    kind = "postprocess"
    name = "explain"
    title = "Explain (linear)"
    description = "Add each feature's contribution to a linear model's score, largest first."
    fittable = True

    inputs = (Port("in", "records"),)
    outputs = (Port("out", "scored"),)

    @classmethod
    def problems(cls, config: ExplainConfig) -> list[str]:
        """No coefficients."""
        return [] if config.coefficients else ["there are no coefficients to explain with"]

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The baseline: each feature's mean over the reference rows."""
        return {"baseline": _means(rows, list(self.config.coefficients))}

    def process(self, batch: Batch) -> Batch:
        """Each record with its contributions in `output`."""
        config, rows = self.config, []
        for at, row in row_copies(batch):
            contributions = {
                feature: coef * (number(row.get(feature), at, feature) - self._baseline(feature))
                for feature, coef in config.coefficients.items()
            }
            row[config.output] = ranked(contributions, config.top_k)
            rows.append(row)
        return batch.replace(rows)

    def _baseline(self, feature: str) -> float:
        return self.config.baseline.get(feature, 0.0)


def linear_explainer_config(
    estimator: object,
    feature_names: Sequence[str] | None = None,
    reference_rows: Sequence[Mapping[str, object]] = (),
    label: object = None,
) -> dict[str, Any]:
    """An `explain` config for a fitted linear model (anything with `coef_`, as scikit-learn's).

    Args:
        estimator: the linear step itself (for a scikit-learn Pipeline, its last step, with
            the features that step sees).
        feature_names: the columns, in order; by default the estimator's `feature_names_in_`.
        reference_rows: records whose means become the baseline (none: a baseline of 0).
        label: the class explained when the model has one row of coefficients per class.

    Raises:
        InvalidInputError: the estimator is not linear, or the names or label do not fit it.
    """
    coef, intercept = getattr(estimator, "coef_", None), getattr(estimator, "intercept_", 0.0)
    if coef is None:
        raise InvalidInputError(f"a {type(estimator).__name__} has no coef_: it is not linear")
    names = list(feature_names if feature_names is not None else
                 getattr(estimator, "feature_names_in_", []))  # fmt: skip
    weights = np.atleast_2d(np.asarray(coef, dtype=float))
    intercepts = np.atleast_1d(np.asarray(intercept, dtype=float))
    row = _class_row(estimator, weights.shape[0], label)
    if len(names) != weights.shape[1]:
        raise InvalidInputError(
            f"{len(names)} feature names for {weights.shape[1]} coefficients"
            if names else "name the features: the estimator has no feature_names_in_"
        )  # fmt: skip
    coefficients = {str(n): float(w) for n, w in zip(names, weights[row].tolist(), strict=True)}
    config = {
        "coefficients": coefficients,
        "intercept": float(intercepts[row if len(intercepts) > 1 else 0]),
        "baseline": _means([dict(r) for r in reference_rows], list(coefficients)),
    }
    return ExplainConfig.model_validate(config).model_dump()


def ranked(contributions: dict[str, float], top_k: int) -> dict[str, float]:
    """The contributions, largest magnitude first, the first `top_k` of them (0: all)."""
    ranked = sorted(contributions.items(), key=lambda item: -abs(item[1]))
    return dict(ranked[: top_k or None])


def _class_row(estimator: object, rows: int, label: object) -> int:
    """Which row of coefficients explains `label` (a binary model has one row)."""
    if rows == 1:
        return 0
    classes = [str(c) for c in getattr(estimator, "classes_", [])]
    if label is None or str(label) not in classes:
        raise InvalidInputError(f"pick the class to explain: label= one of {', '.join(classes)}")
    return classes.index(str(label))


def _means(rows: list[dict[str, Any]], features: list[str]) -> dict[str, float]:
    """Each feature's mean over the rows that have a number for it."""
    means = {}
    for feature in features:
        values = [
            number(row[feature], f"reference row {i}", feature)
            for i, row in enumerate(rows)
            if row.get(feature) is not None
        ]
        if values:
            means[feature] = sum(values) / len(values)
    return means


# -- trees ---------------------------------------------------------------------------------------


class TreeNodes(BaseModel):
    """One fitted binary tree as parallel lists indexed by node (node 0 is the root)."""

    model_config = ConfigDict(extra="forbid")

    feature: list[int] = Field(description="The feature (an index into features) a node splits.")
    threshold: list[float] = Field(description="Records with feature <= threshold go left.")
    left: list[int] = Field(description="The left child of each node; -1 marks a leaf.")
    right: list[int] = Field(description="The right child of each node; -1 marks a leaf.")
    value: list[float] = Field(description="The score at each node (a class probability).")


class TreeExplainConfig(RankedContributions):
    """Config of `explain_tree` (see `tree_explainer_config` to fill it from a fitted model)."""

    features: list[str] = Field(description="The model's features, in column order.")
    trees: list[TreeNodes] = Field(description="The trees whose scores add up to the model's.")
    scale: float = Field(default=1.0, description="Each tree's weight (1/n for a forest).")


@register_component
class TreeExplainer(Component[TreeExplainConfig]):
    """Explains a tree model's score as the moves its splits make, credited to their features."""

    kind = "postprocess"
    name = "explain_tree"
    title = "Explain (trees)"
    description = "Add each feature's contribution to a tree model's score, largest first."

    inputs = (Port("in", "records"),)
    outputs = (Port("out", "scored"),)

    @classmethod
    def problems(cls, config: TreeExplainConfig) -> list[str]:
        """No trees, or a tree whose lists disagree or that names an unknown feature."""
        if not config.trees:
            return ["there are no trees to explain with"]
        found_problems = (_tree_problem(tree, len(config.features)) for tree in config.trees)
        return [f"tree {i}: {p}" for i, p in enumerate(found_problems) if p is not None]

    def process(self, batch: Batch) -> Batch:
        """Each record with its contributions in `output`."""
        config, rows = self.config, []
        for at, row in row_copies(batch):
            x = [number(row.get(feature), at, feature) for feature in config.features]
            totals = dict.fromkeys(config.features, 0.0)
            for tree in config.trees:
                for feature, move in _path(tree, x):
                    totals[config.features[feature]] += config.scale * move
            row[config.output] = ranked(totals, config.top_k)
            rows.append(row)
        return batch.replace(rows)


def _tree_problem(tree: TreeNodes, features: int) -> str | None:
    """What makes a tree unusable, if anything."""
    lists = (tree.feature, tree.threshold, tree.left, tree.right, tree.value)
    if len({len(nodes) for nodes in lists}) != 1 or not tree.value:
        return "its node lists differ in length or are empty"
    nodes = len(tree.value)
    for feature, left, right in zip(tree.feature, tree.left, tree.right, strict=True):
        if left >= 0 and not (0 <= feature < features and left < nodes and 0 <= right < nodes):
            return "a split names a feature or a child node that does not exist"
    return None


def _path(tree: TreeNodes, x: list[float]) -> Iterator[tuple[int, float]]:
    """Each split a record meets from the root to its leaf: (feature, change of value)."""
    node = 0
    while tree.left[node] >= 0:
        feature = tree.feature[node]
        child = tree.left[node] if x[feature] <= tree.threshold[node] else tree.right[node]
        yield feature, tree.value[child] - tree.value[node]
        node = child


def tree_explainer_config(
    estimator: object, feature_names: Sequence[str] | None = None, label: object = None
) -> dict[str, Any]:
    """An `explain_tree` config for a fitted scikit-learn decision tree or forest.

    A classifier is explained by one class's probability: `label`, or the second class of a
    binary model. Boosted trees (whose scores are log-odds plus a prior) are not supported.

    Raises:
        InvalidInputError: the estimator is not a tree or a forest of them, or the names or
            label do not fit it.
    """
    members = getattr(estimator, "estimators_", [estimator])
    if not all(hasattr(member, "tree_") for member in members):
        raise InvalidInputError(
            f"a {type(estimator).__name__} is neither a decision tree nor a forest of them"
        )
    names = list(feature_names if feature_names is not None else
                 getattr(estimator, "feature_names_in_", []))  # fmt: skip
    if len(names) != getattr(estimator, "n_features_in_", len(names)) or not names:
        raise InvalidInputError("name the model's features, in column order")
    classes = getattr(estimator, "classes_", None)
    column = 0 if classes is None else _class_column([str(c) for c in classes], label)
    trees = [_nodes(member.tree_, column, classes is not None) for member in members]
    config = {"features": [str(n) for n in names], "trees": trees, "scale": 1.0 / len(trees)}
    return TreeExplainConfig.model_validate(config).model_dump()


def _class_column(classes: list[str], label: object) -> int:
    """Which class's probability explains a classifier (the second class of a binary one)."""
    if label is None and len(classes) == 2:
        return 1
    if label is None or str(label) not in classes:
        raise InvalidInputError(f"pick the class to explain: label= one of {', '.join(classes)}")
    return classes.index(str(label))


def _nodes(tree: Any, column: int, classifier: bool) -> dict[str, Any]:
    """A scikit-learn `tree_` as `TreeNodes` fields (a classifier's values as probabilities)."""
    values = tree.value[:, 0, :]
    if classifier:
        values = values / values.sum(axis=1, keepdims=True)
    return {
        "feature": tree.feature.tolist(),
        "threshold": tree.threshold.tolist(),
        "left": tree.children_left.tolist(),
        "right": tree.children_right.tolist(),
        "value": values[:, column].tolist(),
    }
