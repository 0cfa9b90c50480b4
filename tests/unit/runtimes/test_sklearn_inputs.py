"""Signature inference for scikit-learn models: which inputs, of which datatype, how fed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol import v1
from nstarx_jupyter.protocol.records import records_to_tensors, rename_fields
from nstarx_jupyter.registry.flavors import runtime_for
from nstarx_jupyter.runtimes.sklearn import SklearnRuntime
from nstarx_jupyter.runtimes.sklearn_inputs import example_record, infer_inputs

if TYPE_CHECKING:
    from pathlib import Path

TEXTS = ["good great fine", "bad awful", "great", "awful terrible"]
LABELS = ["pos", "neg", "pos", "neg"]
FRAME = pd.DataFrame({
    "merchant": ["amazon", "shop", "amazon", "atm"], "location": ["NY", "SF", "SF", "NY"],
    "amount": [1.0, 500.0, 3.0, 900.0],
})  # fmt: skip
Y = [0, 1, 0, 1]


def _fraud(categories: Any = None) -> Any:
    encoder = categories or OneHotEncoder(handle_unknown="ignore")
    columns = ColumnTransformer([("cat", encoder, ["merchant", "location"]),
                                 ("num", StandardScaler(), ["amount"])])  # fmt: skip
    return make_pipeline(columns, LogisticRegression()).fit(FRAME, Y)


def _served(model: Any, tmp_path: Path, options: dict[str, Any] | None = None) -> SklearnRuntime:
    joblib.dump(model, tmp_path / "model.joblib")
    runtime = SklearnRuntime(tmp_path / "model.joblib", options=options)
    runtime.load()
    return runtime


def test_a_text_pipeline_takes_one_string_per_row_named_text() -> None:
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, LABELS)
    inputs = infer_inputs(model)
    assert inputs.kind == "text"
    assert [(c.name, c.datatype) for c in inputs.columns] == [("text", "BYTES")]
    assert isinstance(inputs.columns[0].sample, str)
    assert inputs.columns[0].sample
    assert infer_inputs(model, {"input_name": "review"}).names() == ("review",)


def test_a_column_transformer_types_each_column_from_its_transformer() -> None:
    inputs = infer_inputs(_fraud())
    assert inputs.kind == "columns"
    assert [(c.name, c.datatype) for c in inputs.columns] == [
        ("merchant", "BYTES"),
        ("location", "BYTES"),
        ("amount", "FP64"),
    ]
    assert example_record(_fraud()) == {"merchant": "amazon", "location": "NY", "amount": 0.0}


def test_an_imputer_before_the_encoder_and_a_vectorizer_on_one_column_say_string() -> None:
    encoder = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder())
    assert infer_inputs(_fraud(encoder)).kind == "columns"
    frame = FRAME.assign(note=["nice", "odd", "fine", "weird"])
    model = make_pipeline(ColumnTransformer([("text", CountVectorizer(), "note"),
                                             ("num", "passthrough", [2])]),
                          LogisticRegression()).fit(frame, Y)  # fmt: skip
    types = {c.name: c.datatype for c in infer_inputs(model).columns}
    assert types == {"merchant": "FP64", "location": "FP64", "amount": "FP64", "note": "BYTES"}


def test_an_encoder_fitted_alone_on_strings_and_numeric_models_keep_their_matrix() -> None:
    encoder = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(FRAME[["merchant"]], Y)
    assert [(c.name, c.datatype) for c in infer_inputs(encoder).columns] == [("merchant", "BYTES")]
    numeric = LogisticRegression().fit(FRAME[["amount"]], Y)
    assert infer_inputs(numeric).kind == "matrix"
    assert infer_inputs(numeric).names() == ("amount",)
    bare = LogisticRegression().fit(np.asarray([[1.0], [2.0], [3.0], [4.0]]), Y)
    assert infer_inputs(bare).kind == "matrix"
    assert infer_inputs(bare).columns == ()


@pytest.mark.parametrize(
    ("declared", "kind", "types"),
    [
        ([{"name": "merchant", "type": "string"}, {"name": "location", "type": "string"},
          {"name": "amount", "type": "long"}], "columns", ["BYTES", "BYTES", "INT64"]),
        ([{"name": "other", "type": "string"}, {"name": "location", "type": "string"},
          {"name": "amount", "type": "double"}], "columns", ["BYTES", "BYTES", "FP64"]),
        ([{"name": "merchant", "type": "datetime"}, {"name": "location", "type": "string"},
          {"name": "amount", "type": "double"}], "columns", ["BYTES", "BYTES", "FP64"]),
    ],
)  # fmt: skip
def test_an_mlflow_signature_is_used_when_its_names_fit_the_model(
    declared: list[dict[str, Any]], kind: str, types: list[str]
) -> None:
    inputs = infer_inputs(_fraud(), {"input_columns": declared})
    assert inputs.kind == kind
    assert [c.datatype for c in inputs.columns] == types


def test_an_unnamed_string_signature_is_a_text_input() -> None:
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, LABELS)
    inputs = infer_inputs(model, {"input_columns": [{"name": None, "type": "string"}]})
    assert inputs.kind == "text"
    assert inputs.names() == ("text",)


def test_the_mlmodel_signature_reaches_the_runtime_options(tmp_path: Path) -> None:
    mlmodel = {
        "flavors": {"sklearn": {"pickled_model": "model.skops"}},
        "signature": {"inputs": '[{"type": "string", "name": "merchant", "required": true}]'},
    }
    _, _, options = runtime_for(mlmodel, tmp_path)
    assert options["input_columns"] == [{"name": "merchant", "type": "string"}]
    tensor = {
        "flavors": {"sklearn": {}},
        "signature": {
            "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]'
        },
    }
    assert "input_columns" not in runtime_for(tensor, tmp_path)[2]


def test_the_runtime_feeds_a_dataframe_and_answers_records_and_v1_rows(tmp_path: Path) -> None:
    model = _fraud()
    runtime = _served(model, tmp_path)
    signature = runtime.metadata()
    assert [s.to_json() for s in signature.inputs] == [
        {"name": "merchant", "datatype": "BYTES", "shape": [-1]},
        {"name": "location", "datatype": "BYTES", "shape": [-1]},
        {"name": "amount", "datatype": "FP64", "shape": [-1]},
    ]
    record = {"merchant": "shop", "location": "SF", "amount": 700}
    want = model.predict(pd.DataFrame([record])).tolist()
    assert runtime.predict(records_to_tensors([record], signature))["predict"].tolist() == want
    rows = v1.decode_instances({"instances": [["shop", "SF", 700]]}, signature)
    assert runtime.predict(rows)["predict"].tolist() == want
    raw = {
        "merchant": np.asarray([b"shop"], dtype=object),
        "location": np.asarray([[b"SF"]], dtype=object),
        "amount": np.asarray([700]),
    }
    from nstarx_jupyter.protocol.signature import bind_inputs

    assert runtime.predict(bind_inputs(signature, raw))["predict"].tolist() == want


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"merchant": "shop", "location": "SF"}, "missing field 'amount'"),
        ({"merchant": "shop", "location": "SF", "amount": "x"}, "input 'amount'"),
        ({"merchant": None, "location": "SF", "amount": 1}, "input 'merchant'"),
        ({"merchant": "a", "location": "SF", "amount": 1, "x": 2}, "unknown field 'x'"),
    ],
)
def test_bad_records_name_the_field(tmp_path: Path, record: dict[str, Any], message: str) -> None:
    signature = _served(_fraud(), tmp_path).metadata()
    with pytest.raises(InvalidInputError, match=message):
        records_to_tensors([record], signature)


def test_a_number_for_a_string_column_is_taken_as_text(tmp_path: Path) -> None:
    signature = _served(_fraud(), tmp_path).metadata()
    tensors = records_to_tensors([{"merchant": 94110, "location": "SF", "amount": 1}], signature)
    assert tensors["merchant"].tolist() == ["94110"]


def test_a_text_model_takes_its_one_field_under_any_name(tmp_path: Path) -> None:
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, LABELS)
    runtime = _served(model, tmp_path)
    signature = runtime.metadata()
    assert signature.feature_names is None
    for record in ({"text": "great"}, {"review": "great"}, {"doc": {"body": "great"}}):
        tensors = records_to_tensors([record], signature)
        assert runtime.predict(tensors)["predict"].tolist() == ["pos"]
    with pytest.raises(InvalidInputError, match="unknown field 'a'"):
        records_to_tensors([{"a": "x", "b": "y"}], signature)
    texts = v1.decode_instances({"instances": ["great", b"awful".decode()]}, signature)
    assert runtime.predict(texts)["predict"].tolist() == ["pos", "neg"]


def test_answer_fields_are_renamed_and_probability_names_confidence() -> None:
    rows = [{"prediction": "pos", "confidence": 0.9, "probabilities": {"pos": 0.9}}]
    renamed = rename_fields(rows, {"prediction": "sentiment", "probability": "confidence"})
    assert renamed == [{"sentiment": "pos", "confidence": 0.9, "probabilities": {"pos": 0.9}}]
    assert rename_fields(rows, {"confidence": "score"})[0]["score"] == 0.9
    assert rename_fields(rows, {}) is rows


def test_deploys_example_follows_the_inputs_strings_prefilled_with_strings() -> None:
    from nstarx_jupyter.notebook.examples import first_record, model_example

    text = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, LABELS)
    sample = first_record(None, text)
    assert sample is not None
    assert list(sample) == ["text"]
    assert isinstance(sample["text"], str)
    assert first_record(["so good"], text) == {"text": "so good"}
    assert model_example(text, {"text": "so good"}) == ["so good"]
    fraud = _fraud()
    assert first_record(None, fraud) == {"merchant": "amazon", "location": "NY", "amount": 0.0}
    frame = model_example(fraud, [{"amount": 3.0, "merchant": "shop", "location": "SF"}])
    assert list(frame.columns) == ["merchant", "location", "amount"]
    assert fraud.predict(frame).tolist() in ([0], [1])


def test_null_in_a_number_column_is_a_missing_value_for_the_models_imputer(
    tmp_path: Path,
) -> None:
    amount = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    columns = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["merchant"]),
                                 ("num", amount, ["amount"])])  # fmt: skip
    model = make_pipeline(columns, LogisticRegression()).fit(FRAME[["merchant", "amount"]], Y)
    runtime = _served(model, tmp_path)
    tensors = records_to_tensors([{"merchant": "shop", "amount": None}], runtime.metadata())
    assert np.isnan(tensors["amount"][0])
    assert runtime.predict(tensors)["predict"].tolist()[0] in (0, 1)
