"""The scoring components: model, ensemble and router (with its KServe GJSON conditions)."""

from __future__ import annotations

import copy
import json
import math
import time
from typing import TYPE_CHECKING, Any

import pytest

from nstarx_jupyter.errors import InvalidInputError, ModelError, NstarxError
from nstarx_jupyter.pipelines.component import Batch, Component, Context
from nstarx_jupyter.pipelines.executor import PipelineExecutor
from nstarx_jupyter.pipelines.library.routing import (
    ConditionRouter,
    RouterBranch,
    RouterConfig,
    SplitConfig,
    TrafficSplit,
    gjson_condition,
)
from nstarx_jupyter.pipelines.library.scoring import ModelConfig, ModelScorer, ScoreEnsemble
from nstarx_jupyter.pipelines.palette import components
from nstarx_jupyter.pipelines.spec import PipelineSpec
from nstarx_jupyter.protocol.records import records_to_tensors, tensors_to_records
from nstarx_jupyter.runtimes.loader import create_runtime
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

    from nstarx_jupyter.runtimes.base import Runtime

Rows = list[dict[str, Any]]


def make(
    cls: type[Component[Any]], context: Context | None = None, **config: Any
) -> Component[Any]:
    """A component built the way the executor builds it: from a JSON config."""
    return cls(cls.Config.model_validate(config), context)


def problems(cls: type[Component[Any]], **config: Any) -> list[str]:
    return cls.problems(cls.Config.model_validate(config))


async def run(component: Component[Any], *batches: Batch, port: str = "in") -> dict[str, Any]:
    return await component.run({port: list(batches)})


class FakeResolver:
    """Scores `amount * factor` per model, and remembers what each model was sent."""

    def __init__(self, factors: dict[str, float], extra: int = 0) -> None:
        self.factors = factors
        self.extra = extra
        self.calls: list[tuple[str, Rows]] = []

    async def predict(self, model: str, rows: Rows) -> Rows:
        self.calls.append((model, rows))
        outputs = [{"prediction": row["amount"] * self.factors[model]} for row in rows]
        return outputs + [{"prediction": 0.0}] * self.extra

    def exists(self, model: str) -> bool | None:
        return model in self.factors


class RuntimeResolver:
    """Serves one real runtime the way the server does: records → tensors → records."""

    def __init__(self, uri: str, runtime: Runtime) -> None:
        self.uri, self.runtime = uri, runtime

    async def predict(self, model: str, rows: Rows) -> Rows:
        assert model == self.uri
        signature = self.runtime.metadata()
        tensors = records_to_tensors(rows, signature)
        outputs = self.runtime.predict(tensors, ["predict", "predict_proba"])
        return tensors_to_records(outputs, signature)

    def exists(self, model: str) -> bool | None:
        return model == self.uri


# -- model ---------------------------------------------------------------------------------------


async def test_model_adds_prefixed_outputs_without_touching_the_input_rows() -> None:
    resolver = FakeResolver({"models:/fraud/3": 2.0})
    step = make(ModelScorer, Context(resolver), model="models:/fraud/3", output_prefix="fraud_")
    rows = [{"amount": 10.0, "_trace": "x"}, {"amount": 5.0, "_trace": "y"}]
    before = copy.deepcopy(rows)
    out = (await run(step, Batch(rows, [4, 7])))["out"]
    assert out.index == [4, 7]
    assert out.rows == [
        {"amount": 10.0, "_trace": "x", "fraud_prediction": 20.0},
        {"amount": 5.0, "_trace": "y", "fraud_prediction": 10.0},
    ]
    assert rows == before
    assert resolver.calls == [("models:/fraud/3", [{"amount": 10.0}, {"amount": 5.0}])]


async def test_model_cache_sends_only_rows_it_has_not_answered_lately() -> None:
    resolver = FakeResolver({"models:/fraud/3": 2.0})
    step = make(ModelScorer, Context(resolver), model="models:/fraud/3", cache_size=2,
                cache_ttl_s=60)  # fmt: skip
    first = await run(step, Batch([{"amount": 1.0}, {"amount": 2.0}, {"amount": 1.0}]))
    assert [r["prediction"] for r in first["out"].rows] == [2.0, 4.0, 2.0]
    assert resolver.calls[-1][1] == [{"amount": 1.0}, {"amount": 2.0}]  # a repeat goes once
    again = await run(step, Batch([{"amount": 2.0}, {"amount": 3.0}]))
    assert [r["prediction"] for r in again["out"].rows] == [4.0, 6.0]
    assert resolver.calls[-1][1] == [{"amount": 3.0}]  # 2.0 was answered
    assert len(resolver.calls) == 2
    # Size 2: 1.0 was the least recently used and is gone; after the TTL everything is.
    await run(step, Batch([{"amount": 1.0}]))
    assert resolver.calls[-1][1] == [{"amount": 1.0}]
    assert isinstance(step, ModelScorer)
    cache = step._cache
    assert cache is not None
    later = time.monotonic() + 61
    cache.clock = lambda: later
    await run(step, Batch([{"amount": 1.0}]))
    assert len(resolver.calls) == 4


