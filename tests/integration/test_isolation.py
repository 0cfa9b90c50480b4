"""Isolation over real sockets and processes: a model that sleeps, spins, aborts or leaks.

Whatever one model does, health answers, other models keep their latency, and the bad model's
callers get 504 at its deadline or 503 with `Retry-After`, not a hung connection.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

import numpy as np
import pytest
import requests

from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration
ROW = [5.1, 3.5, 1.4, 0.2]
POISON = [-1.0, 3.5, 1.4, 0.2]
"""A row whose negative first feature makes the spinning and aborting test models misbehave."""
HEALTH_P99_S = 0.1
NEIGHBOUR_S = 0.025
"""What another process on the machine may add to a p99 of a few ms (not a stalled loop)."""


def _body(row: list[float]) -> dict[str, object]:
    return {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row}]}


def _model(root: Path, name: str, runtime: str, **settings: object) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    doc = {"runtime": f"tests.support.runtimes.{runtime}", **settings}
    (folder / "model-settings.json").write_text(json.dumps(doc))


def _p99(samples: list[float]) -> float:
    return float(np.percentile(samples, 99))


class _Loop:
    """Calls `_once` in a thread every `pause_s` until the `with` block ends."""

    pause_s = 0.01

    def __init__(self, url: str) -> None:
        self.base = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                self._once(session)
                self._stop.wait(self.pause_s)

    def _once(self, session: requests.Session) -> None:
        raise NotImplementedError


class _Prober(_Loop):
    """Polls `/v2/health/live` every 10 ms, recording latencies and failures."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.seconds: list[float] = []
        self.failures = 0

    def _once(self, session: requests.Session) -> None:
        started = time.perf_counter()
        try:
            ok = session.get(f"{self.base}/v2/health/live", timeout=5).status_code == 200
        except requests.RequestException:
            ok = False
        self.seconds.append(time.perf_counter() - started)
        self.failures += not ok


def _latencies(url: str, body: dict[str, object], count: int) -> list[float]:
    """`count` sequential predictions on one connection; every one must answer 200."""
    seconds = []
    with requests.Session() as session:
        for _ in range(count):
            started = time.perf_counter()
            response = session.post(url, json=body, timeout=10)
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return seconds


def _timed_post(url: str, body: dict[str, object]) -> tuple[int, float, requests.Response]:
    started = time.perf_counter()
    response = requests.post(url, json=body, timeout=60)
    return response.status_code, time.perf_counter() - started, response


