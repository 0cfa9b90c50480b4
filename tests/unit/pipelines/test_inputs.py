"""The input processors: validate, coerce, impute, outliers, scale, one_hot and expression."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.component import Batch, Component
from nstarx_jupyter.pipelines.library.inputs import (
    FeatureExpressions,
    MissingValueImputer,
    NumericScaler,
    OneHotEncoder,
    OutlierDetector,
    SchemaValidator,
    TypeCoercer,
)

Rows = list[dict[str, Any]]

AMOUNTS: Rows = [{"amount": float(x), "age": 30 + x % 7} for x in range(10, 30)]
"""Twenty ordinary reference rows: amount 10..29 (mean 19.5, std about 5.77)."""


def make(cls: type[Component[Any]], **config: Any) -> Component[Any]:
    """A component built the way the executor builds it: from a JSON config."""
    return cls(cls.Config.model_validate(config))


def fitted(cls: type[Component[Any]], rows: Rows, **config: Any) -> Component[Any]:
    """A component whose learnt config fields come from `fit` on `rows`, round-tripped as JSON."""
    learnt = json.loads(json.dumps(make(cls, **config).fit(rows), allow_nan=False))
    return make(cls, **{**config, **learnt})


def run(component: Component[Any], rows: Rows) -> Rows:
    return component.process(Batch(rows)).rows


def rejection(component: Component[Any], rows: Rows) -> str:
    with pytest.raises(InvalidInputError) as caught:
        run(component, rows)
    return caught.value.message


def problems(cls: type[Component[Any]], **config: Any) -> list[str]:
    """What `validate` reports for a node: config mistakes, then what is still to fit."""
    parsed = cls.Config.model_validate(config)
    return cls.problems(parsed) + cls.unfitted(parsed)


# -- validate --------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "number", "minimum": 0}, "email": {"format": "email"}},
    "required": ["amount"],
}


def test_validate_passes_records_that_match_the_schema() -> None:
    rows: Rows = [{"amount": 3}, {"amount": 0.5, "email": "a@example.com"}]
    assert run(make(SchemaValidator, schema=SCHEMA), rows) == rows


def test_validate_rejection_names_the_row_and_the_field() -> None:
    validator = make(SchemaValidator, schema=SCHEMA)
    message = rejection(validator, [{"amount": 1}, {"amount": "ten"}])
    assert message == "row 1: field 'amount': 'ten' is not of type 'number'"
    assert rejection(validator, [{"email": "a@b.c"}]) == "row 0: 'amount' is a required property"
    assert "field 'email'" in rejection(validator, [{"amount": 1, "email": "nope"}])


def test_validate_counts_rows_by_their_position_in_the_request() -> None:
    batch = Batch([{"amount": 1}, {"amount": -1}], index=[4, 7])
    with pytest.raises(InvalidInputError, match=r"^row 7: field 'amount'"):
        make(SchemaValidator, schema=SCHEMA).process(batch)


def test_validate_flag_marks_invalid_records_and_keeps_them() -> None:
    validator = make(SchemaValidator, schema=SCHEMA, on_error="flag", flag_field="bad")
    rows = run(validator, [{"amount": 1}, {"amount": "x"}, {}])
    assert [row["bad"] for row in rows] == [False, True, True]
    assert rows[1]["amount"] == "x"


def test_validate_reports_an_invalid_schema() -> None:
    [problem] = problems(SchemaValidator, schema={"type": "nope"})
    assert problem.startswith("schema is not a valid JSON Schema")
    assert problems(SchemaValidator, schema=SCHEMA) == []


def test_validate_config_reads_and_writes_the_schema_key() -> None:
    config = SchemaValidator.Config.model_validate({"schema": SCHEMA})
    assert config.model_dump()["schema"] == SCHEMA
    assert "schema" in SchemaValidator.Config.model_json_schema()["properties"]


# -- coerce ----------------------------------------------------------------------------------------

TYPES = {"x": "float", "n": "int", "ok": "bool", "off": "bool", "code": "str"}


def test_coerce_converts_strings_to_the_named_types() -> None:
    row = {"x": " 3.5", "n": "4", "ok": "TRUE", "off": "0", "code": 12, "other": "7"}
    [out] = run(make(TypeCoercer, types=TYPES), [row])
    assert out == {"x": 3.5, "n": 4, "ok": True, "off": False, "code": "12", "other": "7"}
    assert type(out["n"]) is int


def test_coerce_keeps_big_integers_exact_and_whole_floats_as_int() -> None:
    [out] = run(
        make(TypeCoercer, types={"a": "int", "b": "int"}), [{"a": "12345678901234567891", "b": 2.0}]
    )
    assert out == {"a": 12345678901234567891, "b": 2}


def test_coerce_leaves_missing_fields_alone() -> None:
    [out] = run(make(TypeCoercer, types=TYPES), [{"x": None, "n": math.nan}])
    assert out["x"] is None
    assert math.isnan(out["n"])
    assert "ok" not in out


@pytest.mark.parametrize(
    ("field", "value", "target"),
    [("x", "abc", "float"), ("n", "3.5", "int"), ("ok", "maybe", "bool"), ("n", [1], "int")],
)
def test_coerce_rejects_a_value_that_cannot_be_converted(
    field: str, value: Any, target: str
) -> None:
    message = rejection(make(TypeCoercer, types=TYPES), [{}, {field: value}])
    assert message == f"row 1: field '{field}' = {value!r} cannot be converted to {target}"


# -- impute ----------------------------------------------------------------------------------------

GAPPY: Rows = [
    {"a": 1.0, "b": 10, "colour": "red"},
    {"a": None, "b": 20, "colour": "blue"},
    {"a": 5.0, "colour": "blue"},
    {"a": math.nan, "b": 60, "colour": None},
]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("mean", {"a": 3.0, "b": 30.0}),
        ("median", {"a": 3.0, "b": 20.0}),
        ("most_frequent", {"a": 1.0, "b": 10, "colour": "blue"}),
    ],
)
def test_impute_learns_each_column_from_its_present_values(
    strategy: str, expected: dict[str, Any]
) -> None:
    assert make(MissingValueImputer, strategy=strategy).fit(GAPPY) == {"values": expected}


def test_impute_skips_columns_without_values_when_no_columns_are_named() -> None:
    reference: Rows = [{"a": None, "b": "x"}, {"b": [1, 2]}]
    assert make(MissingValueImputer, strategy="most_frequent").fit(reference) == {
        "values": {"b": "x"}
    }
    assert make(MissingValueImputer, strategy="mean").fit(reference) == {"values": {}}


def test_impute_fills_absent_none_and_nan_fields() -> None:
    imputer = fitted(MissingValueImputer, GAPPY, strategy="mean")
    rows = run(imputer, [{"a": None}, {"a": math.nan, "b": 1}, {"colour": None}])
    assert rows == [
        {"a": 3.0, "b": 30.0},
        {"a": 3.0, "b": 1},
        {"a": 3.0, "b": 30.0, "colour": None},
    ]


def test_impute_fills_only_the_named_columns() -> None:
    imputer = fitted(MissingValueImputer, GAPPY, strategy="median", columns=["b"])
    assert run(imputer, [{"a": None}]) == [{"a": None, "b": 20.0}]


def test_impute_constant_fills_with_the_fill_value_without_fitting() -> None:
    named = make(MissingValueImputer, strategy="constant", fill_value=0, columns=["a", "b"])
    assert run(named, [{"a": None, "c": None}]) == [{"a": 0, "b": 0, "c": None}]
    anywhere = make(MissingValueImputer, strategy="constant", fill_value="?")
    assert run(anywhere, [{"a": None, "c": 1}]) == [{"a": "?", "c": 1}]
    seen = fitted(MissingValueImputer, GAPPY, strategy="constant", fill_value=-1)
    assert run(seen, [{"x": None}]) == [{"x": None, "a": -1, "b": -1, "colour": -1}]


def test_impute_reports_missing_fill_value_and_unfitted_statistics() -> None:
    assert problems(MissingValueImputer, strategy="constant") == [
        "strategy 'constant' needs fill_value"
    ]
    assert "fit on reference rows" in problems(MissingValueImputer, strategy="mean")[0]
    assert "'c'" in problems(MissingValueImputer, columns=["a", "c"], values={"a": 1.0})[0]
    assert problems(MissingValueImputer, values={"a": 1.0}) == []


def test_impute_fit_rejects_a_named_column_that_is_not_numeric() -> None:
    with pytest.raises(InvalidInputError, match="reference row 0: field 'colour' = 'red'"):
        make(MissingValueImputer, strategy="mean", columns=["colour"]).fit(GAPPY)


column_values = st.one_of(
    st.none(), st.just(math.nan), st.floats(-1e6, 1e6), st.integers(-1000, 1000)
)
records = st.fixed_dictionaries({}, optional={"a": column_values, "b": column_values})


@settings(max_examples=50, deadline=None)
@given(
    reference=st.lists(records, max_size=20),
    rows=st.lists(records, max_size=10),
    strategy=st.sampled_from(["mean", "median", "most_frequent"]),
)
def test_impute_never_leaves_a_fitted_column_missing(
    reference: Rows, rows: Rows, strategy: str
) -> None:
    reference = [*reference, {"a": 1.0, "b": 2}]  # every column has a value to learn from
    imputer = fitted(MissingValueImputer, reference, strategy=strategy)
    for row in run(imputer, rows):
        for column in ("a", "b"):
            value = row[column]
            assert value is not None
            assert not (isinstance(value, float) and math.isnan(value))


# -- outliers --------------------------------------------------------------------------------------


def test_outliers_zscore_rejection_says_how_far_and_the_limit() -> None:
    detector = fitted(OutlierDetector, AMOUNTS, columns=["amount"], action="reject")
    assert run(detector, [{"amount": 25.0}]) == [{"amount": 25.0}]
    message = rejection(detector, [{"amount": 20}, {"amount": 9000}])
    assert message == "row 1: 'amount' = 9000 is 1557.4 standard deviations from the mean (limit 3)"


def test_outliers_zscore_flags_with_a_score() -> None:
    detector = fitted(OutlierDetector, AMOUNTS, columns=["amount"], threshold=2)
    rows = run(detector, [{"amount": 19.5}, {"amount": 40.0}, {"amount": None}])
    assert [row["_outlier"] for row in rows] == [False, True, False]
    assert rows[0]["_outlier_score"] == 0.0
    assert rows[1]["_outlier_score"] == pytest.approx(20.5 / 5.766, rel=1e-3)


def test_outliers_iqr_uses_the_quartile_fences() -> None:
    detector = fitted(OutlierDetector, AMOUNTS, method="iqr", columns=["amount", "age"])
    assert detector.fit(AMOUNTS)["stats"]["amount"] == {"q1": 14.75, "q3": 24.25}
    rows = run(detector, [{"amount": 38.5, "age": 31}, {"amount": 38.6, "age": 31}])
    assert [row["_outlier"] for row in rows] == [False, True]
    detector = fitted(OutlierDetector, AMOUNTS, method="iqr", columns=["amount"], action="reject")
    message = rejection(detector, [{"amount": 0}])
    assert (
        message
        == "row 0: 'amount' = 0 is 1.6 interquartile ranges beyond the quartiles (limit 1.5)"
    )


def test_outliers_reject_a_value_that_is_not_a_number() -> None:
    detector = fitted(OutlierDetector, AMOUNTS, columns=["amount"])
    assert (
        rejection(detector, [{"amount": "lots"}])
        == "row 0: field 'amount' = 'lots' is not a number"
    )


def test_outliers_zero_spread_does_not_divide_by_zero() -> None:
    detector = fitted(OutlierDetector, [{"x": 1.0}] * 5, columns=["x"])
    rows = run(detector, [{"x": 1.0}, {"x": 9.0}])
    assert [row["_outlier"] for row in rows] == [False, True]


def iris_rows() -> Rows:
    from sklearn.datasets import load_iris

    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return [dict(zip(names, map(float, row), strict=True)) for row in iris.data]


IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


async def test_outliers_isolation_forest_flags_a_strange_flower() -> None:
    detector = fitted(OutlierDetector, iris_rows(), method="isolation_forest", columns=IRIS_COLUMNS)
    await detector.setup()
    usual = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    strange = {"sepal_length": 30.0, "sepal_width": 0.1, "petal_length": 20.0, "petal_width": 9.0}
    rows = run(detector, [usual, strange])
    assert [row["_outlier"] for row in rows] == [False, True]
    assert rows[0]["_outlier_score"] < rows[1]["_outlier_score"]


def test_outliers_isolation_forest_rejection_names_the_row_and_columns() -> None:
    detector = fitted(
        OutlierDetector, iris_rows(), method="isolation_forest", columns=IRIS_COLUMNS,
        action="reject",
    )  # fmt: skip
    strange = {"sepal_length": 30.0, "sepal_width": 0.1, "petal_length": 20.0, "petal_width": 9.0}
    message = rejection(detector, [strange])
    assert message.startswith("row 0: anomaly score ")
    assert "on sepal_length, sepal_width, petal_length, petal_width is above" in message
    missing = rejection(detector, [{**strange, "petal_width": None}])
    assert missing == "row 0: field 'petal_width' is missing"
    not_a_number = rejection(detector, [{**strange, "sepal_width": math.nan}])
    assert not_a_number == "row 0: field 'sepal_width' is missing"


def test_outliers_isolation_forest_keeps_a_deterministic_sample_of_the_reference() -> None:
    rows = [{"x": float(i), "y": float(i % 13)} for i in range(5000)]
    detector = make(OutlierDetector, method="isolation_forest", columns=["x", "y"])
    reference = detector.fit(rows)["reference"]
    assert len(reference) == 2000
    assert reference[0] == [0.0, 0.0]
    assert reference[-1] == [4999.0, 4999.0 % 13]
    assert detector.fit(rows)["reference"] == reference


def test_outliers_report_unfitted_configs_and_bad_thresholds() -> None:
    assert "'amount'" in problems(OutlierDetector, columns=["amount"])[0]
    forest = problems(OutlierDetector, method="isolation_forest", columns=["a"], threshold=0.7)
    assert len(forest) == 2
    assert "≤ 0.5" in forest[0]
    assert "reference" in forest[1]
    ragged = problems(OutlierDetector, method="isolation_forest", columns=["a"], reference=[[1, 2]])
    assert ragged == ["reference rows must have one value per column"]
    with pytest.raises(ValidationError):
        OutlierDetector.Config.model_validate({"columns": []})


# -- scale -----------------------------------------------------------------------------------------


def test_scale_standard_centres_the_reference_rows() -> None:
    scaled = run(fitted(NumericScaler, AMOUNTS, columns=["amount"]), AMOUNTS)
    values = [row["amount"] for row in scaled]
    assert sum(values) / len(values) == pytest.approx(0.0, abs=1e-12)
    assert sum(v * v for v in values) / len(values) == pytest.approx(1.0)
    assert [row["age"] for row in scaled] == [row["age"] for row in AMOUNTS]


def test_scale_minmax_maps_the_reference_range_to_zero_one() -> None:
    scaler = fitted(NumericScaler, AMOUNTS, method="minmax", columns=["amount"])
    rows = run(scaler, [{"amount": 10}, {"amount": 29}, {"amount": None}, {"amount": 48}])
    assert [row["amount"] for row in rows] == [0.0, 1.0, None, 2.0]


def test_scale_rejects_text_and_reports_unfitted_columns() -> None:
    scaler = fitted(NumericScaler, AMOUNTS, columns=["amount"])
    assert rejection(scaler, [{"amount": "5"}]) == "row 0: field 'amount' = '5' is not a number"
    assert problems(NumericScaler, columns=["amount"], stats={}) == [
        "column 'amount' has no learnt parameters: fit the pipeline on reference rows"
    ]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=30))
def test_scale_minmax_keeps_every_reference_value_within_zero_one(values: list[float]) -> None:
    reference = [{"v": value} for value in values]
    scaled = run(fitted(NumericScaler, reference, method="minmax", columns=["v"]), reference)
    assert all(-1e-9 <= row["v"] <= 1 + 1e-9 for row in scaled)


# -- one_hot ---------------------------------------------------------------------------------------

COLOURS: Rows = [{"colour": "red"}, {"colour": "blue"}, {"colour": None}, {"colour": "red"}]


def test_one_hot_learns_categories_in_the_order_first_seen() -> None:
    encoder = make(OneHotEncoder, columns=["colour"])
    assert encoder.fit(COLOURS) == {"categories": {"colour": ["red", "blue"]}}


def test_one_hot_replaces_the_column_with_one_field_per_category() -> None:
    encoder = fitted(OneHotEncoder, COLOURS, columns=["colour"])
    rows = run(encoder, [{"colour": "blue", "x": 1}, {"colour": None}, {"colour": "green"}])
    assert rows == [
        {"x": 1, "colour_red": 0, "colour_blue": 1},
        {"colour_red": 0, "colour_blue": 0},
        {"colour_red": 0, "colour_blue": 0},
    ]


def test_one_hot_can_keep_the_original_field() -> None:
    encoder = fitted(OneHotEncoder, COLOURS, columns=["colour"], drop_original=False)
    assert run(encoder, [{"colour": "red"}]) == [
        {"colour": "red", "colour_red": 1, "colour_blue": 0}
    ]


def test_one_hot_unknown_error_names_the_row_field_and_categories() -> None:
    encoder = fitted(OneHotEncoder, COLOURS, columns=["colour"], unknown="error")
    message = rejection(encoder, [{"colour": "red"}, {"colour": "green"}])
    assert message == "row 1: field 'colour' = 'green' is not a known category ('red', 'blue')"


def test_one_hot_reports_unfitted_columns() -> None:
    assert len(problems(OneHotEncoder, columns=["colour", "size"], categories={"size": [1]})) == 1


# -- expression ------------------------------------------------------------------------------------


def test_expression_adds_features_and_later_ones_see_earlier_ones() -> None:
    features = {
        "log_amount": "log(amount + 1)",
        "ratio": "income / max(debt, 1)",
        "rounded": "round(sqrt(ratio), 1)",
        "big": "amount > 100 and abs(debt) < 5",
    }
    [row] = run(
        make(FeatureExpressions, features=features), [{"amount": 0, "income": 9, "debt": 0}]
    )
    assert row == {
        "amount": 0, "income": 9, "debt": 0, "log_amount": 0.0, "ratio": 9.0, "rounded": 3.0,
        "big": False,
    }  # fmt: skip


def test_expression_reports_expressions_that_do_not_parse() -> None:
    found = problems(FeatureExpressions, features={"a": "x +", "b": "x = 1", "c": "x * 2"})
    assert len(found) == 2
    assert found[0].startswith("feature 'a': cannot parse 'x +'")
    assert found[1].startswith("feature 'b': cannot parse 'x = 1'")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"income": 1, "debt": 0}, "ZeroDivisionError"),
        ({"income": 1}, "NameNotDefined"),
        ({"income": None, "debt": 2}, "TypeError"),
        ({"income": 1e308, "debt": 1e-10}, "not a finite number"),
    ],
)
def test_expression_failure_names_the_row_and_the_feature(row: dict[str, Any], reason: str) -> None:
    expressions = make(FeatureExpressions, features={"ratio": "income / debt"})
    message = rejection(expressions, [{"income": 1, "debt": 1}, row])
    assert message.startswith("row 1: feature 'ratio' = 'income / debt' failed: ")
    assert reason in message


def test_expression_cannot_reach_python_internals() -> None:
    expressions = make(FeatureExpressions, features={"x": "amount.__class__"})
    assert "row 0: feature 'x'" in rejection(expressions, [{"amount": 1}])


# -- every component -------------------------------------------------------------------------------

MIXED: Rows = [
    {"amount": 12.0, "age": "31", "colour": "red", "debt": 2},
    {"amount": None, "age": "40", "colour": "blue", "debt": 0},
    {"amount": 25.0, "age": "22", "colour": None, "debt": 1},
]


def every_component() -> list[Component[Any]]:
    """One configured (and fitted) instance of each input processor."""
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    return [
        make(SchemaValidator, schema=schema, on_error="flag"),
        make(TypeCoercer, types={"age": "int", "debt": "float"}),
        fitted(MissingValueImputer, MIXED, strategy="most_frequent", columns=["colour"]),
        fitted(OutlierDetector, AMOUNTS, method="iqr", columns=["amount"]),
        fitted(OutlierDetector, AMOUNTS, method="isolation_forest", columns=["amount"]),
        fitted(NumericScaler, AMOUNTS, columns=["amount"]),
        fitted(OneHotEncoder, MIXED, columns=["colour"]),
        make(FeatureExpressions, features={"double_debt": "debt * 2"}),
    ]


@pytest.mark.parametrize("component", every_component(), ids=lambda c: c.name)
def test_component_leaves_its_input_rows_alone_and_outputs_json(component: Component[Any]) -> None:
    rows = [{**row, "amount": row["amount"] or 20.0} for row in MIXED]
    before = copy.deepcopy(rows)
    out = component.process(Batch(rows, index=[3, 4, 5]))
    assert rows == before
    assert out.index == [3, 4, 5]
    assert len(out.rows) == len(rows)
    json.dumps(out.rows, allow_nan=False)
    assert all(
        type(value) in (bool, int, float, str, type(None))
        for row in out.rows
        for value in row.values()
    )


@pytest.mark.parametrize(
    "cls",
    [SchemaValidator, TypeCoercer, MissingValueImputer, OutlierDetector, NumericScaler,
     OneHotEncoder, FeatureExpressions],
)  # fmt: skip
def test_component_describes_every_config_field_for_the_editor(cls: type[Component[Any]]) -> None:
    entry = cls.describe()
    assert entry["kind"] == "input"
    assert entry["title"] != entry["name"]
    assert entry["description"]
    properties = entry["config_schema"]["properties"]
    assert all("description" in field for field in properties.values()), properties