async def test_model_sends_only_the_listed_features_and_names_a_missing_one() -> None:
    resolver = FakeResolver({"deployment:fraud": 1.0})
    step = make(ModelScorer, Context(resolver), model="deployment:fraud", features=["amount"])
    await run(step, Batch([{"amount": 1.0, "country": "FR"}]))
    assert resolver.calls[0][1] == [{"amount": 1.0}]
    with pytest.raises(InvalidInputError, match="row 3: missing field 'amount'"):
        await run(step, Batch([{"amount": 1.0}, {"country": "FR"}], [2, 3]))


async def test_model_without_a_resolver_says_so() -> None:
    step = make(ModelScorer, Context(), model="models:/fraud/3")
    with pytest.raises(NstarxError, match=r"'models:/fraud/3': .* without a model resolver"):
        await run(step, Batch([{"amount": 1.0}]))


async def test_model_rejects_an_output_count_that_does_not_match() -> None:
    step = make(
        ModelScorer, Context(FakeResolver({"models:/m/1": 1.0}, extra=1)), model="models:/m/1"
    )
    with pytest.raises(ModelError, match="2 outputs for 1 records"):
        await run(step, Batch([{"amount": 1.0}]))


async def test_model_does_not_call_the_resolver_for_an_empty_batch() -> None:
    resolver = FakeResolver({"models:/m/1": 1.0})
    out = await run(make(ModelScorer, Context(resolver), model="models:/m/1"), Batch([]))
    assert len(out["out"]) == 0
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("uri", "valid"),
    [
        ("models:/fraud/3", True),
        ("models:/fraud@champion", True),
        ("deployment:fraud-v2", True),
        ("models:/fraud/Production", False),
        ("models:/fraud", False),
        ("deployment:Fraud_V2", False),
        ("fraud", False),
    ],
)
def test_model_problems_name_a_reference_of_an_unknown_form(uri: str, valid: bool) -> None:
    found = problems(ModelScorer, model=uri)
    assert (found == []) is valid
    if not valid:
        assert "is not a model reference" in found[0]


def test_model_reports_the_model_it_calls() -> None:
    config = ModelConfig.model_validate({"model": "models:/fraud@champion"})
    assert ModelScorer.model_uris(config) == ["models:/fraud@champion"]


async def test_model_serves_a_real_logistic_regression_through_the_records_codec(
    iris_path: Path, iris_model: LogisticRegression, iris_data: tuple[Any, Any]
) -> None:
    runtime = create_runtime(iris_path, "sklearn", {"feature_names": IRIS_FEATURES})
    runtime.load()
    step = make(ModelScorer, Context(RuntimeResolver("models:/iris/1", runtime)),
                model="models:/iris/1", output_prefix="iris_")  # fmt: skip
    x, _ = iris_data
    rows = [dict(zip(IRIS_FEATURES, map(float, x[i]), strict=True)) for i in (0, 60, 120)]
    out = (await run(step, Batch(rows)))["out"]
    assert [r["iris_prediction"] for r in out.rows] == iris_model.predict(x[[0, 60, 120]]).tolist()
    for row, expected in zip(out.rows, iris_model.predict_proba(x[[0, 60, 120]]), strict=True):
        assert list(row["iris_probabilities"]) == ["0", "1", "2"]
        assert list(row["iris_probabilities"].values()) == pytest.approx(expected.tolist())
        assert row["iris_confidence"] == pytest.approx(max(expected))
    assert json.loads(json.dumps(out.rows)) == out.rows  # plain JSON values, no numpy scalars


# -- ensemble ------------------------------------------------------------------------------------


