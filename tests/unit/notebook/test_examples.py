"""`deploy(input_example=...)` as the registry's signature needs it: records become the frame the
model was fitted on, or a clear error where no field maps to a feature."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.notebook.examples import model_example


def _iris() -> tuple[pd.DataFrame, pd.Series]:
    frame, target = load_iris(return_X_y=True, as_frame=True)
    return frame, target


def test_records_of_an_all_numeric_frame_model_become_its_columns_in_order() -> None:
    frame, target = _iris()
    model = LogisticRegression(max_iter=500).fit(frame, target)
    shuffled = [dict(reversed(list(record.items())))  # the fields in another order
                for record in frame.iloc[:3].to_dict("records")]  # fmt: skip
    made = model_example(model, shuffled)
    assert isinstance(made, pd.DataFrame)
    assert list(made.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(made, frame.iloc[:3].reset_index(drop=True))
    assert model.predict(made).tolist() == target[:3].tolist()
    one = model_example(model, shuffled[0])  # one record: a one-row frame
    assert list(one.columns) == list(frame.columns)
    assert one.shape == (1, 4)


def test_records_for_a_model_fitted_on_an_array_are_refused_naming_what_to_pass() -> None:
    frame, target = _iris()
    model = LogisticRegression(max_iter=500).fit(frame.to_numpy(), target)
    with pytest.raises(InvalidInputError, match="fitted on an array without feature names") as e:
        model_example(model, frame.iloc[:2].to_dict("records"))
    assert "pass rows (a 2-D array or a list of lists" in str(e.value)
    assert e.value.kind.name == "INVALID_INPUT"
    rows = frame.to_numpy()[:2]  # rows pass as they are
    assert model_example(model, rows) is rows


def test_a_record_without_one_of_the_models_columns_is_refused_naming_it() -> None:
    frame, target = _iris()
    model = LogisticRegression(max_iter=500).fit(frame, target)
    records = frame.iloc[:2].to_dict("records")
    del records[1]["petal width (cm)"]
    with pytest.raises(InvalidInputError, match=r"record 1 has no field 'petal width \(cm\)'"):
        model_example(model, records)


def test_a_text_model_takes_records_of_one_field_only() -> None:
    text = make_pipeline(TfidfVectorizer(), LogisticRegression())
    text.fit(["good stuff", "bad stuff", "so good", "so bad"], [1, 0, 1, 0])
    assert model_example(text, [{"review": "good"}]) == ["good"]
    with pytest.raises(InvalidInputError, match="one text per row"):
        model_example(text, [{"review": "good", "stars": 5}])


def test_what_is_not_records_or_not_scikit_learn_is_left_as_it_is() -> None:
    frame, target = _iris()
    model = LogisticRegression(max_iter=500).fit(frame, target)
    assert model_example(model, None) is None
    assert model_example(model, frame) is frame
    records = [{"a": 1.0}]
    assert model_example(object(), records) is records
    assert model_example("models:/iris/1", records) is records
    array = np.zeros((1, 4))
    assert model_example(model, array) is array
