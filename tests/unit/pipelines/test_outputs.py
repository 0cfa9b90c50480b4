"""The post-processors and output formatters: threshold, label_map, confidence, explain,
enrich, and the fields, records and v2 responses."""

from __future__ import annotations

import copy
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeRegressor

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.component import Batch, Component
from nstarx_jupyter.pipelines.library.outputs import (
    ConfidenceScores,
    FieldsOutput,
    LabelMap,
    LinearExplainer,
    LookupEnricher,
    RecordsOutput,
    Threshold,
    TreeExplainer,
    V2Output,
    linear_explainer_config,
    tree_explainer_config,
    v2_tensor,
)
from nstarx_jupyter.pipelines.palette import components
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

Rows = list[dict[str, Any]]


def make(cls: type[Component[Any]], **config: Any) -> Component[Any]:
    """A component built the way the executor builds it: from a JSON config."""
    return cls(cls.Config.model_validate(json.loads(json.dumps(config))))


def problems(cls: type[Component[Any]], **config: Any) -> list[str]:
    return cls.problems(cls.Config.model_validate(config))


async def body(component: Component[Any], *batches: Batch) -> Any:
    """What a component sends on its `out` port."""
    return (await component.run({"in": list(batches)}))["out"]


async def rows_of(component: Component[Any], rows: Rows) -> Rows:
    """A post-processor's output rows, checking it left its input rows alone."""
    before = copy.deepcopy(rows)
    out = await body(component, Batch(rows))
    assert rows == before
    assert json.loads(json.dumps(out.rows)) == out.rows
    return list(out.rows)


# -- threshold -----------------------------------------------------------------------------------


async def test_threshold_labels_scores_at_or_above_it_with_the_first_label() -> None:
    step = make(Threshold, field="probabilities.1", threshold=0.7, labels=["fraud", "ok"])
    rows = [{"probabilities": {"0": 0.3, "1": 0.7}}, {"probabilities": {"0": 0.4, "1": 0.6}}]
    assert [r["decision"] for r in await rows_of(step, rows)] == ["fraud", "ok"]


async def test_threshold_defaults_to_true_and_false_on_confidence() -> None:
    step = make(Threshold, output="flag")
    out = await rows_of(step, [{"confidence": 0.5}, {"confidence": 0.2}])
    assert [r["flag"] for r in out] == [True, False]


async def test_threshold_names_the_row_without_a_score() -> None:
    with pytest.raises(InvalidInputError, match="row 4: field 'confidence' is missing"):
        await body(make(Threshold), Batch([{"prediction": 1}], [4]))


# -- label_map -----------------------------------------------------------------------------------


async def test_label_map_compares_keys_as_strings() -> None:
    step = make(LabelMap, mapping={"0": "legit", "1": "fraud", "true": "yes"})
    rows: Rows = [{"prediction": 1}, {"prediction": 0.0}, {"prediction": "1"}, {"prediction": True}]
    assert [r["prediction"] for r in await rows_of(step, rows)] == [
        "fraud", "legit", "fraud", "yes"
    ]  # fmt: skip


@pytest.mark.parametrize(("unknown", "expected"), [("keep", 7), ("null", None)])
async def test_label_map_keeps_or_nulls_an_unknown_value(unknown: str, expected: Any) -> None:
    step = make(LabelMap, mapping={"1": "a"}, unknown=unknown, output="label")
    out = await rows_of(step, [{"prediction": 7}])
    assert out == [{"prediction": 7, "label": expected}]


async def test_label_map_can_reject_an_unknown_value() -> None:
    step = make(LabelMap, mapping={"1": "a"}, unknown="error")
    with pytest.raises(InvalidInputError, match="row 0: field 'prediction' is 7, which the map"):
        await body(step, Batch([{"prediction": 7}]))


def test_label_map_needs_a_mapping() -> None:
    assert problems(LabelMap, mapping={}) == ["the mapping is empty"]


# -- confidence ----------------------------------------------------------------------------------


