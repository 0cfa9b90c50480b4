"""Cost arithmetic against figures worked out by hand, the price table, the rollup store, no GPU."""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from typing import TYPE_CHECKING

import httpx
import pytest
import skops.io
from prometheus_client import generate_latest

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.monitoring.cost import (
    DEFAULT_PRICES,
    Prices,
    Usage,
    cost_of,
    load_prices,
    requested_usage,
    save_prices,
)
from nstarx_jupyter.serving import trends
from nstarx_jupyter.serving.app import ServingConfig, create_app, make_guard
from nstarx_jupyter.serving.dataplane import DataPlane
from nstarx_jupyter.serving.metrics import ServerMetrics
from nstarx_jupyter.serving.repository import ModelRepository
from nstarx_jupyter.serving.settings import ModelSettings
from nstarx_jupyter.serving.trends import KEEP_S, Rollup, TrendStore
from nstarx_jupyter.serving.usage import GpuProbe, ProcessFigures, UsageMonitor, process_figures
from nstarx_jupyter.serving.usage_api import UsageApi

if TYPE_CHECKING:
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

DAY_S = 86400


def test_cost_is_each_resources_hours_times_its_price() -> None:
    """10 min; 90 CPU-s; 2 GB held throughout; 1,200 predictions; default prices."""
    cost = cost_of(Usage(window_s=600, requests=1200, cpu_s=90, memory_gb_s=2 * 600))
    cpu = 90 / 3600 * 0.04048  # 0.001012 USD
    memory = 2 * 600 / 3600 * 0.004445  # 0.00148167 USD
    assert cost.cpu_cost == pytest.approx(0.001012)
    assert cost.memory_cost == pytest.approx(0.0014816667)
    assert cost.total == pytest.approx(cpu + memory)
    assert cost.per_1000 == pytest.approx((cpu + memory) / 1.2)
    assert cost.per_day == pytest.approx((cpu + memory) * 144)  # 144 ten-minute windows a day
    assert cost.currency == "USD"


def test_an_empty_window_has_no_rate_and_no_predictions_no_cost_per_1000() -> None:
    idle = cost_of(Usage(window_s=60, requests=0, cpu_s=0.5))
    assert idle.per_1000 is None
    assert idle.per_day == pytest.approx(0.5 / 3600 * 0.04048 * 1440)
    assert cost_of(Usage(window_s=0, requests=0, cpu_s=0)).per_day is None


def test_a_kserve_deployment_is_priced_from_its_requested_resources() -> None:
    """Two replicas of 1.5 cores, 4 GB and one GPU for an hour, 7,200 predictions."""
    usage = requested_usage(cpu_cores=1.5, memory_gb=4, gpus=1, replicas=2, window_s=3600,
                            requests=7200)  # fmt: skip
    cost = cost_of(usage)
    by_hand = 2 * (1.5 * 0.04048 + 4 * 0.004445 + 1 * 0.526)  # USD an hour: 1.209
    assert cost.total == pytest.approx(1.209)
    assert cost.total == pytest.approx(by_hand)
    assert cost.per_day == pytest.approx(by_hand * 24)
    assert cost.per_1000 == pytest.approx(by_hand / 7.2)
    with pytest.raises(InvalidInputError):
        requested_usage(cpu_cores=-1, memory_gb=1)


def test_prices_default_to_the_named_public_rates_and_the_users_file_wins(
    nstarx_home: Path,
) -> None:
    assert load_prices() == DEFAULT_PRICES
    assert "aws.amazon.com/fargate/pricing" in DEFAULT_PRICES.source
    mine = Prices.parse({"cpu_hour": 0.1, "currency": "EUR"})
    assert mine.gb_hour == DEFAULT_PRICES.gb_hour
    assert mine.source == "set by the user"
    save_prices(mine)
    assert (nstarx_home / "prices.json").exists()
    assert load_prices() == mine
    assert cost_of(Usage(3600, 1, 3600), mine).total == pytest.approx(0.1)


@pytest.mark.parametrize(
    "doc",
    [[], {"cpu_hour": -1}, {"cpu_hour": True}, {"cpu_hour": "1"}, {"gpu_hour": float("nan")},
     {"currency": ""}, {"tax": 0.2}],
)  # fmt: skip
def test_a_price_table_that_makes_no_sense_is_refused(doc: object) -> None:
    with pytest.raises(InvalidInputError):
        Prices.parse(doc)


def _row(name: str, minute: int, requests: int = 10) -> Rollup:
    return Rollup(name, minute, requests, 1, 2.0, 5.0, 9.0, 0.25, 100_000_000, 0.001)


