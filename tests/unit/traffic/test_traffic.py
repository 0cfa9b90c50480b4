"""Traffic decisions: exact splits, sticky callers, header and region rules, fallbacks, shadows,
the traffic table; the spec's checks."""

from __future__ import annotations

import ipaddress
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nstarx_jupyter.deployment.spec import DeploymentSpec, Traffic
from nstarx_jupyter.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelError,
    NotFoundError,
    UnavailableError,
)
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
from nstarx_jupyter.traffic import (
    SHADOW_IN_FLIGHT,
    Arm,
    Router,
    ShadowStats,
    TrafficPlan,
    TrafficTable,
    agree,
    decisions,
    fallback_reason,
)


def _two(percent: float) -> Router:
    return Router(TrafficPlan((Arm("1", 100 - percent, "stable"), Arm("2", percent, "canary"))))


def test_ten_thousand_requests_at_ten_percent_land_in_880_to_1120() -> None:
    router = _two(10)
    counts = Counter(router.choose().version for _ in range(10_000))
    assert 880 <= counts["2"] <= 1120
    assert counts["1"] + counts["2"] == 10_000


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(0, 100), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
    n=st.integers(1, 5_000),
)
def test_any_run_of_requests_follows_the_weights_within_a_few_requests(
    weights: list[int], n: int
) -> None:
    router = Router(TrafficPlan(tuple(Arm(str(i), w, str(i)) for i, w in enumerate(weights))))
    counts = Counter(router.choose().version for _ in range(n))
    total = sum(weights)
    for i, weight in enumerate(weights):
        assert abs(counts[str(i)] - n * weight / total) <= 4, (weights, n, counts)
    assert all(counts[str(i)] == 0 for i, w in enumerate(weights) if w == 0)


def test_a_caller_with_a_routing_key_always_sees_one_variant() -> None:
    plan = TrafficPlan((Arm("a", 90, "a"), Arm("b", 10, "b")), sticky_header="x-user-id")
    router = Router(plan)
    seen = {f"user-{i}": router.choose({"x-user-id": f"user-{i}"}).version for i in range(10_000)}
    for user in list(seen)[:500]:
        for _ in range(3):
            choice = router.choose({"x-user-id": user})
            assert (choice.version, choice.reason) == (seen[user], "sticky")
    assert 880 <= Counter(seen.values())["b"] <= 1120  # users, not requests, are split


def test_header_rules_then_regions_then_the_split() -> None:
    plan = TrafficPlan(
        (Arm("1", 100, "primary"),),
        rules=(("x-tier", frozenset({"gold", "platinum"}), "vip"),),
        regions={"eu": "eu-model", "us": "us-model"},
        networks=(
            (ipaddress.ip_network("10.1.0.0/16"), "eu"),
            (ipaddress.ip_network("10.0.0.0/8"), "us"),
        ),
    )
    router = Router(plan)
    assert router.choose({"x-tier": "gold", "x-region": "eu"}).version == "vip"
    assert router.choose({"x-region": "us"}, "10.1.2.3").version == "us-model"  # header first
    assert router.choose({}, "10.1.2.3").version == "eu-model"  # most specific network
    assert router.choose({}, "10.9.0.1").version == "us-model"
    assert router.choose({}, "192.168.0.1") == router.choose({}, "::1")  # no region: the split
    assert router.choose({"x-region": "mars"}).reason == "split"
    assert router.choose({}, "not-an-address").version == "1"


def test_a_zero_weight_arm_gets_nothing() -> None:
    router = _two(0)
    assert {router.choose().version for _ in range(1000)} == {"1"}
    router = _two(100)
    assert {router.choose().version for _ in range(1000)} == {"2"}


def test_shadow_agreement_compares_shared_outputs() -> None:
    a = {"predict": np.array([0, 1, 2]), "predict_proba": np.array([[0.2, 0.8]])}
    assert agree(a, {"predict": np.array([0, 1, 2])})
    assert not agree(a, {"predict": np.array([0, 1, 1])})
    assert agree({"y": np.array([0.1, 0.2])}, {"y": np.array([0.1, 0.2 + 1e-12])})
    assert not agree({"y": np.array([0.1])}, {"z": np.array([0.1])})  # nothing to compare
    assert not agree({"y": np.array([0.1, 0.2])}, {"y": np.array([0.1])})


