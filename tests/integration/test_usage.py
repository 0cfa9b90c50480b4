"""Resource use, cost and trends on a real server: a model that burns a known amount of CPU.

Two deployments of a model that uses `BURN_S` of CPU per call, one in the server's threads and
one in a worker process of its own: after `CALLS` calls each, `/metrics`, the control API's
metrics and cost answers all show about `CALLS x BURN_S` CPU seconds. The rollups a server
writes when it stops are read back by the next server on the same state folder.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from nstarx_jupyter.monitoring.cost import Prices, Usage, cost_of
from tests.integration.server import ServerProcess, start_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration
RUNTIME = "tests.support.runtimes.CpuBurnRuntime"
BURN_S = 0.02
CALLS = 25
ROW = [5.1, 3.5, 1.4, 0.2]
BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}


def _serve(state: Path, home: Path) -> ServerProcess:
    return start_server("--state-dir", str(state), "--allow-runtime", RUNTIME,
                        "--allow-path", str(home))  # fmt: skip


def _admin(state: Path) -> dict[str, str]:
    token = json.loads((state / "state.json").read_text())["token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def served(tmp_path: Path, nstarx_home: Path) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    """A server with two burning deployments: `burn` (threads) and `burn-isolated`."""
    state = tmp_path / "state"
    server = _serve(state, nstarx_home)
    try:
        with httpx.Client(base_url=server.url, headers=_admin(state), timeout=60) as http:
            for name, isolation in (("burn", "thread"), ("burn-isolated", "process")):
                folder = nstarx_home / "models" / name
                folder.mkdir(parents=True)
                (folder / "model-settings.json").write_text(json.dumps({"isolation": isolation}))
                spec = {"storage_uri": str(folder), "runtime": RUNTIME, "auth": False,
                        "options": {"burn_s": BURN_S}}  # fmt: skip
                made = http.put(f"/nstarx/v1/deployments/{name}", json=spec)
                assert made.status_code == 201, made.text
            yield server, http
    finally:
        server.stop()


def _cpu_series(text: str, model: str) -> float:
    series = rf'nstarx_model_cpu_seconds_total\{{model="{re.escape(model)}",version="[^"]*"\}}'
    pattern = rf"^{series} (\S+)$"
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


def test_cpu_seconds_grow_by_calls_times_the_cpu_each_call_burns(
    served: tuple[ServerProcess, httpx.Client],
) -> None:
    _, http = served
    for name in ("burn", "burn-isolated"):
        for _ in range(CALLS):
            answer = http.post(f"/v2/models/{name}/infer", json=BODY)
            assert answer.status_code == 200, answer.text
    expected = CALLS * BURN_S
    scraped = http.get("/metrics").text
    for name in ("burn", "burn-isolated"):
        figures = http.get(f"/nstarx/v1/deployments/{name}/metrics").json()["resources"]
        (version,) = figures["versions"]
        assert version["isolated"] is (name == "burn-isolated")
        assert version["calls"] == CALLS
        # at least what the model burned; at most that and the call's own few ms of overhead
        assert expected <= version["cpu_s"] <= expected * 1.3 + 0.05, version
        assert version["rss_bytes"] > 10_000_000  # a Python process with NumPy
        assert version["threads"] >= 1
        assert version["gpu_memory_bytes"] is None
        assert "no GPU" in figures["gpu_note"]
        assert expected <= _cpu_series(scraped, name) <= expected * 1.3 + 0.05
    assert "nstarx_server_rss_bytes" in scraped
    assert "nstarx_gpu_utilization_ratio" not in scraped  # no GPU here: no GPU series


def test_the_cost_answer_is_the_price_table_times_the_measured_use(
    served: tuple[ServerProcess, httpx.Client],
) -> None:
    _, http = served
    for _ in range(CALLS):
        assert http.post("/v2/models/burn/infer", json=BODY).status_code == 200
    prices = http.put("/nstarx/v1/prices", json={"cpu_hour": 3600.0, "gb_hour": 0.0}).json()
    assert prices["cpu_hour"] == 3600.0  # one currency unit per CPU-second: cost = CPU seconds
    doc = http.get("/nstarx/v1/deployments/burn/cost", params={"window_s": 600}).json()
    total = doc["total"]
    assert total["requests"] == CALLS
    assert CALLS * BURN_S <= total["cpu_s"] <= CALLS * BURN_S * 1.3 + 0.05
    assert total["total"] == pytest.approx(total["cpu_s"])
    assert total["per_1000"] == pytest.approx(total["cpu_s"] / CALLS * 1000)
    assert total["per_day"] == pytest.approx(total["cpu_s"] * 86400 / doc["covered_s"])
    (variant,) = doc["variants"]
    assert variant["variant"] == "primary"
    assert variant["requests"] == CALLS
    # one source: the same numbers through the library function give the same answer
    again = cost_of(Usage(doc["covered_s"], CALLS, total["cpu_s"], total["memory_gb_s"]),
                    Prices.parse(doc["prices"]))  # fmt: skip
    assert again.to_json() == pytest.approx(total)


def test_rollups_written_at_shutdown_are_served_after_a_restart(
    tmp_path: Path, nstarx_home: Path
) -> None:
    state = tmp_path / "state"
    server = _serve(state, nstarx_home)
    try:
        folder = nstarx_home / "models" / "burn"
        folder.mkdir(parents=True)
        http = httpx.Client(base_url=server.url, headers=_admin(state), timeout=60)
        spec = {"storage_uri": str(folder), "runtime": RUNTIME, "auth": False,
                "options": {"burn_s": BURN_S}}  # fmt: skip
        assert http.put("/nstarx/v1/deployments/burn", json=spec).status_code == 201
        for _ in range(CALLS):
            assert http.post("/v2/models/burn/infer", json=BODY).status_code == 200
        http.close()
    finally:
        server.stop()  # SIGTERM: the server writes the minute it is in
    assert (state / "trends.sqlite3").exists()
    server = _serve(state, nstarx_home)
    try:
        with httpx.Client(base_url=server.url, headers=_admin(state), timeout=60) as http:
            doc = http.get("/nstarx/v1/deployments/burn/history",
                           params={"since_s": 3600}).json()  # fmt: skip
            cost = http.get("/nstarx/v1/deployments/burn/cost",
                            params={"window_s": 86400}).json()  # fmt: skip
    finally:
        server.stop()
    assert doc["bucket_s"] == 60
    assert sum(row["requests"] for row in doc["rows"]) == CALLS
    (row,) = [row for row in doc["rows"] if row["requests"]]
    assert row["t"] % 60 == 0
    assert row["t"] <= time.time()
    assert row["cpu_s"] >= CALLS * BURN_S
    assert row["p50_ms"] >= BURN_S * 1000
    assert row["cost"] > 0
    assert row["drift"] is None
    assert cost["source"] == "rollups"
    assert cost["total"]["requests"] == CALLS