def _seconds_until_served(url: str, limit_s: float = 30.0) -> float:
    """Call until a 200 (a restarting worker answers 504 past a short deadline meanwhile)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        status, _, _ = _timed_post(url, _body(ROW))
        if status == 200:
            return time.monotonic() - started
        assert status == 504, status
    raise AssertionError(f"{url} did not serve again within {limit_s} s")


@pytest.fixture
def hung_server(tmp_path: Path, iris_path: Path) -> Iterator[ServerProcess]:
    """iris, and a model that answers five calls at once and then sleeps 2.5 s in every call."""
    _model(tmp_path, "hung", "FastThenSlowRuntime", options={"fast_calls": 5, "sleep_s": 2.5},
           timeout_s=1.5)  # fmt: skip
    server = start_server("--model-repository", str(tmp_path), "--model", f"iris={iris_path}")
    yield server
    server.stop()


@pytest.mark.alone
def test_a_hung_model_answers_504_at_its_deadline_and_leaves_health_and_others_alone(
    hung_server: ServerProcess,
) -> None:
    """Rounds of iris alone, then iris while three calls hang in the other model.

    Interleaved rounds, so the machine's drift falls on both alike; 600 samples each.
    """
    url = hung_server.url
    iris, hung = f"{url}/v2/models/iris/infer", f"{url}/v2/models/hung/infer"
    _latencies(hung, _body(ROW), 5)  # the fast calls: once it would have earned the event loop
    _latencies(iris, _body(ROW), 100)  # warm
    before: list[float] = []
    during: list[float] = []
    hung_results = []
    with _Prober(url) as health, ThreadPoolExecutor(3) as pool:
        for _ in range(4):
            before += _latencies(iris, _body(ROW), 150)
            calls = [pool.submit(_timed_post, hung, _body(ROW)) for _ in range(3)]
            time.sleep(0.05)  # the hung calls are in
            during += _latencies(iris, _body(ROW), 150)
            hung_results += [call.result() for call in calls]
            time.sleep(1.1)  # the hung thread wakes (2.5 s): the next round starts clean
    statuses = [status for status, _, _ in hung_results]
    # One call holds the model's thread; the others wait for it: all answer at the deadline.
    assert statuses == [504] * 12, statuses
    for _, seconds, _ in hung_results:
        assert 1.5 <= seconds < 1.5 + 0.5, seconds
    assert health.failures == 0
    assert _p99(health.seconds) < HEALTH_P99_S, _p99(health.seconds)
    # iris kept its latency while the hung model's threads slept: within 20 %, or within
    # NEIGHBOUR_S of it when that is more. A model that stalled the loop puts it at seconds
    # (issue 17 measured 20 s); a neighbour process on the 2 cores moves a 3 ms p99 to 7.4 ms
    # (seen with this test `alone` in pytest but other work on the machine), which is noise,
    # not the failure this test is for. Latency itself is measured in bench/isolation.py.
    bound = max(1.2 * _p99(before), _p99(before) + NEIGHBOUR_S)
    assert _p99(during) <= bound, (_p99(before), _p99(during))


def test_a_model_whose_threads_are_stuck_sheds_with_503_and_retry_after(
    hung_server: ServerProcess,
) -> None:
    hung = f"{hung_server.url}/v2/models/hung/infer"
    _latencies(hung, _body(ROW), 5)
    with ThreadPoolExecutor(8) as pool:  # more calls than the model has threads (cores - 1)
        first = list(pool.map(lambda _: _timed_post(hung, _body(ROW))[0], range(8)))
    # their threads sleep on past the deadline, each holding one of the model's slots
    assert first == [504] * 8
    time.sleep(0.2)
    statuses = []
    for _ in range(5):
        status, seconds, response = _timed_post(hung, _body(ROW))
        statuses.append(status)
        assert seconds < 0.5  # refused at once, not queued behind the stuck thread
        assert int(response.headers["Retry-After"]) >= 1
    assert statuses == [503] * 5
    iris = f"{hung_server.url}/v2/models/iris/infer"
    assert requests.post(iris, json=_body(ROW), timeout=5).status_code == 200


def test_models_with_stuck_threads_do_not_starve_another_models_threads(
    tmp_path: Path,
) -> None:
    """Two models sleep in every thread they may have; a third model's threads still answer."""
    for name in ("stuck-a", "stuck-b"):
        _model(tmp_path, name, "FastThenSlowRuntime", options={"fast_calls": 0, "sleep_s": 4},
               timeout_s=1)  # fmt: skip
    # a user's runtime: always in a thread, however fast
    _model(tmp_path, "echo", "FastThenSlowRuntime", options={"fast_calls": 10**9})
    server = start_server("--model-repository", str(tmp_path))
    try:
        share = max(1, max(2, len(os.sched_getaffinity(0))) - 1)  # the server's threads but one
        with ThreadPoolExecutor(2 * share) as pool:
            calls = [pool.submit(_timed_post, f"{server.url}/v2/models/{name}/infer", _body(ROW))
                     for name in ("stuck-a", "stuck-b") for _ in range(share)]  # fmt: skip
            time.sleep(0.3)  # every one of their calls is sleeping in a thread
            status, seconds, _ = _timed_post(f"{server.url}/v2/models/echo/infer", _body(ROW))
            assert status == 200
            assert seconds < 0.5, seconds
            assert [call.result()[0] for call in calls] == [504] * (2 * share)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def process_server(
    tmp_path_factory: pytest.TempPathFactory, iris_path: Path
) -> Iterator[ServerProcess]:
    """iris in the server; aborting, spinning, leaking and pid-telling models in workers."""
    root = tmp_path_factory.mktemp("isolated-models")
    isolated = {"isolation": "process", "timeout_s": 1.5}
    _model(root, "aborting", "AbortingRuntime", isolation="process")  # restarts take seconds
    _model(root, "spinning", "SpinningRuntime", options={"spin_s": 30}, **isolated)
    _model(root, "leaking", "LeakingRuntime", options={"leak_mb": 40}, max_rss_mb=250,
           **isolated)  # fmt: skip
    _model(root, "pid", "LeakingRuntime", options={"leak_mb": 0}, isolation="process")
    server = start_server("--model-repository", str(root), "--model", f"iris={iris_path}")
    yield server
    server.stop()


