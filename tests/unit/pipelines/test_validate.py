"""The validator reports every problem at once, each on the node or edge to mark."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.spec import PipelineSpec
from nstarx_jupyter.pipelines.validate import Problem, topological_order, validate

from .helpers import chain

ADD = ("test-add", {"amount": 1})


def _spec(
    nodes: list[dict[str, Any]], edges: list[tuple[str, str] | dict[str, Any]]
) -> PipelineSpec:
    docs = []
    for i, edge in enumerate(edges):
        docs.append(edge if isinstance(edge, dict) else {"id": f"e{i}", "source": edge[0],
                                                          "target": edge[1]})  # fmt: skip
    return PipelineSpec.model_validate({"name": "p", "nodes": nodes, "edges": docs})


def _codes(problems: list[Problem]) -> set[tuple[str | None, str]]:
    return {(p.id, p.code) for p in problems}


def test_a_straight_pipeline_is_valid() -> None:
    spec = chain(ADD, ("test-score", {}), ("test-fields", {}))
    assert validate(spec) == []


def test_every_problem_is_reported_at_once() -> None:
    spec = _spec(
        [
            {"id": "a", "component": "test-add", "config": {}},  # amount missing
            {"id": "b", "component": "no-such-thing"},
            {"id": "c", "component": "test-score", "config": {"weight": "heavy"}},
            {"id": "d", "component": "test-fields"},
        ],
        [("a", "c"), ("c", "d"), ("b", "d"), ("d", "a"), ("a", "ghost")],
    )
    codes = _codes(validate(spec))
    assert ("a", "missing-config") in codes
    assert ("b", "unknown-component") in codes
    assert ("c", "invalid-config") in codes
    assert ("e4", "dangling-edge") in codes
    assert ("e3", "incompatible-ports") in codes  # a formatter's response feeds nothing


def test_cycles_are_marked_on_their_edges() -> None:
    spec = _spec(
        [{"id": n, "component": "test-add", "config": {"amount": 1}} for n in "abcd"]
        + [{"id": "out", "component": "test-fields"}],
        [("a", "b"), ("b", "c"), ("c", "b"), ("c", "out"), ("d", "d")],
    )
    problems = validate(spec)
    cycle = {p.id for p in problems if p.code == "cycle"}
    assert cycle == {"e1", "e2", "e4"}
    assert any("b → c → b" in p.message for p in problems)


def test_one_input_and_one_output() -> None:
    spec = _spec(
        [{"id": n, "component": "test-add", "config": {"amount": 1}} for n in ("a", "b")]
        + [{"id": "s", "component": "test-score"}, {"id": "t", "component": "test-score"}],
        [("a", "s"), ("b", "s"), ("a", "t")],
    )
    codes = _codes(validate(spec))
    assert ("b", "several-inputs") in codes
    assert ("t", "several-outputs") in codes


def test_ports_must_exist_and_match() -> None:
    spec = _spec(
        [
            {"id": "r", "component": "test-split"},
            {"id": "s", "component": "test-score"},
            {"id": "f", "component": "test-fields"},
        ],
        [{"id": "x", "source": "r", "source_port": "nope", "target": "s"},
         {"id": "y", "source": "s", "target": "f", "target_port": "side"}],
    )  # fmt: skip
    messages = {p.id: p.message for p in validate(spec)}
    assert "has no output 'nope'" in messages["x"]
    assert "'high'" in messages["x"]
    assert "has no input 'side'" in messages["y"]


def test_a_router_needs_its_default_branch_and_every_branch_connected() -> None:
    spec = _spec(
        [
            {"id": "r", "component": "test-split"},
            {"id": "s", "component": "test-score"},
            {"id": "f", "component": "test-fields"},
        ],
        [{"id": "h", "source": "r", "source_port": "high", "target": "s"}, ("s", "f")],
    )
    assert ("r", "router-default") in _codes(validate(spec))


def test_an_ensemble_needs_two_inputs() -> None:
    spec = chain(ADD, ("test-score", {}), ("test-mean", {}), ("test-fields", {}))
    assert ("n2", "ensemble-members") in _codes(validate(spec))


def test_unknown_models_are_reported_when_the_caller_can_tell() -> None:
    from nstarx_jupyter.pipelines.palette import component_class

    score = component_class("test-score")
    original = score.model_uris
    try:
        score.model_uris = classmethod(lambda cls, c: ["models:/nope/1"])  # type: ignore[method-assign,assignment]
        spec = chain(ADD, ("test-score", {}), ("test-fields", {}))
        assert ("n1", "unknown-model") in _codes(validate(spec, model_exists=lambda uri: False))
        assert validate(spec, model_exists=lambda uri: None) == []
    finally:
        score.model_uris = original  # type: ignore[method-assign]


def test_duplicates_and_empty() -> None:
    assert _codes(validate(PipelineSpec(name="p"))) == {(None, "empty")}
    spec = _spec([{"id": "a", "component": "test-add", "config": {"amount": 1}}] * 2, [])
    assert ("a", "duplicate-id") in _codes(validate(spec))


def test_a_malformed_document_is_a_clear_400() -> None:
    with pytest.raises(InvalidInputError, match=r"nodes\.0\.id"):
        PipelineSpec.parse({"name": "p", "nodes": [{"id": "bad id!", "component": "x"}]})
    with pytest.raises(InvalidInputError, match="name"):
        PipelineSpec.parse('{"name": "Not A Name"}')


# -- properties: random DAGs and random edits -------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> PipelineSpec:
    """A valid pipeline: a chain through every node plus random forward shortcuts."""
    size = draw(st.integers(3, 25))
    add = {"component": "test-add", "config": {"amount": 1}}
    nodes = [{"id": f"n{i}", **add} for i in range(size - 1)]
    nodes.append({"id": f"n{size - 1}", "component": "test-fields"})
    edges = [(f"n{i}", f"n{i + 1}") for i in range(size - 1)]
    pairs = st.tuples(st.integers(0, size - 2), st.integers(1, size - 1)).filter(
        lambda p: p[0] < p[1] - 1
    )
    for a, b in draw(st.lists(pairs, max_size=size, unique=True)):
        edges.append((f"n{a}", f"n{b}"))
    return _spec(nodes, list(edges))


@settings(max_examples=60, deadline=None)
@given(dags())
def test_random_dags_are_valid(spec: PipelineSpec) -> None:
    assert validate(spec) == []
    order = topological_order([n.id for n in spec.nodes], spec.edges)
    position = {node: i for i, node in enumerate(order)}
    assert all(position[e.source] < position[e.target] for e in spec.edges)


EXPECTED = {  # the problem an edit must cause: (code, id)
    "back-edge": ("cycle", "back"),
    "bad-config": ("invalid-config", "n0"),
    "dangle": ("dangling-edge", "dangle"),
}


def _edit(doc: dict[str, Any], edit: str, data: st.DataObject) -> None:
    ids = [n["id"] for n in doc["nodes"]]
    if edit == "drop-edge":
        doc["edges"].pop(data.draw(st.integers(0, len(doc["edges"]) - 1)))
    elif edit == "back-edge":
        pair = st.lists(st.integers(0, len(ids) - 2), min_size=2, max_size=2, unique=True)
        a, b = sorted(data.draw(pair))
        doc["edges"].append({"id": "back", "source": ids[b], "target": ids[a]})
    elif edit == "drop-node":
        gone = ids[data.draw(st.integers(0, len(ids) - 1))]
        doc["nodes"] = [n for n in doc["nodes"] if n["id"] != gone]
    elif edit == "bad-config":
        doc["nodes"][0]["config"] = {"amount": "lots"}
    else:
        doc["edges"].append({"id": "dangle", "source": ids[0], "target": "nowhere"})


@settings(max_examples=80, deadline=None)
@given(dags(), st.data())
def test_random_edits_give_problems_that_point_at_real_things(
    spec: PipelineSpec, data: st.DataObject
) -> None:
    doc = spec.model_dump()
    edit = data.draw(st.sampled_from(["drop-edge", "back-edge", "drop-node", *EXPECTED]))
    _edit(doc, edit, data)
    edited = PipelineSpec.model_validate(doc)
    problems = validate(edited)
    ids = {"node": {n.id for n in edited.nodes}, "edge": {e.id for e in edited.edges}}
    for problem in problems:
        assert problem.message
        assert problem.id in ids.get(problem.target, {None})
    if edit in EXPECTED:
        assert EXPECTED[edit] in {(p.code, p.id) for p in problems}
