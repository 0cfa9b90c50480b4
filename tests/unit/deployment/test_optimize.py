"""`optimize_model`: the ONNX conversion takes the original's signature and is kept only within
the tolerance; what cannot be converted keeps the original, with the reason."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from nstarx_jupyter.deployment.export.optimize import optimize_model, read_rows
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.runtimes.onnx import ONNXRuntime
from tests.unit.serving.test_datetime_inputs import _frame, _model

if TYPE_CHECKING:
    from pathlib import Path

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")


def _served(model: Any, options: dict[str, object], folder: Path) -> ONNXRuntime:
    import onnx

    onnx.save(model, str(folder / "model.onnx"))
    runtime = ONNXRuntime(folder / "model.onnx", options=options)
    runtime.load()
    return runtime


def test_a_regressor_answers_in_the_originals_shape_and_datatype(tmp_path: Path) -> None:
    frame, _ = load_iris(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LinearRegression()).fit(frame.iloc[:, :3],
                                                                    frame.iloc[:, 3])  # fmt: skip
    done = optimize_model(model, frame.iloc[:, :3].to_dict("records"))
    assert done.served == "onnx", done.reason
    runtime = _served(done.model, done.options, tmp_path)
    spec = runtime.metadata()
    assert [(s.name, s.datatype, s.shape) for s in spec.inputs] == [("input-0", "FP64", (-1, 3))]
    assert [(s.name, s.datatype) for s in spec.outputs] == [("predict", "FP64")]
    rows = frame.iloc[:, :3].to_numpy()
    got = runtime.predict({"input-0": rows})["predict"]
    assert got.shape == (150,)
    np.testing.assert_allclose(got, model.predict(frame.iloc[:, :3]), rtol=1e-5)


def test_int8_is_reported_beside_the_optimised_graph_and_decides_alone() -> None:
    frame, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(frame, target)
    done = optimize_model(model, frame, quantize="int8", tolerance=0.0)
    report = done.frame()
    assert list(report["variant"]) == ["sklearn", "onnx", "optimised", "int8"]
    assert report.attrs["served"] == done.served
    changed = 1 - report["agreement"].iloc[-1]
    assert done.served == ("onnx" if changed == 0 else "original")
    assert "int8 ONNX model" in done.reason


def test_string_columns_keep_the_original_with_the_reason() -> None:
    frame = pd.DataFrame({"merchant": ["a", "b", "a", "c"], "amount": [1.0, 2.0, 3.0, 4.0]})
    model = make_pipeline(
        ColumnTransformer([("cat", OneHotEncoder(), ["merchant"])], remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, [0, 1, 0, 1])
    done = optimize_model(model, frame)
    assert done.served == "original"
    assert done.model is model
    assert "one numeric matrix" in done.reason
    assert "merchant (BYTES)" in done.reason


def test_datetime_columns_keep_the_original_with_the_reason() -> None:
    frame = _frame()
    model = _model(frame)
    for sample in (frame, frame.head(3).to_dict("records")):  # a DataFrame, or records
        done = optimize_model(model, sample)
        assert done.served == "original"
        assert done.model is model
        assert "seen_at (BYTES), amount (FP64)" in done.reason


def test_a_sample_that_does_not_fit_the_model_is_refused() -> None:
    frame, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(frame, target)
    with pytest.raises(InvalidInputError, match="no feature"):
        optimize_model(model, frame.iloc[:, :3])
    with pytest.raises(InvalidInputError, match="rows of 4 features"):
        optimize_model(model, np.zeros((3, 5)))
    with pytest.raises(InvalidInputError, match="use True, 'int8' or 'fp16'"):
        optimize_model(model, frame, quantize="int4")


def test_sample_files_are_read_as_rows(tmp_path: Path) -> None:
    (tmp_path / "rows.json").write_text(json.dumps({"instances": [[1, 2], [3, 4]]}))
    assert read_rows(tmp_path / "rows.json") == [[1, 2], [3, 4]]
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_csv(tmp_path / "rows.csv", index=False)
    assert list(read_rows(tmp_path / "rows.csv").columns) == ["a", "b"]
    (tmp_path / "rows.txt").write_text("1,2")
    with pytest.raises(InvalidInputError, match=r"\.csv"):
        read_rows(tmp_path / "rows.txt")


def test_a_torch_export_program_is_served_as_onnx_with_its_signature(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Scorer(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                           torch.nn.Linear(8, 3))  # fmt: skip

        def forward(self, features: Any) -> dict[str, Any]:
            logits = self.mlp(features)
            return {"logits": logits, "label": logits.argmax(dim=1)}

    torch.manual_seed(0)
    module = Scorer().eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, (torch.zeros(2, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "scorer.pt2"))
    rows = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)

    done = optimize_model(tmp_path / "scorer.pt2", rows)
    assert done.served == "onnx", done.reason
    assert list(done.frame()["variant"]) == ["pytorch", "onnx", "optimised"]
    (tmp_path / "served").mkdir()
    runtime = _served(done.model, done.options, tmp_path / "served")
    spec = runtime.metadata()
    assert [(s.name, s.datatype, s.shape) for s in spec.inputs] == [("features", "FP32", (-1, 4))]
    assert [(s.name, s.datatype) for s in spec.outputs] == [("logits", "FP32"), ("label", "INT64")]
    got = runtime.predict({"features": rows}, ["logits", "label"])
    with torch.inference_mode():
        expected = module(torch.from_numpy(rows))
    np.testing.assert_allclose(got["logits"], expected["logits"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(got["label"], expected["label"].numpy())
