"""KServe InferenceGraphs as the local server runs them: GJSON conditions and the router's rules.

The services are stand-ins that answer what they were sent, so each test shows which body
reached which step (KServe's router passes raw bodies; the integration tests run real models).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.gjson import compile_condition
from nstarx_jupyter.pipelines.inference_graph import GraphRouter, GraphSpec, graph_problems

# The body of KServe's Switch sample (docs/samples/graph/README.md).
SWITCH_BODY = {"source": "client1", "instances": [
    {"name": "blue", "intval": 0, "strval": "kserve"},
    {"name": "green", "intval": 1, "strval": "1red-server1"},
]}  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ("[@this].#(source==client)", False),  # object matching: client1 is not client
        ("[@this].#(source==client1)", True),
        ('[@this].#(source=="client1")', True),
        ("instances.#(intval>10)", False),  # array matching
        ("instances.#(intval>=1)", True),
        ("instances.#(strval%*red-server*)", True),  # pattern matching
        ("instances.#(strval!%*kserve*)", True),
        ("instances.#(strval%red?)", False),
        ("instances.#(intval>10)#", True),  # `#(...)#` is [] at worst, which exists
        ("instances.#(intval>10)#.name", True),
        ("instances.1.name", True),
        ("instances.2.name", False),
        ("instances.#", True),
        ("source.#", False),
        ("instances.#.color", True),
        ("@this", True),
        ("missing", False),
        ("[@this]|@flatten.#(source==client1)#|#(instances)", True),
        ("instances.#(name)", True),
        ("instances.#(color)", False),
        (r"a\.b", False),
    ],
)
def test_a_condition_holds_where_kserves_gjson_finds_the_path(condition: str, holds: bool) -> None:
    assert compile_condition(condition).exists(SWITCH_BODY) is holds


def test_gjson_compares_by_the_values_json_type() -> None:
    rows = {"rows": [{"flag": True, "n": 3, "s": "10"}]}
    assert compile_condition("rows.#(flag==true)").exists(rows)
    assert not compile_condition("rows.#(flag==false)").exists(rows)
    assert compile_condition("rows.#(n<10)").exists(rows)
    assert not compile_condition('rows.#(s<"09")').exists(rows)  # strings compare as strings
    assert compile_condition(r"rows.#(s==1\0)").exists(rows) is False  # escaped: no op in it
    assert compile_condition("rows.#(n==x)").exists({"rows": [{"n": 0}]})  # Go's ParseFloat: 0


@pytest.mark.parametrize(
    ("condition", "named"),
    [
        ("instances.*", "wildcard"),
        ("instances.#(strval%*red*)#|@reverse", "@reverse"),
        ("instances.#(a.#(b==1))", "nested"),
        ("{instances}", "'{'"),
        ("instances.#(flag==~true)", "'~'"),
        ('@flatten:{"deep":true}', "@flatten"),
        ("instances.#(name==blue", "not closed"),
        ("..0", "'.'"),
        ("a..b", "'.'"),
        ("", "never matches"),
    ],
)
def test_a_condition_outside_the_subset_is_refused_by_name(condition: str, named: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        compile_condition(condition)
    assert named in refused.value.message
    if condition:
        assert f"'{condition}'" in refused.value.message


class _Echo:
    """Services that answer `{"by": service, "got": body}`, or a status where told."""

    def __init__(self, statuses: dict[str, int] | None = None) -> None:
        self.statuses = statuses or {}
        self.calls: list[tuple[str, str, Any]] = []

    async def __call__(self, service: str, protocol: str, body: bytes) -> tuple[int, bytes]:
        got = json.loads(body)
        self.calls.append((service, protocol, got))
        if service == "predictor":
            return 200, json.dumps({"predictions": [1, 2]}).encode()
        answer = {"by": service, "got": got}
        return self.statuses.get(service, 200), json.dumps(answer).encode()


def _graph(nodes: dict[str, Any], **protocols: str) -> GraphSpec:
    return GraphSpec.parse({"name": "g", "nodes": nodes, "protocols": protocols})


async def _route(router: GraphRouter, body: Any) -> tuple[int, Any]:
    status, answer = await router.route(json.dumps(body).encode())
    return status, json.loads(answer)


async def test_a_sequence_step_gets_the_request_unless_its_data_is_response() -> None:
    echo = _Echo()
    router = GraphRouter(_graph({"root": {"routerType": "Sequence", "steps": [
        {"serviceName": "a"}, {"serviceName": "b"}, {"serviceName": "c", "data": "$response"},
    ]}}, c="v2"), echo)  # fmt: skip
    status, answer = await _route(router, {"x": 1})
    assert status == 200
    assert [call[2] for call in echo.calls[:2]] == [{"x": 1}, {"x": 1}]  # no data: $request
    assert answer == {"by": "c", "got": {"by": "b", "got": {"x": 1}}}
    assert [call[1] for call in echo.calls] == ["v1", "v1", "v2"]


async def test_map_predictions_to_instances_keeps_only_the_instances() -> None:
    echo = _Echo()
    router = GraphRouter(_graph({"root": {"routerType": "Sequence", "steps": [
        {"serviceName": "predictor"},
        {"serviceName": "b", "data": "$response", "mapPredictionsToInstances": True},
    ]}}), echo)  # fmt: skip
    assert await _route(router, {"x": 1}) == (200, {"by": "b", "got": {"instances": [1, 2]}})


async def test_a_hard_step_that_fails_stops_the_sequence_and_a_soft_one_does_not() -> None:
    steps = [{"serviceName": "a", "dependency": "Hard"}, {"serviceName": "b"}]
    hard = GraphRouter(_graph({"root": {"routerType": "Sequence", "steps": steps}}),
                       _Echo({"a": 503}))  # fmt: skip
    status, answer = await _route(hard, {})
    assert (status, answer["by"]) == (503, "a")
    soft = GraphRouter(_graph({"root": {"routerType": "Sequence", "steps": [
        {"serviceName": "a"}, {"serviceName": "b"}]}}), _Echo({"a": 503}))  # fmt: skip
    assert await _route(soft, {}) == (200, {"by": "b", "got": {}})


async def test_a_sequence_condition_tests_the_last_answer_and_stops_where_it_fails() -> None:
    echo = _Echo()
    router = GraphRouter(_graph({"root": {"routerType": "Sequence", "steps": [
        {"serviceName": "a"}, {"serviceName": "b", "condition": "got.go"},
        {"serviceName": "c", "condition": "by"},
    ]}}), echo)  # fmt: skip
    assert await _route(router, {"go": 1}) == (200, {"by": "c", "got": {"go": 1}})
    echo.calls.clear()
    assert await _route(router, {"stop": 1}) == (200, {"by": "a", "got": {"stop": 1}})
    assert [call[0] for call in echo.calls] == ["a"]


async def test_a_switch_takes_the_first_match_and_answers_404_for_none() -> None:
    echo = _Echo()
    router = GraphRouter(_graph({"root": {"routerType": "Switch", "steps": [
        {"serviceName": "never"},  # no condition: gjson.Get(body, "") never exists
        {"serviceName": "red", "condition": "instances.#(strval%*red-server*)"},
        {"serviceName": "all", "condition": "@this"},
    ]}}), echo)  # fmt: skip
    assert (await _route(router, SWITCH_BODY))[1]["by"] == "red"
    assert (await _route(router, {"instances": []}))[1]["by"] == "all"
    empty = GraphRouter(_graph({"root": {"routerType": "Switch", "steps": [
        {"serviceName": "a", "condition": "x"}]}}), echo)  # fmt: skip
    status, answer = await _route(empty, {"y": 1})
    assert status == 404
    assert answer == {"error": "Failed to process request",
                      "cause": "None of the routes matched with the switch condition"}  # fmt: skip
    assert (await empty.route(b"not json"))[0] == 404
    nested = GraphRouter(_graph({
        "root": {"routerType": "Sequence", "steps": [{"nodeName": "pick"}]},
        "pick": {"routerType": "Switch", "steps": [{"serviceName": "a", "condition": "x"}]},
    }), echo)  # fmt: skip
    status, answer = await _route(nested, {"y": 1})
    assert status == 500  # KServe: an inner node's error fails the step, and the graph with 500
    assert "None of the routes matched" in answer["cause"]


async def test_an_ensemble_merges_answers_by_step_name_or_index() -> None:
    echo = _Echo()
    router = GraphRouter(_graph({
        "root": {"routerType": "Ensemble", "steps": [
            {"serviceName": "a", "name": "first"}, {"nodeName": "inner"}]},
        "inner": {"routerType": "Sequence", "steps": [{"serviceName": "b"}]},
    }), echo)  # fmt: skip
    assert await _route(router, {"x": 1}) == (200, {
        "first": {"by": "a", "got": {"x": 1}}, "1": {"by": "b", "got": {"x": 1}}})  # fmt: skip
    hard = GraphRouter(_graph({"root": {"routerType": "Ensemble", "steps": [
        {"serviceName": "a"}, {"serviceName": "b", "dependency": "Hard"}]}}),
        _Echo({"a": 500, "b": 429}))  # fmt: skip
    status, answer = await _route(hard, {})
    assert (status, answer["by"]) == (429, "b")  # a soft failure is merged, a hard one wins


async def test_a_splitter_picks_by_weight() -> None:
    echo = _Echo()
    steps = [{"serviceName": "a", "weight": 0}, {"serviceName": "b", "weight": 100}]
    router = GraphRouter(_graph({"root": {"routerType": "Splitter", "steps": steps}}), echo)
    for _ in range(50):
        assert (await _route(router, {}))[1]["by"] == "b"


@pytest.mark.parametrize(
    ("nodes", "field", "message"),
    [
        ({"first": {"routerType": "Sequence", "steps": [{"serviceName": "a"}]}},
         "spec.nodes", "'root'"),
        ({"root": {"routerType": "Loop", "steps": [{"serviceName": "a"}]}},
         "spec.nodes.root.routerType", "'Loop'"),
        ({"root": {"routerType": "Sequence", "steps": [{"serviceUrl": "http://x/predict"}]}},
         "spec.nodes.root.steps[0].serviceUrl", "serviceName"),
        ({"root": {"routerType": "Sequence", "steps": [{"nodeName": "nowhere"}]}},
         "spec.nodes.root.steps[0].nodeName", "no node 'nowhere'"),
        ({"root": {"routerType": "Sequence", "steps": [{"serviceName": "a", "data": "$reponse"}]}},
         "spec.nodes.root.steps[0].data", "$reponse"),
        ({"root": {"routerType": "Switch", "steps": [{"serviceName": "a", "condition": "a.*"}]}},
         "spec.nodes.root.steps[0].condition", "wildcard"),
        ({"root": {"routerType": "Splitter", "steps": [{"serviceName": "a", "weight": 60}]}},
         "spec.nodes.root", "not 60"),
        ({"root": {"routerType": "Sequence", "steps": [{"nodeName": "b"}]},
          "b": {"routerType": "Sequence", "steps": [{"nodeName": "root"}]}},
         "spec.nodes", "root -> b -> root"),
        ({"root": {"routerType": "Sequence", "steps": []}}, "spec.nodes.root.steps", "one step"),
    ],
)  # fmt: skip
def test_a_graph_that_cannot_run_here_names_the_field(
    nodes: dict[str, Any], field: str, message: str
) -> None:
    problems = graph_problems(_graph(nodes))
    assert problems, nodes
    where, why = problems[0]
    assert where == field
    assert message in why
    with pytest.raises(InvalidInputError, match=re.escape(f"inferencegraph/g: {field}: ")):
        GraphRouter(_graph(nodes), _Echo())