class _Hammer(_Loop):
    """Calls iris in a loop every 5 ms; every answer must be a 200."""

    pause_s = 0.005

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.statuses: list[int] = []

    def _once(self, session: requests.Session) -> None:
        try:
            answer = session.post(f"{self.base}/v2/models/iris/infer", json=_body(ROW), timeout=5)
            self.statuses.append(answer.status_code)
        except requests.RequestException:
            self.statuses.append(0)


def test_a_model_that_aborts_is_restarted_and_serves_again(process_server: ServerProcess) -> None:
    url = f"{process_server.url}/v2/models/aborting/infer"
    with _Hammer(process_server.url) as others, _Prober(process_server.url) as health:
        assert requests.post(url, json=_body(ROW), timeout=10).status_code == 200
        crashed = requests.post(url, json=_body(POISON), timeout=10)
        assert crashed.status_code == 500
        assert "worker process died" in crashed.json()["error"]
        # restarted in the background: the next call waits for it and is answered
        for _ in range(3):
            assert requests.post(url, json=_body(ROW), timeout=30).status_code == 200
    assert others.statuses
    assert set(others.statuses) == {200}
    assert health.failures == 0
    assert _p99(health.seconds) < HEALTH_P99_S


def test_a_spinning_model_is_killed_at_its_deadline_and_restarted(
    process_server: ServerProcess,
) -> None:
    url = f"{process_server.url}/v2/models/spinning/infer"
    with _Hammer(process_server.url) as others, _Prober(process_server.url) as health:
        status, seconds, _ = _timed_post(url, _body(POISON))
        assert status == 504
        assert 1.5 <= seconds < 1.5 + 0.5, seconds
        # the spinning worker (30 s a call) was killed, not left to spin: a fresh one answers
        assert _seconds_until_served(url) < 15
    assert set(others.statuses) == {200}
    assert health.failures == 0
    assert _p99(health.seconds) < HEALTH_P99_S


def test_a_leaking_model_is_restarted_when_it_passes_its_memory_cap(
    process_server: ServerProcess,
) -> None:
    url = f"{process_server.url}/v2/models/leaking/infer"
    pids = []
    for _ in range(12):  # 40 MB a call against a 250 MB cap: restarted every few calls
        response = requests.post(url, json=_body(ROW), timeout=30)
        assert response.status_code == 200, response.text
        pids.append(int(response.json()["outputs"][0]["data"][0]))
    assert len(set(pids)) >= 2, pids


def test_a_worker_killed_while_idle_is_replaced_before_the_next_call(
    process_server: ServerProcess,
) -> None:
    url = f"{process_server.url}/v2/models/pid/infer"

    def pid() -> int:
        response = requests.post(url, json=_body(ROW), timeout=30)
        assert response.status_code == 200, response.text
        return int(response.json()["outputs"][0]["data"][0])

    first = pid()
    os.kill(first, signal.SIGKILL)  # the OOM killer, say, between two requests
    time.sleep(0.3)
    assert pid() != first  # answered (not a 500 for writing to a dead worker), by a new one