def test_the_fallback_answers_for_the_variants_failures_not_the_callers() -> None:
    assert fallback_reason(TimeoutError()) == "timeout"
    assert fallback_reason(UnavailableError("down")) == "unavailable"
    assert fallback_reason(ModelError("crashed")) == "internal"
    assert fallback_reason(DeadlineExceededError("slow")) == "deadline_exceeded"
    assert fallback_reason(InvalidInputError("bad row")) is None  # would fail there too
    assert fallback_reason(NotFoundError("no such model")) is None
    assert fallback_reason(ValueError("not ours")) is None


def test_a_slow_shadow_gets_copies_dropped_not_queued() -> None:
    stats = ShadowStats()
    assert all(stats.admit() for _ in range(SHADOW_IN_FLIGHT))
    assert not stats.admit()
    assert (stats.in_flight, stats.dropped) == (SHADOW_IN_FLIGHT, 1)
    stats.in_flight -= 1  # one copy answered
    assert stats.admit()


def test_the_shadow_is_compared_on_the_live_answers_decisions() -> None:
    spec = TensorSpec("predict", "INT64", (-1,))
    proba = TensorSpec("predict_proba", "FP64", (-1, 2))
    signature = ModelSignature("sklearn", (), (spec, proba), default_outputs=("predict",))
    live = {"predict": np.array([1]), "predict_proba": np.array([[0.3, 0.7]])}
    assert list(decisions(signature, live)) == ["predict"]
    assert list(decisions(ModelSignature("sklearn", (), (spec, proba)), live)) == list(live)


def test_a_request_log_outlives_a_new_plan_and_goes_with_the_plan() -> None:
    table = TrafficTable()
    one = TrafficPlan((Arm("1", 100, "primary"),), shadow="2")
    table.set("iris", one)
    log, shadow = table.logs["iris"], table.shadows["iris"]
    log.answered("r1", "1", 0.01, {"predict": np.array([2])})
    assert log.feedback("r1", label=2).outcome == 1.0
    table.set("iris", TrafficPlan((Arm("1", 50, "primary"), Arm("2", 50, "b"))))
    assert table.logs["iris"] is log  # feedback still finds the requests before the change
    assert "iris" not in table.shadows  # no shadow in the new plan
    table.set("iris", one)
    assert table.shadows["iris"] is not shadow
    assert table.plan("iris") is one
    table.set("iris", None)
    assert (table.plan("iris"), table.logs, table.shadows) == (None, {}, {})


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ({"split": {"primary": 50, "b": 50}}, "'b' is not a variant"),
        (
            {"variants": [{"name": "b", "storage_uri": "m"}], "split": {"primary": 50, "b": 40}},
            "add up to 90",
        ),
        ({"networks": {"10.0.0.0/33": "eu"}}, "not a network"),
        (
            {
                "variants": [{"name": "b", "storage_uri": "m"}],
                "regions": {"us": "b"},
                "networks": {"10.0.0.0/8": "eu"},
            },
            "region 'eu' has no variant",
        ),
        ({"variants": [{"name": "primary", "storage_uri": "m"}]}, "not a variant name"),
        (
            {"variants": [{"name": "b", "storage_uri": "m"}, {"name": "b", "storage_uri": "n"}]},
            "each name may appear once",
        ),
        (
            {"variants": [{"name": "b", "storage_uri": "m"}], "shadow": "b", "fallback": "b"},
            "different variants",
        ),
        (
            {"rules": [{"header": "x tier", "values": ["a"], "variant": "primary"}]},
            "not an HTTP header",
        ),
    ],
)
def test_the_spec_names_what_is_wrong_with_a_traffic_policy(
    traffic: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        DeploymentSpec.build(name="iris", storage_uri="/m", traffic=traffic)


def test_headers_in_a_policy_are_lower_cased() -> None:
    traffic = Traffic.model_validate({"sticky_header": "X-User-Id",
                                      "rules": [{"header": "X-Tier", "values": ["gold"],
                                                 "variant": "primary"}]})  # fmt: skip
    assert traffic.sticky_header == "x-user-id"
    assert traffic.rules[0].header == "x-tier"