async def test_confidence_measures_certainty_entropy_and_margin() -> None:
    step = make(ConfidenceScores, field="m_probabilities", output_prefix="m_")
    rows = [
        {"m_probabilities": {"a": 1.0, "b": 0.0, "c": 0.0}},
        {"m_probabilities": {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}},
        {"m_probabilities": {"a": 0.2, "b": 0.7, "c": 0.1}},
    ]
    out = await rows_of(step, rows)
    assert [r["m_confidence"] for r in out] == [1.0, 0.25, 0.7]
    assert [r["m_uncertainty"] for r in out] == pytest.approx(
        [0.0, 1.0, -(0.2 * math.log(0.2) + 0.7 * math.log(0.7) + 0.1 * math.log(0.1)) / math.log(3)]
    )
    assert [r["m_margin"] for r in out] == pytest.approx([1.0, 0.0, 0.5])


async def test_confidence_names_a_row_without_probabilities() -> None:
    with pytest.raises(InvalidInputError, match="row 0: field 'probabilities' holds no"):
        await body(make(ConfidenceScores), Batch([{"prediction": 1}]))


# -- explain -------------------------------------------------------------------------------------


async def test_explain_contributions_add_up_to_the_models_decision_function(
    iris_model: LogisticRegression, iris_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = iris_data
    reference = [dict(zip(IRIS_FEATURES, map(float, row), strict=True)) for row in x]
    config = linear_explainer_config(iris_model, IRIS_FEATURES, reference, label=2)
    assert json.loads(json.dumps(config)) == config
    assert config["baseline"]["petal_length"] == pytest.approx(float(x[:, 2].mean()))
    step = make(LinearExplainer, **config)
    out = await rows_of(step, reference[100:103])
    coef, baseline = config["coefficients"], config["baseline"]
    base = config["intercept"] + sum(coef[f] * baseline[f] for f in IRIS_FEATURES)
    expected = iris_model.decision_function(x[100:103])[:, 2]
    for row, score in zip(out, expected, strict=True):
        contributions = row["contributions"]
        assert base + sum(contributions.values()) == pytest.approx(score)
        sizes = [abs(v) for v in contributions.values()]
        assert sizes == sorted(sizes, reverse=True)


async def test_explain_keeps_the_top_k_and_learns_its_baseline_with_fit() -> None:
    step = make(LinearExplainer, coefficients={"a": 1.0, "b": -3.0, "c": 0.5}, top_k=2)
    assert step.fit([{"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 3.0, "b": 4.0}]) == {
        "baseline": {"a": 2.0, "b": 3.0, "c": 3.0}
    }
    out = await rows_of(step, [{"a": 2.0, "b": 1.0, "c": 1.0}])
    assert out[0]["contributions"] == {"b": -3.0, "a": 2.0}


async def test_explain_names_a_missing_feature() -> None:
    step = make(LinearExplainer, coefficients={"a": 1.0})
    with pytest.raises(InvalidInputError, match="row 0: field 'a' is missing"):
        await body(step, Batch([{"b": 1.0}]))


def test_linear_explainer_config_refuses_what_it_cannot_explain(
    iris_model: LogisticRegression,
) -> None:
    with pytest.raises(InvalidInputError, match="has no coef_"):
        linear_explainer_config(object(), ["a"])
    with pytest.raises(InvalidInputError, match="pick the class to explain"):
        linear_explainer_config(iris_model, IRIS_FEATURES)
    with pytest.raises(InvalidInputError, match="3 feature names for 4 coefficients"):
        linear_explainer_config(iris_model, IRIS_FEATURES[:3], label=0)
    assert problems(LinearExplainer, coefficients={}) == [
        "there are no coefficients to explain with"
    ]


async def test_tree_contributions_add_up_to_a_forests_class_probability(
    iris_data: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = iris_data
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    config = tree_explainer_config(forest, IRIS_FEATURES, label=2)
    assert json.loads(json.dumps(config)) == config
    step = make(TreeExplainer, **config)
    assert TreeExplainer.problems(step.config) == []
    rows = [dict(zip(IRIS_FEATURES, map(float, row), strict=True)) for row in x[[0, 70, 140]]]
    out = await rows_of(step, rows)
    base = config["scale"] * sum(tree["value"][0] for tree in config["trees"])
    expected = forest.predict_proba(x[[0, 70, 140]])[:, 2]
    for row, probability in zip(out, expected, strict=True):
        assert base + sum(row["contributions"].values()) == pytest.approx(probability)


async def test_tree_contributions_add_up_to_a_regression_trees_prediction(
    iris_data: tuple[np.ndarray, np.ndarray],
) -> None:
    x, _ = iris_data
    tree = DecisionTreeRegressor(max_depth=4, random_state=0).fit(x[:, :3], x[:, 3])
    config = tree_explainer_config(tree, IRIS_FEATURES[:3])
    record: Rows = [{"sepal_length": 6.0, "sepal_width": 3.0, "petal_length": 4.5}]
    full = await rows_of(make(TreeExplainer, **config), record)
    top = await rows_of(make(TreeExplainer, **{**config, "top_k": 1}), record)
    assert top[0]["contributions"] == dict(list(full[0]["contributions"].items())[:1])
    prediction = tree.predict(np.array([[6.0, 3.0, 4.5]]))[0]
    root = config["trees"][0]["value"][0]
    assert root + sum(full[0]["contributions"].values()) == pytest.approx(prediction)


def test_tree_explainer_refuses_what_it_cannot_explain(
    iris_model: LogisticRegression, iris_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = iris_data
    with pytest.raises(InvalidInputError, match="neither a decision tree nor a forest"):
        tree_explainer_config(iris_model, IRIS_FEATURES)
    forest = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(x, y)
    with pytest.raises(InvalidInputError, match="pick the class to explain"):
        tree_explainer_config(forest, IRIS_FEATURES)
    with pytest.raises(InvalidInputError, match="name the model's features"):
        tree_explainer_config(forest, IRIS_FEATURES[:2], label=1)
    bad = {"feature": [5, -2, -2], "threshold": [0.5, 0, 0], "left": [1, -1, -1],
           "right": [2, -1, -1], "value": [0.5, 0.0, 1.0]}  # fmt: skip
    assert problems(TreeExplainer, features=["a"], trees=[bad]) == [
        "tree 0: a split names a feature or a child node that does not exist"
    ]
    assert problems(TreeExplainer, features=["a"], trees=[{**bad, "value": [0.5]}]) == [
        "tree 0: its node lists differ in length or are empty"
    ]
    assert problems(TreeExplainer, features=["a"], trees=[]) == [
        "there are no trees to explain with"
    ]


# -- enrich --------------------------------------------------------------------------------------

TABLE = {"FR": {"region": "EU", "risk": 0.2}, "1": {"region": "test"}}


async def test_enrich_adds_the_table_row_for_each_key() -> None:
    step = make(LookupEnricher, key="country", table=TABLE, prefix="country_")
    out = await rows_of(step, [{"country": "FR"}, {"country": "XX"}, {"country": 1.0}])
    assert out == [
        {"country": "FR", "country_region": "EU", "country_risk": 0.2},
        {"country": "XX"},
        {"country": 1.0, "country_region": "test"},
    ]


async def test_enrich_can_reject_a_key_the_table_lacks() -> None:
    step = make(LookupEnricher, key="country", table=TABLE, missing="error")
    with pytest.raises(InvalidInputError, match="row 0: field 'country' is missing"):
        await body(step, Batch([{"amount": 1}]))
    assert problems(LookupEnricher, key="k", table={}) == ["the lookup table is empty"]


# -- formatters ----------------------------------------------------------------------------------

SCORED: Rows = [
    {"_id": 0, "prediction": 1, "confidence": 0.9, "probabilities": {"0": 0.1, "1": 0.9}},
    {"_id": 1, "prediction": 0, "confidence": 0.6, "probabilities": {"0": 0.6, "1": 0.4}},
    {"_id": 2, "prediction": 1, "confidence": 0.7},
]


def branches() -> list[Batch]:
    """The scored rows as two router branches would deliver them: disjoint, out of order."""
    return [Batch([SCORED[1]], [1]), Batch([SCORED[2], SCORED[0]], [2, 0])]


async def test_fields_formatter_renames_and_keeps_request_order() -> None:
    step = make(FieldsOutput, fields={"label": "prediction", "p_fraud": "probabilities.1"})
    assert await body(step, *branches()) == [
        {"label": 1, "p_fraud": 0.9},
        {"label": 0, "p_fraud": 0.4},
        {"label": 1, "p_fraud": None},
    ]
    omit = make(FieldsOutput, fields={"p": "probabilities.1"}, missing="omit")
    assert (await body(omit, *branches()))[2] == {}
    fail = make(FieldsOutput, fields={"p": "probabilities.1"}, missing="error")
    with pytest.raises(InvalidInputError, match=r"row 2: field 'probabilities\.1' is missing"):
        await body(fail, *branches())


async def test_records_formatter_returns_public_fields_or_the_chosen_ones() -> None:
    everything = await body(make(RecordsOutput), *branches())
    assert everything == [{k: v for k, v in r.items() if k != "_id"} for r in SCORED]
    chosen = await body(make(RecordsOutput, include=["_id", "prediction"]), *branches())
    assert chosen == [{"_id": 0, "prediction": 1}, {"_id": 1, "prediction": 0},
                      {"_id": 2, "prediction": 1}]  # fmt: skip
    less = await body(make(RecordsOutput, exclude=["probabilities", "confidence"]), *branches())
    assert less == [{"prediction": 1}, {"prediction": 0}, {"prediction": 1}]


async def test_v2_formatter_gives_one_typed_tensor_per_field() -> None:
    rows = [
        {"flag": True, "label": 1, "score": 0.5, "name": "a", "emb": [1, 2], "_x": 0},
        {"flag": False, "label": 2, "score": 1, "name": "b", "emb": [3, 4.5], "_x": 1},
    ]
    out = await body(make(V2Output, model_name="fraud", model_version="3"), Batch(rows))
    assert json.loads(json.dumps(out)) == out
    assert out == {
        "model_name": "fraud",
        "model_version": "3",
        "outputs": [
            {"name": "flag", "datatype": "BOOL", "shape": [2], "data": [True, False]},
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 2]},
            {"name": "score", "datatype": "FP64", "shape": [2], "data": [0.5, 1.0]},
            {"name": "name", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
            {"name": "emb", "datatype": "FP64", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.5]},
        ],
    }


async def test_v2_formatter_keeps_request_order_and_the_chosen_fields() -> None:
    out = await body(make(V2Output, fields=["confidence", "probabilities"]), *branches())
    assert out["model_name"] == "pipeline"
    assert out["outputs"] == [
        {"name": "confidence", "datatype": "FP64", "shape": [3], "data": [0.9, 0.6, 0.7]},
        {"name": "probabilities", "datatype": "BYTES", "shape": [3],
         "data": ['{"0": 0.1, "1": 0.9}', '{"0": 0.6, "1": 0.4}', "null"]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("values", "datatype"),
    [([True, 1], "BYTES"), ([1, None], "BYTES"), (["a", 1], "BYTES"), ([[1], [1, 2]], "BYTES"),
     ([np.float64(0.5).item()], "FP64"), ([], "BYTES")],
)  # fmt: skip
def test_v2_tensor_falls_back_to_json_text_for_mixed_values(
    values: list[Any], datatype: str
) -> None:
    tensor = v2_tensor("x", values)
    assert tensor["datatype"] == datatype
    assert tensor["shape"] == [len(values)]
    json.dumps(tensor)


def test_output_components_are_registered_with_a_described_config() -> None:
    library = components()
    kinds = {"threshold": "postprocess", "label_map": "postprocess", "confidence": "postprocess",
             "explain": "postprocess", "explain_tree": "postprocess", "enrich": "postprocess",
             "fields": "output",
             "records": "output", "v2": "output"}  # fmt: skip
    for name, kind in kinds.items():
        entry = library[name].describe()
        assert entry["kind"] == kind
        assert entry["title"]
        assert entry["description"]
        properties = entry["config_schema"]["properties"]
        assert all(field.get("description") for field in properties.values()), name
        if kind == "output":
            assert entry["outputs"] == [{"name": "out", "type": "response", "many": False,
                                         "required": True}]  # fmt: skip
        json.dumps(entry)
