"""The traffic router: exact splits, sticky callers, header and region rules; the spec's checks."""

from __future__ import annotations

import ipaddress
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nstarx_jupyter.deployment.spec import DeploymentSpec, Traffic
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.serving.traffic import Arm, Router, TrafficPlan, agree


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
