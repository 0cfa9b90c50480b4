"""The executor runs the DAG: branches at once, rows rejoined in order, errors named by node."""

from __future__ import annotations

import asyncio

import pytest

from nstarx_jupyter.errors import ErrorKind, InvalidInputError
from nstarx_jupyter.pipelines.component import Batch
from nstarx_jupyter.pipelines.executor import (
    InvalidPipelineError,
    NodeError,
    PipelineExecutor,
    flatten_record,
)
from nstarx_jupyter.pipelines.spec import PipelineSpec

from .helpers import Add, chain


def _run(spec: PipelineSpec, doc: object, trace: bool = False):  # type: ignore[no-untyped-def]
    return asyncio.run(PipelineExecutor(spec).run(doc, trace=trace))


def test_a_chain_runs_in_order_and_a_single_record_gives_one_object() -> None:
    spec = chain(("test-add", {"amount": 1}), ("test-score", {"weight": 10}),
                 ("test-fields", {"fields": ["x", "prediction"]}))  # fmt: skip
    result = _run(spec, {"x": 1})
    assert result.output == {"x": 2, "prediction": 20}
    assert _run(spec, [{"x": 1}, {"x": 2}]).output == [
        {"x": 2, "prediction": 20},
        {"x": 3, "prediction": 30},
    ]
    assert [run.status for run in result.nodes.values()] == ["ok", "ok", "ok"]
    assert all(run.ms >= 0 for run in result.nodes.values())


def _diamond(delay_s: float) -> PipelineSpec:
    """in → two slow branches → ensemble → out."""
    return PipelineSpec.model_validate({
        "name": "d",
        "nodes": [
            {"id": "in", "component": "test-add", "config": {"amount": 0}},
            {"id": "a", "component": "test-add", "config": {"amount": 1, "delay_s": delay_s}},
            {"id": "b", "component": "test-add", "config": {"amount": 2, "delay_s": delay_s}},
            {"id": "pa", "component": "test-score", "config": {"output": "pa"}},
            {"id": "pb", "component": "test-score", "config": {"output": "pb"}},
            {"id": "m", "component": "test-mean"},
            {"id": "out", "component": "test-fields", "config": {"fields": ["pa", "pb", "mean"]}},
        ],
        "edges": [
            {"id": "1", "source": "in", "target": "a"}, {"id": "2", "source": "in", "target": "b"},
            {"id": "3", "source": "a", "target": "pa"}, {"id": "4", "source": "b", "target": "pb"},
            {"id": "5", "source": "pa", "target": "m"}, {"id": "6", "source": "pb", "target": "m"},
            {"id": "7", "source": "m", "target": "out"},
        ],
    })  # fmt: skip


def test_independent_branches_run_at_the_same_time_and_join_row_by_row() -> None:
    Add.most_waiting = 0
    result = _run(_diamond(0.5), [{"x": 1}, {"x": 5}])
    assert Add.most_waiting == 2  # both slow branches waited at once (serially: one at a time)
    assert result.output == [{"pa": 2, "pb": 3, "mean": 2.5}, {"pa": 6, "pb": 7, "mean": 6.5}]