def test_rollups_are_read_back_oldest_first_with_an_empty_drift_column(tmp_path: Path) -> None:
    store = TrendStore(tmp_path / "trends.sqlite3", clock=lambda: 10 * DAY_S)
    store.write([_row("iris", 10 * DAY_S - 60), _row("iris", 10 * DAY_S - 120, 7),
                 _row("other", 10 * DAY_S - 60)])  # fmt: skip
    rows = store.read("iris", 0)
    assert [row.minute for row in rows] == [10 * DAY_S - 120, 10 * DAY_S - 60]
    assert rows[0].requests == 7
    assert rows[0].drift is None
    assert rows[0].to_json()["t"] == 10 * DAY_S - 120
    mode = sqlite3.connect(tmp_path / "trends.sqlite3").execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)
    store.close()


def test_rollups_older_than_thirty_days_are_pruned(tmp_path: Path) -> None:
    now = [40.0 * DAY_S]
    store = TrendStore(tmp_path / "trends.sqlite3", clock=lambda: now[0])
    start = int(now[0])
    assert store.write([_row("iris", start), _row("iris", start + 60)]) == 0
    now[0] = start + KEEP_S + 30.0  # 30 days and 30 s later: the first minute is out
    assert store.write([_row("iris", int(now[0]))]) == 1
    assert [row.minute for row in store.read("iris", 0)] == [start + 60, int(now[0])]
    store.close()


def test_a_write_that_fails_midway_leaves_no_row_of_it(tmp_path: Path) -> None:
    store = TrendStore(tmp_path / "trends.sqlite3", clock=lambda: 600.0)
    broken = dataclasses.replace(_row("iris", 120), requests=None)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        store.write([_row("iris", 60), broken])
    assert store.read("iris", 0) == []
    store.write([_row("iris", 60)])
    assert len(store.read("iris", 0)) == 1
    store.close()


def test_the_store_columns_are_the_rollup_fields_in_order() -> None:
    names = [field.name for field in dataclasses.fields(Rollup)]
    assert trends._COLUMNS.split(", ") == names


def test_without_nvml_or_a_gpu_the_probe_says_why_and_reports_nothing() -> None:
    probe = GpuProbe()  # no nvidia-ml-py on this machine, and no GPU
    assert not probe.available
    assert "NVML" in probe.reason
    assert probe.devices() == []
    assert probe.memory_by_pid() == {}
    missing = GpuProbe("nstarx_no_such_nvml")
    assert "nstarx-jupyter[gpu]" in missing.reason


def test_this_process_figures_come_from_proc() -> None:
    figures = process_figures()
    assert figures.rss_bytes > 10_000_000
    assert figures.threads >= 1
    assert figures.cpu_s > 0
    assert process_figures(2**22 + 12345) == ProcessFigures()  # no such process: zeros


ADMIN_TOKEN = "usage-admin-token"  # noqa: S105 - a test credential
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
IRIS_BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                         "data": [5.1, 3.5, 1.4, 0.2]}]}  # fmt: skip


async def test_during_a_canary_each_variant_has_its_own_cost_and_the_total_adds_up(
    iris_model: LogisticRegression, nstarx_home: Path, tmp_path: Path
) -> None:
    config = ServingConfig(state_dir=tmp_path / "state", security_dir=tmp_path / "security",
                           audit_dir=tmp_path / "audit", admin_token=ADMIN_TOKEN)  # fmt: skip
    app = create_app([], config)
    stable, canary = nstarx_home / "models" / "v1.skops", nstarx_home / "models" / "v2.skops"
    stable.parent.mkdir(parents=True)
    skops.io.dump(iris_model, stable)
    skops.io.dump(iris_model, canary)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            url = "/nstarx/v1/deployments/fraud"
            assert (await http.put(url, json={"storage_uri": str(stable)},
                                   headers=ADMIN)).status_code == 201  # fmt: skip
            rolled = await http.put(url, headers=ADMIN, json={
                "storage_uri": str(canary), "canary_traffic_percent": 50})  # fmt: skip
            assert rolled.status_code == 200, rolled.text
            for _ in range(40):
                answer = await http.post("/v2/models/fraud/infer", json=IRIS_BODY, headers=ADMIN)
                assert answer.status_code == 200, answer.text
            doc = (await http.get(f"{url}/cost", params={"window_s": 60}, headers=ADMIN)).json()
            refused = await http.get(f"{url}/cost", params={"window_s": 4e6}, headers=ADMIN)
            scraped = (await http.get("/metrics", headers=ADMIN)).text
    variants = {row["variant"]: row for row in doc["variants"]}
    assert set(variants) == {"stable", "canary"}
    assert all(row["requests"] > 0 for row in variants.values())
    assert sum(row["requests"] for row in variants.values()) == doc["total"]["requests"] == 40
    assert doc["total"]["cpu_s"] == pytest.approx(sum(r["cpu_s"] for r in variants.values()))
    assert doc["total"]["total"] == pytest.approx(sum(r["total"] for r in variants.values()))
    assert refused.status_code == 400
    assert 'nstarx_model_cpu_seconds_total{model="fraud"' in scraped


