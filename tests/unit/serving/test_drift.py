"""Drift statistics (`monitoring.drift`) and the per-deployment monitor (`serving.drift`).

Fixed seeds throughout. The false-positive test runs 100 unshifted deployments through the whole
monitor (ring, per-minute reservoirs, tests with the Bonferroni correction): measured 1 of 100
flagged (nominal at most 1 %: alpha = 0.01 over the whole report); it asserts at most 3.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from scipy.stats import ks_2samp

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.monitoring.drift import Column, Thresholds, compare, histograms, psi
from nstarx_jupyter.registry.stats import sample_rows, summarize
from nstarx_jupyter.serving.drift import (
    FIRST_WINDOW_ROWS,
    ROWS_PER_MINUTE,
    DriftHub,
    Reference,
)
from nstarx_jupyter.serving.drift_api import window_seconds

if TYPE_CHECKING:
    from pathlib import Path

NUMERIC = ["a", "b", "c", "d", "e"]
COLOURS = np.asarray(["red", "green", "blue"], dtype=object)
SHARES = [0.5, 0.3, 0.2]


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _reference(rng: np.random.Generator, rows: int = 1000) -> dict[str, Any]:
    columns: dict[str, list[Any]] = {n: rng.normal(size=rows).tolist() for n in NUMERIC}
    columns["colour"] = rng.choice(COLOURS, rows, p=SHARES).tolist()
    return {"columns": columns, "predictions": rng.normal(size=rows).tolist()}


def _send(
    hub: DriftHub,
    clock: Clock,
    rng: np.random.Generator,
    requests: int,
    *,
    shift: dict[str, float] | None = None,
    shares: list[float] | None = None,
) -> None:
    """`requests` one-row requests a second apart; features as named 1-D input tensors."""
    shift = shift or {}
    for _ in range(requests):
        inputs = {n: np.asarray([rng.normal() + shift.get(n, 0.0)]) for n in NUMERIC}
        inputs["colour"] = np.asarray([rng.choice(COLOURS, p=shares or SHARES).encode()],
                                      dtype=object)  # fmt: skip
        hub.tap("m", inputs, {"predict": np.asarray([rng.normal()])})
        clock.now += 1.0


def _hub(tmp_path: Path, rng: np.random.Generator) -> tuple[DriftHub, Clock]:
    clock = Clock()
    hub = DriftHub(tmp_path, clock=clock)
    hub.monitor("m").set_reference(Reference.parse(_reference(rng)))
    return hub, clock


# -- the statistics --------------------------------------------------------------------------


def test_psi_is_zero_for_the_same_sample_and_large_for_a_one_sd_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-9)
    assert psi(ref, rng.normal(size=5000)) < 0.02
    assert psi(ref, rng.normal(1.0, size=5000)) > 0.5  # about 1 for a 1 SD shift


def test_ks_row_is_scipys_ks_2samp_and_bonferroni_sets_the_threshold() -> None:
    rng = np.random.default_rng(1)
    ref, live = rng.normal(size=800), rng.normal(0.2, size=300)
    result = compare({"x": Column.of(ref), "y": Column.of(ref)},
                     {"x": Column.of(live), "y": Column.of(live)})  # fmt: skip
    ks = next(t for t in result.tests if t.feature == "x" and t.test == "ks")
    expected = ks_2samp(ref, live)
    assert ks.statistic == pytest.approx(expected.statistic)
    assert ks.p_value == pytest.approx(expected.pvalue)
    assert ks.threshold == pytest.approx(0.01 / 2)  # two p-value tests in the report
    assert ks.drifted == (expected.pvalue < 0.005)


def test_categorical_shift_is_flagged_by_chi2_and_js() -> None:
    rng = np.random.default_rng(2)
    ref = Column.of(rng.choice(COLOURS, 1000, p=SHARES))
    same = compare({"c": ref}, {"c": Column.of(rng.choice(COLOURS, 400, p=SHARES))})
    moved = compare({"c": ref}, {"c": Column.of(rng.choice(COLOURS, 400, p=[0.2, 0.3, 0.5]))})
    assert [t.test for t in moved.tests] == ["chi2", "js"]
    assert all(t.drifted for t in moved.tests)
    assert not any(t.drifted for t in same.tests)
    assert moved.score is not None
    assert moved.score > 1 > (same.score or 0)


def test_missing_rate_change_is_tested_only_where_values_are_missing() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=1000)
    live = rng.normal(size=400)
    assert [t.test for t in compare({"x": Column.of(ref)}, {"x": Column.of(live)}).tests] == [
        "psi", "ks"]  # fmt: skip
    live[:80] = np.nan  # 20 % missing now, none before
    found = next(t for t in compare({"x": Column.of(ref)}, {"x": Column.of(live)}).tests
                 if t.test == "missing")  # fmt: skip
    assert found.statistic == pytest.approx(0.2)
    assert found.drifted
    assert found.p_value is not None
    assert found.p_value < 1e-10


def test_scores_below_min_rows_do_not_flag_but_p_values_still_do() -> None:
    rng = np.random.default_rng(4)
    ref = Column.of(rng.normal(size=1000))
    small = compare({"x": ref}, {"x": Column.of(rng.normal(1.0, size=60))})
    by_test = {t.test: t for t in small.tests}
    assert by_test["psi"].score > 0.2
    assert not by_test["psi"].drifted
    assert by_test["ks"].drifted
    loose = compare({"x": ref}, {"x": Column.of(rng.normal(1.0, size=60))},
                    thresholds=Thresholds(min_rows=10))  # fmt: skip
    assert {t.test: t.drifted for t in loose.tests}["psi"]


def test_text_in_a_numeric_feature_counts_as_missing_and_every_number_is_json() -> None:
    ref = Column.of([1.5, 2.5, 3.5, 4.5] * 50)
    result = compare({"x": ref}, {"x": Column.of(["oops", 2.5, None, 3.5] * 50)})
    assert {t.test for t in result.tests} == {"psi", "ks", "missing"}
    text = json.dumps(result.to_json(), allow_nan=False)  # no NaN, no inf
    assert "missing" in text


def test_histograms_share_bins_between_reference_and_live() -> None:
    rng = np.random.default_rng(5)
    shown = histograms(Column.of(rng.normal(size=500)), Column.of(rng.normal(size=200)), bins=8)
    assert len(shown["edges"]) == 9
    assert len(shown["reference"]) == len(shown["live"]) == 8
    assert sum(shown["reference"]) == pytest.approx(1.0)
    cats = histograms(Column.of(["a", "b"] * 10), Column.of(["a", "c"] * 10))
    assert cats["categories"] == ["a", "b", "(other)"]
    assert cats["live"] == [0.5, 0.0, 0.5]


def test_registry_summary_keeps_a_seeded_bounded_plain_json_sample() -> None:
    rng = np.random.default_rng(6)
    data = rng.normal(size=(3000, 2))
    data[0, 0] = np.nan
    doc = summarize(data, ["x", "y"])
    again = summarize(data, ["x", "y"])
    assert doc["sample"]["rows"] == 1000 == len(doc["sample"]["columns"]["x"])
    assert doc["sample"] == again["sample"]  # seeded
    json.dumps(doc, allow_nan=False)
    small = sample_rows([[1, "a"], [None, "b"]], ["n", "s"])
    assert small["columns"] == {"n": ["1", None], "s": ["a", "b"]}  # an object array: strings
    assert Reference.parse(doc).columns.keys() == {"x", "y"}  # a summary is a reference too


# -- the monitor -----------------------------------------------------------------------------


def test_a_one_sd_shift_is_flagged_within_one_window_and_unshifted_features_are_not(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(7)
    hub, clock = _hub(tmp_path, rng)
    _send(hub, clock, rng, 600, shift={"a": 1.0})  # ten minutes: within the 15-minute window
    report = hub.report("m", 900)
    assert report["drifted"] == ["a"]
    assert report["status"] == "drift"
    assert report["rows"] == 600  # 60 a minute, under the 120 kept per minute
    assert {t["test"] for t in report["features"] if t["feature"] == "a" and t["drifted"]} == {
        "psi", "ks"}  # fmt: skip
    assert report["score"] > 1
    assert set(report["histograms"]) == {*NUMERIC, "colour", "prediction"}


def test_false_positive_rate_over_100_unshifted_deployments(tmp_path: Path) -> None:
    """Measured: 1 of 100 unshifted runs flagged (5 numeric, 1 categorical feature and the
    prediction; 300 live rows against 1,000 reference rows each). Bound asserted: 3 %."""
    flagged = 0
    for run in range(100):
        rng = np.random.default_rng(1000 + run)
        hub, clock = _hub(tmp_path / str(run), rng)
        _send(hub, clock, rng, 300)
        flagged += bool(hub.report("m", 900)["drifted"])
    assert flagged <= 3, f"{flagged} of 100 unshifted runs flagged"


def test_a_categorical_input_shift_is_flagged(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    hub, clock = _hub(tmp_path, rng)
    _send(hub, clock, rng, 400, shares=[0.2, 0.3, 0.5])
    assert hub.report("m", 900)["drifted"] == ["colour"]


def test_a_2d_input_is_named_by_the_reference_and_batches_are_sampled(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    clock = Clock()
    hub = DriftHub(tmp_path, clock=clock)
    hub.monitor("m").set_reference(
        Reference.parse(
            {"columns": {"x": rng.normal(size=500).tolist(), "y": rng.normal(size=500).tolist()}}
        )
    )
    for _ in range(10):
        hub.tap("m", {"input-0": rng.normal(size=(100, 2))}, {"out": np.zeros((100, 3))})
    report = hub.report("m", 60)
    assert report["rows"] == ROWS_PER_MINUTE  # 10 x 32 rows offered, 120 kept in the minute
    assert report["seen"] == 320
    assert {t["feature"] for t in report["features"]} == {"x", "y"}  # 3 outputs: no prediction


def test_reference_survives_a_restart_and_the_window_moves_on(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    hub, clock = _hub(tmp_path, rng)
    _send(hub, clock, rng, 300, shift={"b": 1.0})
    assert hub.report("m", 600)["drifted"] == ["b"]
    again = DriftHub(tmp_path, clock=clock)  # a new server on the same state folder
    assert again.monitor("m").reference is not None
    assert again.report("m", 600)["status"] == "no traffic"  # live rows are not persisted
    clock.now += 3600
    _send(hub, clock, rng, 300)  # an hour later the shift has gone by
    assert hub.report("m", 600)["drifted"] == []
    hub.forget("m")
    assert not (tmp_path / "drift" / "m.json").exists()


def test_first_window_predictions_stand_in_for_missing_reference_predictions(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(11)
    clock = Clock()
    hub = DriftHub(tmp_path, clock=clock)
    doc = _reference(rng)
    del doc["predictions"]
    hub.monitor("m").set_reference(Reference.parse(doc))
    _send(hub, clock, rng, FIRST_WINDOW_ROWS + 50)
    first = hub.report("m", 900)
    assert first["predictions_reference"] == "first window"
    assert hub.monitor("m").first_predictions is not None
    clock.now += 3600
    for _ in range(300):  # the model's outputs move by 1 SD; its inputs do not
        hub.tap("m", {n: np.asarray([rng.normal()]) for n in NUMERIC},
                {"predict": np.asarray([rng.normal(1.0)])})  # fmt: skip
        clock.now += 1
    assert hub.report("m", 600)["drifted"] == ["prediction"]


def test_reference_from_a_past_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    clock = Clock()
    hub = DriftHub(tmp_path, clock=clock)
    _send(hub, clock, rng, 300)
    assert hub.report("m", 600)["status"] == "no reference"
    made = hub.monitor("m").reference_from_window(600, 0)
    assert made.source == "window"
    assert made.rows == 300
    _send(hub, clock, rng, 300, shift={"c": 1.0})
    assert hub.report("m", 300)["drifted"] == ["c"]


def test_scores_reach_the_rollups_and_the_gauges(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    hub, clock = _hub(tmp_path, rng)
    assert hub.score("m") is None
    _send(hub, clock, rng, 300, shift={"a": 1.0})
    report = hub.report("m")  # the default window (1 h) is cached
    assert hub.score("m") == report["score"]
    metrics = {(m.name, tuple(s.labels.values())): s.value for m in hub.collector().collect()
               for s in m.samples}  # fmt: skip
    assert metrics[("nstarx_drift_score", ("m", "a", "psi"))] == pytest.approx(
        next(t["score"] for t in report["features"] if (t["feature"], t["test"]) == ("a", "psi"))
    )
    assert metrics[("nstarx_drift_features", ("m",))] == 1
    clock.now += 600
    assert hub.score("m") is None  # too old to be this minute's score


@pytest.mark.parametrize(
    "doc",
    [[], {}, {"columns": {}}, {"columns": {"x": [1, 2], "y": [1]}}, {"columns": {"x": [[1]]}},
     {"columns": {"x": list(range(10_001))}}, {"columns": {f"f{i}": [1] for i in range(257)}},
     {"columns": {"x": [1]}, "predictions": "no"}],
)  # fmt: skip
def test_malformed_references_are_refused(doc: Any) -> None:
    with pytest.raises(InvalidInputError):
        Reference.parse(doc)


def test_window_parsing() -> None:
    assert window_seconds(None) == 3600
    assert window_seconds("15m") == 900
    assert window_seconds("90") == 90
    for bad in ("0", "7h", "soon", "-5", "nan"):
        with pytest.raises(InvalidInputError):
            window_seconds(bad)
    assert not math.isnan(window_seconds("6h"))


def test_the_default_window_report_is_reused_until_a_row_or_the_reference_changes(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(14)
    hub, clock = _hub(tmp_path, rng)
    _send(hub, clock, rng, 100)
    first = hub.report("m")
    assert hub.report("m") is first  # nothing new: the sidebar's next poll costs nothing
    _send(hub, clock, rng, 1)
    second = hub.report("m")
    assert second is not first
    assert second["rows"] == first["rows"] + 1
    hub.monitor("m").set_reference(Reference.parse(_reference(rng)))
    assert hub.report("m") is not second


def test_a_large_batch_is_cut_on_the_request_path_and_odd_names_keep_no_file(
    tmp_path: Path,
) -> None:
    hub = DriftHub(tmp_path)
    batch = {"input-0": np.arange(2000.0).reshape(1000, 2)}
    hub.tap("m", batch, {"out": np.arange(1000.0)})
    [(_, inputs, outputs)] = list(hub.monitor("m").ring)
    assert inputs["input-0"].shape == (32, 2)
    assert not np.shares_memory(inputs["input-0"], batch["input-0"])  # the batch can go
    assert np.array_equal(outputs["out"] * 2, inputs["input-0"][:, 0])  # the same rows
    hub.tap("m", {"image": np.zeros((1, 3, 8, 8))}, {"out": np.zeros(1)})
    assert len(hub.monitor("m").ring) == 1  # not tabular: not held
    odd = hub.monitor("../escape")
    assert odd.file is None
    odd.set_reference(Reference.parse({"columns": {"x": [1.0]}}))
    assert not (tmp_path / "escape.json").exists()
    assert not list(tmp_path.rglob("*.json"))


def test_class_labels_are_categorical_and_their_shift_is_flagged() -> None:
    rng = np.random.default_rng(15)
    labels = Column.of(rng.choice([0, 1, 2], 1000, p=[0.6, 0.3, 0.1]).astype(np.float64))
    assert labels.kind == "categorical"
    assert Column.of(rng.integers(0, 100, 1000)).kind == "numeric"  # many values: numeric
    live = Column.of(rng.choice([0, 1, 2], 300, p=[0.3, 0.3, 0.4]))  # ints against floats
    result = compare({"label": labels}, {"label": live})
    assert [(t.test, t.drifted) for t in result.tests] == [("chi2", True), ("js", True)]