async def test_ensemble_combines_the_members_each_row_has_across_disjoint_subsets() -> None:
    ensemble = make(ScoreEnsemble, members=["a_", "b_"])
    both = Batch([{"id": 0, "a_prediction": 0.2, "b_prediction": 0.4},
                  {"id": 2, "a_prediction": 0.6, "b_prediction": 1.0}], [0, 2])  # fmt: skip
    only_a = Batch([{"id": 1, "a_prediction": 0.9}], [1])
    before = copy.deepcopy([both.rows, only_a.rows])
    out = (await run(ensemble, both, only_a))["out"]
    assert out.index == [0, 1, 2]
    assert [r["id"] for r in out.rows] == [0, 1, 2]
    assert [r["prediction"] for r in out.rows] == pytest.approx([0.3, 0.9, 0.8])
    assert [both.rows, only_a.rows] == before


async def test_ensemble_joins_the_fields_of_a_row_that_arrives_on_two_edges() -> None:
    ensemble = make(ScoreEnsemble, members=["a_", "b_"], method="weighted_mean",
                    weights={"a_": 3.0, "b_": 1.0})  # fmt: skip
    out = await run(ensemble, Batch([{"a_prediction": 1.0}]), Batch([{"b_prediction": 0.0}]))
    assert out["out"].rows == [{"a_prediction": 1.0, "b_prediction": 0.0, "prediction": 0.75}]


async def test_ensemble_reads_one_class_probability_per_member() -> None:
    ensemble = make(ScoreEnsemble, members=["a_", "b_"], score_field="probabilities.1", output="p")
    row = {"a_probabilities": {"0": 0.9, "1": 0.1}, "b_probabilities": {"0": 0.5, "1": 0.5}}
    out = (await run(ensemble, Batch([row])))["out"]
    assert out.rows[0]["p"] == pytest.approx(0.3)


async def test_majority_vote_counts_weighted_votes_and_breaks_ties_by_member_order() -> None:
    vote = make(ScoreEnsemble, members=["a_", "b_", "c_"], method="majority_vote")
    rows: Rows = [
        {"a_prediction": "cat", "b_prediction": "dog", "c_prediction": "dog"},
        {"a_prediction": "cat", "b_prediction": "dog"},
        {"a_prediction": 1, "b_prediction": True, "c_prediction": True},
    ]
    out = (await run(vote, Batch(rows)))["out"].rows
    assert [(r["prediction"], r["confidence"]) for r in out] == [
        ("dog", pytest.approx(2 / 3)),
        ("cat", 0.5),
        (True, pytest.approx(2 / 3)),
    ]
    weighted = make(ScoreEnsemble, members=["a_", "b_", "c_"], method="majority_vote",
                    weights={"a_": 3.0})  # fmt: skip
    assert (await run(weighted, Batch(rows[:1])))["out"].rows[0]["prediction"] == "cat"


async def test_stacking_is_a_logistic_model_over_the_member_scores() -> None:
    stack = make(ScoreEnsemble, members=["a_", "b_"], method="stacking", stacking_coef=[2.0, -1.0],
                 stacking_intercept=0.5)  # fmt: skip
    out = (await run(stack, Batch([{"a_prediction": 1.0, "b_prediction": 3.0}])))["out"]
    assert out.rows[0]["prediction"] == pytest.approx(1 / (1 + math.exp(0.5)))
    with pytest.raises(InvalidInputError, match="row 0: stacking needs every member's score"):
        await run(stack, Batch([{"a_prediction": 1.0}]))


async def test_ensemble_rejects_a_row_without_any_member_score_or_with_a_text_score() -> None:
    ensemble = make(ScoreEnsemble, members=["a_", "b_"])
    with pytest.raises(InvalidInputError, match="row 5: no member score"):
        await run(ensemble, Batch([{"x": 1}], [5]))
    with pytest.raises(InvalidInputError, match="'a_prediction' = 'high' is not a number"):
        await run(ensemble, Batch([{"a_prediction": "high"}]))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"members": ["a_"]}, "an ensemble needs at least two members"),
        ({"members": ["a_", "a_"]}, "member 'a_' is listed twice"),
        ({"members": ["a_", "b_"], "method": "weighted_mean", "weights": {"a_": 1}},
         "member 'b_' has no weight"),
        ({"members": ["a_", "b_"], "weights": {"c_": 1}}, "weight for 'c_', which is not a member"),
        ({"members": ["a_", "b_"], "method": "stacking", "stacking_coef": [1.0]},
         "stacking needs one coefficient per member: 2 members, 1 coefficients"),
    ],
)  # fmt: skip
def test_ensemble_problems(config: dict[str, Any], expected: str) -> None:
    assert expected in problems(ScoreEnsemble, **config)


def test_a_good_ensemble_config_has_no_problems() -> None:
    assert (
        problems(ScoreEnsemble, members=["a_", "b_"], method="stacking", stacking_coef=[1, 2]) == []
    )