def test_each_minutes_rollup_takes_the_drift_score_drift_detection_gives(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    config = ServingConfig(security_dir=tmp_path / "security", admin_token=ADMIN_TOKEN)
    guard = functools.partial(make_guard, config)
    dataplane = DataPlane(ModelRepository([], metrics), metrics, guard)
    usage = UsageApi(dataplane, tmp_path, lambda name: None, lambda: ["a", "b"])
    assert [row.drift for row in usage.rollups(0, 60)] == [None, None]  # nobody computes one
    usage.drift_score = {"a": 0.31, "b": None}.get
    assert [row.drift for row in usage.rollups(0, 60)] == [0.31, None]
    usage.drift_score = lambda name: 1 / 0
    assert [row.drift for row in usage.rollups(0, 60)] == [None, None]  # its failure is logged


def test_a_minute_two_server_processes_shared_adds_up(tmp_path: Path) -> None:
    store = TrendStore(tmp_path / "trends.sqlite3", clock=lambda: 600.0)
    store.write([_row("iris", 540, requests=10)])  # the first server, stopped mid-minute
    later = dataclasses.replace(_row("iris", 540, requests=5), p50_ms=3.0, cost=0.002)
    store.write([later], merge=True)  # the next one, started in the same minute
    (row,) = store.read("iris", 0)
    assert (row.requests, row.errors, row.cpu_s) == (15, 2, 0.5)
    assert row.cost == pytest.approx(0.003)
    assert row.p50_ms == 3.0
    store.write([_row("iris", 540, requests=1)])  # a plain write replaces
    assert store.read("iris", 0)[0].requests == 1
    store.close()


async def test_with_a_gpu_its_memory_goes_to_the_models_of_the_process_holding_it(
    iris_path: Path,
) -> None:
    """`tests/support/fake_nvml` stands in for NVML: one GPU, 1 GiB held by this process."""
    probe = GpuProbe("tests.support.fake_nvml")
    assert probe.available
    assert probe.reason == ""
    assert probe.devices() == [{"index": 0, "utilization": 0.37, "memory_used_bytes": 3 * 2**30,
                                "memory_total_bytes": 16 * 2**30}]  # fmt: skip
    metrics = ServerMetrics()
    repository = ModelRepository([ModelSettings(name="iris", path=iris_path)], metrics)
    await repository.start()
    try:
        monitor = UsageMonitor(repository, gpu=probe)
        (version,) = monitor.resources("iris")["versions"]
        assert version["gpu_memory_bytes"] == 2**30  # the only model in the process holding it
        metrics.registry.register(monitor.collector())
        text = generate_latest(metrics.registry).decode()
    finally:
        await repository.close()
    assert 'nstarx_gpu_utilization_ratio{gpu="0"} 0.37' in text
    assert 'nstarx_model_gpu_memory_bytes{model="iris",version="1"} 1.073741824e+09' in text


def test_past_an_hour_the_cost_is_the_rollups_priced_at_todays_prices(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    config = ServingConfig(security_dir=tmp_path / "security", admin_token=ADMIN_TOKEN)
    guard = functools.partial(make_guard, config)
    dataplane = DataPlane(ModelRepository([], metrics), metrics, guard)
    now = 10.0 * DAY_S
    usage = UsageApi(dataplane, tmp_path, lambda name: None, list, clock=lambda: now)
    usage.trends.write([_row("iris", int(now) - 7200), _row("iris", int(now) - 3600),
                        _row("iris", int(now) - 2 * DAY_S)])  # fmt: skip
    doc = usage.cost("iris", DAY_S)
    assert doc.source == "rollups"
    assert doc.variants == []
    assert doc.covered_s == 7200  # from the oldest minute in the window
    total = doc.total
    assert (total.requests, total.cpu_s) == (20, 0.5)
    assert total.memory_gb_s == pytest.approx(2 * 0.1 * 60)  # 100 MB held for two minutes
    by_hand = 0.5 / 3600 * 0.04048 + 12 / 3600 * 0.004445
    assert total.total == pytest.approx(by_hand)
    assert total.per_1000 == pytest.approx(by_hand / 20 * 1000)
    assert total.per_day == pytest.approx(by_hand * 12)  # two hours of a day's 24
    with pytest.raises(InvalidInputError):
        usage.cost("iris", 31 * DAY_S)
    usage.trends.close()
