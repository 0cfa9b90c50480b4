"""Batch job pieces: the answer table matches the records API, a job's record and parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nstarx_jupyter.protocol.records import tensors_to_records
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.serving.jobs import Job, answer_table

FEATURES = ("a", "b")


def _signature(labels: tuple[object, ...] | None) -> ModelSignature:
    return ModelSignature(
        "sklearn",
        (TensorSpec("input-0", "FP64", (-1, 2)),),
        (TensorSpec("predict", "INT64", (-1,)), TensorSpec("predict_proba", "FP64", (-1, 3))),
        ("predict",),
        FEATURES,
        labels,
    )


def test_the_answer_table_has_the_records_apis_columns_and_values() -> None:
    rng = np.random.default_rng(0)
    outputs = {"predict": rng.integers(0, 3, 50), "predict_proba": rng.random((50, 3))}
    for labels in (("setosa", "versicolor", "virginica"), None):
        signature = _signature(labels)
        expected = pd.json_normalize(tensors_to_records(outputs, signature))
        got = answer_table(outputs, signature)
        assert list(got.columns) == list(expected.columns)
        for column in expected.columns:
            assert got[column].tolist() == expected[column].tolist(), column


def test_a_jobs_progress_is_the_part_files_on_disk(tmp_path: Path) -> None:
    job = Job("abc", "iris", "/in.csv", "/out.csv", "csv", "csv", 40, 2, None, tmp_path / "abc",
              rows_total=100)  # fmt: skip
    job.parts.mkdir(parents=True)
    job.save()
    for index in (0, 2):  # chunk 2 is the last one: 20 rows
        job.part(index).write_text("x\n")
    (job.parts / f".{job.part(1).name}.k3j2").write_text("half")  # a write cut short
    loaded = Job.load(job.folder)
    assert loaded.done == {0, 2}
    assert loaded.chunks_total == 3
    assert loaded.rows_done() == 60
    view = loaded.view()
    assert (view.rows_done, view.chunks_done, view.state) == (60, 2, "queued")