# -- router --------------------------------------------------------------------------------------

ROUTES: dict[str, Any] = {
    "branches": [
        {"name": "big", "when": [{"field": "amount", "op": ">", "value": 1000},
                                 {"field": "country", "op": "in", "value": ["US", "CA"]}]},
        {"name": "vip", "when": [{"field": "vip", "op": "==", "value": True}]},
    ],
}  # fmt: skip


async def test_router_sends_each_row_down_the_first_branch_it_matches() -> None:
    router = make(ConditionRouter, **ROUTES)
    rows = [
        {"amount": 5000, "country": "US", "vip": True},  # both match: the first wins
        {"amount": 5000, "country": "FR", "vip": True},
        {"amount": 10, "country": "CA"},
        {"country": "US", "vip": False},  # no amount: "amount > 1000" does not hold
    ]
    out = await run(router, Batch(rows, [10, 11, 12, 13]))
    assert list(out) == ["big", "vip", "default"]
    assert out["big"].index == [10]
    assert out["vip"].index == [11]
    assert out["default"].index == [12, 13]
    assert out["default"].rows[0] is rows[2]  # routed, not copied: a router changes nothing


async def test_router_gives_an_empty_batch_to_a_branch_no_row_takes() -> None:
    out = await run(make(ConditionRouter, **ROUTES, default="rest"), Batch([{"amount": 1}]))
    assert {name: len(batch) for name, batch in out.items()} == {"big": 0, "vip": 0, "rest": 1}


@pytest.mark.parametrize(
    ("op", "value", "amount", "holds"),
    [
        ("==", 5, 5, True), ("!=", 5, 5, False), ("<", 5, 4, True), ("<=", 5, 5, True),
        (">", 5, 5, False), (">=", 5, 5, True), ("in", [1, 5], 5, True),
        ("not in", [1, 5], 5, False), ("not in", [1], None, False), ("exists", None, None, True),
        ("==", "5", 5, False),
    ],
)  # fmt: skip
async def test_router_operators(op: str, value: Any, amount: Any, holds: bool) -> None:
    config: dict[str, Any] = {
        "branches": [{"name": "yes", "when": [{"field": "amount", "op": op, "value": value}]}]
    }
    out = await run(make(ConditionRouter, **config), Batch([{"amount": amount}]))
    assert len(out["yes"]) == int(holds)


async def test_router_names_the_row_whose_value_cannot_be_compared() -> None:
    router = make(ConditionRouter, **ROUTES)
    with pytest.raises(InvalidInputError, match="row 1: field 'amount' = 'lots' cannot be"):
        await run(router, Batch([{"amount": 1}, {"amount": "lots"}]))


def test_router_ports_follow_its_branches() -> None:
    assert ConditionRouter.ports(None)[1] == (("default", "any", False, True),)
    config = RouterConfig.model_validate({**ROUTES, "default": "other"})
    inputs, outputs = ConditionRouter.ports(config)
    assert [port.name for port in inputs] == ["in"]
    assert [(port.name, port.type) for port in outputs] == [
        ("big", "any"), ("vip", "any"), ("other", "any")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"branches": []}, "a router needs at least one branch"),
        ({"branches": [{"name": "a", "when": [{"field": "x", "value": 1}]},
                       {"name": "a", "when": [{"field": "x", "value": 2}]}]},
         "2 branches are named 'a'"),
        ({"branches": [{"name": "default", "when": [{"field": "x", "value": 1}]}]},
         "branch 'default' has the name of the default output"),
        ({"branches": [{"name": "a"}]}, "branch 'a' has no conditions: it takes every row"),
        ({"branches": [{"name": "a", "when": [{"field": "x", "op": "in", "value": 1}]}]},
         "branch 'a': 'x in' needs a list of values"),
        ({"branches": [{"name": "a", "when": [{"field": "x", "op": ">", "value": None}]}]},
         "branch 'a': 'x >' needs a number or a string"),
        ({"branches": [{"name": "a", "when": [{"field": "x", "op": "==", "value": [1]}]}]},
         "branch 'a': 'x ==' compares with one value, not a list"),
    ],
)  # fmt: skip
def test_router_problems(config: dict[str, Any], expected: str) -> None:
    assert expected in problems(ConditionRouter, **config)