def test_a_router_splits_rows_and_they_meet_again_in_request_order() -> None:
    spec = PipelineSpec.model_validate({
        "name": "r",
        "nodes": [
            {"id": "r", "component": "test-split", "config": {"limit": 2}},
            {"id": "hi", "component": "test-score", "config": {"weight": 100}},
            {"id": "lo", "component": "test-score", "config": {"weight": -1}},
            {"id": "out", "component": "test-fields", "config": {"fields": ["x", "prediction"]}},
        ],
        "edges": [
            {"id": "1", "source": "r", "source_port": "high", "target": "hi"},
            {"id": "2", "source": "r", "source_port": "default", "target": "lo"},
            {"id": "3", "source": "hi", "target": "out"},
            {"id": "4", "source": "lo", "target": "out"},
        ],
    })  # fmt: skip
    result = _run(spec, [{"x": 1}, {"x": 3}, {"x": 2}, {"x": 4}], trace=True)
    assert result.output == [
        {"x": 1, "prediction": -1},
        {"x": 3, "prediction": 300},
        {"x": 2, "prediction": -2},
        {"x": 4, "prediction": 400},
    ]
    assert result.nodes["hi"].rows_in == 2
    assert result.nodes["lo"].rows_in == 2
    assert result.nodes["hi"].preview == {"out": [{"x": 3, "prediction": 300},
                                                  {"x": 4, "prediction": 400}]}  # fmt: skip
    only_low = _run(spec, {"x": 0})
    assert only_low.output == {"x": 0, "prediction": 0}
    assert only_low.nodes["hi"].status == "skipped"


def test_an_error_names_its_node_and_keeps_its_kind() -> None:
    spec = chain(("test-add", {"amount": 0}), ("test-fields", {}))
    with pytest.raises(NodeError) as caught:
        _run(spec, {"x": "boom"})
    assert caught.value.node_id == "n0"
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "node 'n0'" in caught.value.message
    assert "boom" in caught.value.message
    # A bug (not an NstarxError) in a component is INTERNAL, still named.
    with pytest.raises(NodeError) as crashed:
        _run(spec, {"y": 1})
    assert crashed.value.kind is ErrorKind.INTERNAL
    assert "KeyError" in crashed.value.message


def test_an_invalid_pipeline_does_not_run() -> None:
    spec = chain(("test-add", {}), ("test-fields", {}))
    with pytest.raises(InvalidPipelineError) as caught:
        PipelineExecutor(spec)
    assert caught.value.problems[0].id == "n0"
    assert isinstance(caught.value, InvalidInputError)


def test_bad_requests_are_400s() -> None:
    spec = chain(("test-add", {"amount": 1}), ("test-fields", {}))
    for body in ([], "text", [1, 2]):
        with pytest.raises(InvalidInputError):
            _run(spec, body)


def test_dataframes_and_nested_records() -> None:
    pd = pytest.importorskip("pandas")
    spec = chain(("test-add", {"amount": 1}), ("test-fields", {}))
    assert _run(spec, pd.DataFrame({"x": [1, 2]})).output == [{"x": 2}, {"x": 3}]
    assert _run(spec, {"transaction": {"x": 4}}).output == {"x": 5}
    assert flatten_record({"a": {"id": 1}, "b": {"id": 2, "k": 3}}) == {
        "a.id": 1,
        "b.id": 2,
        "k": 3,
    }


def test_batches_merge_by_request_position() -> None:
    left = Batch([{"a": 1}, {"a": 3}], [0, 2])
    right = Batch([{"b": 2}, {"b": 9}], [1, 2])
    merged = Batch.merge([left, right])
    assert merged.index == [0, 1, 2]
    assert merged.rows == [{"a": 1}, {"b": 2}, {"a": 3, "b": 9}]


def test_an_ensemble_at_the_entry_takes_a_kserve_ensemble_answer() -> None:
    """KServe's Ensemble node answers `{"member": answer, ...}`: one batch per member."""
    spec = chain(("test-mean", {}), ("test-fields", {"fields": ["x", "mean"]}))
    single = {"a": {"x": 1, "pa": 2}, "b": {"x": 1, "pb": 4}}
    assert _run(spec, single).output == {"x": 1, "mean": 3}
    lists = {
        "a": [{"x": 1, "pa": 2}, {"x": 2, "pa": 0}],
        "b": [{"x": 1, "pb": 4}, {"x": 2, "pb": 1}],
    }
    assert _run(spec, lists).output == [{"x": 1, "mean": 3}, {"x": 2, "mean": 0.5}]
    assert _run(spec, {"x": 5, "pa": 1}).output == {"x": 5, "mean": 1}  # an ordinary record