@pytest.mark.parametrize(
    ("when", "records", "condition"),
    [
        ([{"field": "amount", "op": ">", "value": 1000}], "instances",
         "instances.#(amount>1000)"),
        ([{"field": "amount", "op": ">", "value": 1000}, {"field": "country", "value": "US"}],
         "instances", 'instances.#(amount>1000)#|#(country=="US")'),
        ([{"field": "country", "op": "in", "value": ["US", "CA"]}], "instances",
         'instances.[#(country=="US")#,#(country=="CA")#]|@flatten|0'),
        ([{"field": "country", "op": "not in", "value": ["US", "CA"]}], "[@this]",
         '[@this].#(country!="US")#|#(country!="CA")'),
        ([{"field": "email", "op": "exists"}, {"field": "vip", "value": True}], "@this",
         "@this.#(email)#|#(vip==true)"),
        ([{"field": "transaction.amount", "op": "<=", "value": 2.5}], "instances",
         "instances.#(transaction.amount<=2.5)"),
        ([{"field": "a=b", "value": 'say "hi"'}], "instances",
         'instances.#(a\\=b=="say \\"hi\\"")'),
    ],
)  # fmt: skip
def test_gjson_condition_renders_kserve_switch_syntax(
    when: list[dict[str, Any]], records: str, condition: str
) -> None:
    branch = RouterBranch.model_validate({"name": "b", "when": when})
    assert gjson_condition(branch, records) == condition


# -- together ------------------------------------------------------------------------------------


async def test_a_router_model_and_ensemble_pipeline_scores_every_row_in_order() -> None:
    """Model a scores every row; rows over 100 also go through model b; the ensemble averages."""
    spec = PipelineSpec.model_validate({
        "name": "fraud",
        "nodes": [
            {"id": "a", "component": "model",
             "config": {"model": "models:/a/1", "output_prefix": "a_"}},
            {"id": "split", "component": "router", "config": {"branches": [
                {"name": "big", "when": [{"field": "amount", "op": ">", "value": 100}]}]}},
            {"id": "b", "component": "model",
             "config": {"model": "models:/b/1", "output_prefix": "b_", "features": ["amount"]}},
            {"id": "mean", "component": "ensemble", "config": {"members": ["a_", "b_"]}},
            {"id": "out", "component": "fields",
             "config": {"fields": {"score": "prediction", "a": "a_prediction"}}},
        ],
        "edges": [
            {"id": "1", "source": "a", "target": "split"},
            {"id": "2", "source": "split", "source_port": "big", "target": "b"},
            {"id": "3", "source": "b", "target": "mean"},
            {"id": "4", "source": "split", "source_port": "default", "target": "mean"},
            {"id": "5", "source": "mean", "target": "out"},
        ],
    })  # fmt: skip
    executor = PipelineExecutor(spec, FakeResolver({"models:/a/1": 1.0, "models:/b/1": 3.0}))
    result = await executor.run([{"amount": 200.0}, {"amount": 10.0}, {"amount": 300.0}])
    assert result.output == [
        {"score": 400.0, "a": 200.0},
        {"score": 10.0, "a": 10.0},
        {"score": 600.0, "a": 300.0},
    ]


def test_scoring_components_are_registered_with_a_described_config() -> None:
    library = components()
    for name, kind in [("model", "model"), ("ensemble", "ensemble"), ("router", "router")]:
        entry = library[name].describe()
        assert entry["kind"] == kind
        assert entry["title"]
        assert entry["description"]
        properties = entry["config_schema"]["properties"]
        assert all(field.get("description") for field in properties.values()), name
        json.dumps(entry)


async def test_split_sends_each_share_of_rows_and_a_key_always_the_same_way() -> None:
    step = make(TrafficSplit, weights={"a": 90, "b": 10}, seed=3)
    rows = [{"user": i % 500} for i in range(10_000)]
    out = await run(step, Batch(rows))
    assert set(out) == {"a", "b"}
    assert 850 <= len(out["b"]) <= 1150  # 10 % of 10,000, give or take three sigma
    assert sorted(out["a"].index + out["b"].index) == list(range(10_000))
    sticky = make(TrafficSplit, weights={"a": 50, "b": 50}, key="user")
    first = await run(sticky, Batch(rows))
    users_a = {row["user"] for row in first["a"].rows}
    assert users_a.isdisjoint(row["user"] for row in first["b"].rows)
    assert 150 <= len(users_a) <= 350
    assert problems(TrafficSplit, weights={"a": 60, "b": 30}) == ["weights add up to 90, not 100"]
    assert "at least two outputs" in problems(TrafficSplit, weights={"a": 100})[0]
    assert [p.name for p in TrafficSplit.ports(SplitConfig.model_validate(
        {"weights": {"x": 50, "y": 50}}))[1]] == ["x", "y"]  # fmt: skip
