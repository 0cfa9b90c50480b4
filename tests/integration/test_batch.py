"""Batch jobs on a real server: 100,000 rows in order, `kill -9` at random points and resumed,
cancelled, refused inputs, `Deployment.batch()` from the notebook and `nstarx batch`."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter import deploy
from nstarx_jupyter.cli import main
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.notebook.api import Deployment
from nstarx_jupyter.security import admin_token
from nstarx_jupyter.security.home import key_store, security_dir
from tests.conftest import IRIS_FEATURES
from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration
ROWS = 100_000


@pytest.fixture
def state_dir(nstarx_home: Path) -> Path:
    return nstarx_home / "server"


@pytest.fixture
def server(state_dir: Path, named_iris: Path) -> Iterator[ServerProcess]:
    """A server with the iris deployment (its model-settings name the features)."""
    process = start_server("--state-dir", str(state_dir), auth=True)
    backend = LocalBackend(state_dir, timeout_s=60)
    deploy(named_iris, "iris", backend=backend)
    backend.close()
    yield process
    process.stop()


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(security_dir())}"}


def _rows_file(folder: Path, iris_data: tuple[np.ndarray, np.ndarray], rows: int = ROWS) -> Path:
    """`rows` iris feature rows, repeated, after a `row_id` column 0..rows-1."""
    x, _ = iris_data
    repeated = np.resize(x, (rows, x.shape[1]))
    frame = pd.DataFrame(repeated, columns=list(IRIS_FEATURES))
    frame.insert(0, "row_id", np.arange(rows))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rows.csv"
    frame.to_csv(path, index=False)
    return path


def _start(url: str, body: dict[str, Any]) -> dict[str, Any]:
    made = httpx.post(f"{url}/nstarx/v1/jobs", json=body, headers=_admin(), timeout=60)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def _job(url: str, job_id: str) -> dict[str, Any]:
    got = httpx.get(f"{url}/nstarx/v1/jobs/{job_id}", headers=_admin(), timeout=30)
    assert got.status_code == 200, got.text
    return got.json()  # type: ignore[no-any-return]


def _wait(url: str, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = _job(url, job_id)
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def _check_output(job: dict[str, Any], model: LogisticRegression, source: Path) -> None:
    """Every id once, in order, each with the model's own prediction."""
    assert job["state"] == "succeeded", job
    assert job["rows_done"] == job["rows_total"] == ROWS
    out = pd.read_csv(job["output"])
    assert out["row_id"].tolist() == list(range(ROWS))  # 0 lost, 0 duplicated, in order
    expected = model.predict(pd.read_csv(source)[list(IRIS_FEATURES)].to_numpy())
    assert (out["prediction"].to_numpy() == expected).all()
    assert {"confidence", "row_id", "prediction"} <= set(out.columns)


def test_a_100000_row_file_comes_out_once_each_in_order(
    server: ServerProcess, nstarx_home: Path, iris_data: Any, iris_model: LogisticRegression
) -> None:
    source = _rows_file(nstarx_home / "data", iris_data)
    job = _start(server.url, {"deployment": "iris", "input": str(source), "chunk_size": 2000,
                              "parallelism": 4})  # fmt: skip
    assert job["state"] in ("queued", "running")
    assert job["rows_total"] == ROWS
    done = _wait(server.url, job["id"])
    _check_output(done, iris_model, source)
    assert Path(done["output"]).is_relative_to(nstarx_home / "server" / "jobs")
    listed = httpx.get(f"{server.url}/nstarx/v1/jobs", headers=_admin()).json()
    assert [j["id"] for j in listed] == [job["id"]]
    # The chunks went through the data plane: counted in the model's metrics.
    metrics = httpx.get(f"{server.url}/metrics", headers=_admin()).text
    assert 'protocol="batch"' in metrics
    # Audited: the route's call, and which deployment the job runs.
    audit = httpx.get(f"{server.url}/nstarx/v1/audit", headers=_admin()).json()
    assert any(r["action"] == "jobs.post" and r["status"] == 201 for r in audit)
    assert any(r["action"] == "job.created" and r["model"] == "iris" for r in audit)


def test_kill_9_at_ten_random_points_loses_and_duplicates_no_row(
    server: ServerProcess,
    state_dir: Path,
    nstarx_home: Path,
    iris_data: Any,
    iris_model: LogisticRegression,
) -> None:
    source = _rows_file(nstarx_home / "data", iris_data)
    job = _start(server.url, {"deployment": "iris", "input": str(source), "chunk_size": 2000,
                              "parallelism": 2})  # fmt: skip
    chunks = ROWS // 2000
    rng = random.Random(20)
    targets = sorted(rng.sample(range(1, chunks), 10))  # kill once this many chunks are done
    process, seen = server, []
    try:
        for target in targets:
            deadline = time.monotonic() + 60
            state = _job(process.url, job["id"])
            while state["chunks_done"] < target and state["state"] == "running":
                assert time.monotonic() < deadline, state
                time.sleep(0.01)
                state = _job(process.url, job["id"])
            time.sleep(rng.uniform(0, 0.05))  # somewhere inside the next chunks
            process.process.kill()  # SIGKILL: no shut-down, no flush
            process.process.wait()
            process.stop()
            seen.append(state["chunks_done"])
            process = start_server("--state-dir", str(state_dir), auth=True)
        done = _wait(process.url, job["id"])
    finally:
        process.stop()
    assert len(seen) == 10, seen  # chunks done at each kill
    assert sum(0 < done_then < chunks for done_then in seen) >= 5, seen  # most hit a running job
    _check_output(done, iris_model, source)
    assert not list((state_dir / "jobs" / job["id"] / "parts").glob(".*"))  # no temp left


def test_a_cancelled_job_stops_and_writes_no_output(
    server: ServerProcess, nstarx_home: Path, iris_data: Any
) -> None:
    source = _rows_file(nstarx_home / "data", iris_data)
    job = _start(server.url, {"deployment": "iris", "input": str(source), "chunk_size": 50,
                              "parallelism": 1})  # fmt: skip
    cancelled = httpx.post(f"{server.url}/nstarx/v1/jobs/{job['id']}/cancel", headers=_admin())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    first = _job(server.url, job["id"])
    time.sleep(0.5)
    later = _job(server.url, job["id"])
    assert later["state"] == "cancelled"
    assert later["rows_done"] == first["rows_done"] < ROWS
    assert not Path(later["output"]).exists()
    gone = httpx.delete(f"{server.url}/nstarx/v1/jobs/{job['id']}", headers=_admin())
    assert gone.status_code == 204
    assert httpx.get(f"{server.url}/nstarx/v1/jobs/{job['id']}",
                     headers=_admin()).status_code == 404  # fmt: skip


def test_bad_jobs_are_refused_with_a_clear_4xx(
    server: ServerProcess, nstarx_home: Path, tmp_path: Path, iris_data: Any
) -> None:
    source = _rows_file(nstarx_home / "data", iris_data, rows=10)
    outside = _rows_file(tmp_path / "outside", iris_data, rows=10)
    garbage = nstarx_home / "data" / "bad.parquet"
    garbage.write_bytes(b"not parquet at all")
    no_features = nstarx_home / "data" / "ids.csv"
    no_features.write_text("row_id\n1\n2\n")
    header_only = nstarx_home / "data" / "empty.csv"
    header_only.write_text("row_id,sepal_length\n")
    _, key = key_store().create("caller", ["predict:iris"])  # the server reads keys on change
    _, manager = key_store().create("manager", ["manage:iris"])
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"deployment": "nope", "input": str(source)}, 404, "no deployment or pipeline 'nope'"),
        ({"deployment": "iris", "input": str(outside)}, 403, "not in a folder this server"),
        ({"deployment": "iris", "input": str(source), "output": str(tmp_path / "o.csv")}, 403,
         "output:"),
        ({"deployment": "iris", "input": str(garbage)}, 400, "cannot be read as parquet"),
        ({"deployment": "iris", "input": str(source) + ".missing"}, 400, "is not a file"),
        ({"deployment": "iris", "input": str(source), "format": "xls"}, 400, "format"),
        ({"deployment": "iris", "input": str(header_only)}, 400, "has no rows"),
        ({"deployment": "iris", "input": str(source), "chunk_size": 0}, 400, "chunk_size"),
        ({"deployment": "iris", "input": "s3://bucket/rows.csv"}, 400, "not a local file"),
        ({"deployment": "iris", "input": str(source), "passthrough": ["x"]}, 400, "column 'x'"),
        ({"deployment": "iris", "input": str(source), "output": str(source.with_suffix(".xls"))},
         400, ".xls"),
    ]  # fmt: skip
    for body, status, words in cases:
        answer = httpx.post(f"{server.url}/nstarx/v1/jobs", json=body, headers=_admin())
        assert answer.status_code == status, (body, answer.text)
        assert words in answer.json()["error"], (body, answer.text)
    # A file whose columns the model does not take: the job fails and says why.
    failed = _wait(server.url, _start(server.url, {"deployment": "iris",
                                                   "input": str(no_features)})["id"])  # fmt: skip
    assert failed["state"] == "failed"
    assert "no column 'sepal_length'" in failed["errors"][0]
    # A key that may only call iris cannot start a job on it, nor see the jobs.
    headers = {"Authorization": f"Bearer {key}"}
    body = {"deployment": "iris", "input": str(source)}
    refused = httpx.post(f"{server.url}/nstarx/v1/jobs", json=body, headers=headers)
    assert refused.status_code == 403, refused.text
    assert httpx.get(f"{server.url}/nstarx/v1/jobs", headers=headers).json() == []
    assert httpx.get(f"{server.url}/nstarx/v1/jobs/{failed['id']}",
                     headers=headers).status_code == 404  # fmt: skip
    allowed = httpx.post(f"{server.url}/nstarx/v1/jobs", json=body,
                         headers={"Authorization": f"Bearer {manager}"})  # fmt: skip
    assert allowed.status_code == 201, allowed.text


def test_deployment_batch_runs_a_dataframe_from_the_notebook(
    server: ServerProcess,
    state_dir: Path,
    nstarx_home: Path,
    iris_data: Any,
    iris_model: LogisticRegression,
) -> None:
    x, _ = iris_data
    frame = pd.DataFrame(np.resize(x, (5000, 4)), columns=list(IRIS_FEATURES))
    frame.insert(0, "key", [f"k{i}" for i in range(len(frame))])
    deployment = Deployment("iris", LocalBackend(state_dir, timeout_s=60))
    try:
        job = deployment.batch(frame, chunk_size=1000)
        assert job.wait(timeout_s=120) is job
        assert job.state == "succeeded"
        out = job.result()
    finally:
        deployment.close()
    assert out["key"].tolist() == frame["key"].tolist()
    expected = iris_model.predict(frame[list(IRIS_FEATURES)].to_numpy())
    assert (out["prediction"].to_numpy() == expected).all()
    assert repr(job).endswith("succeeded, 5000/5000 rows)")
    assert not list((nstarx_home / "batch").iterdir())  # the DataFrame's file went with the job


def test_nstarx_batch_runs_shows_and_cancels_jobs(
    server: ServerProcess,
    nstarx_home: Path,
    iris_data: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = _rows_file(nstarx_home / "data", iris_data, rows=3000)
    output = nstarx_home / "data" / "scored.jsonl"
    assert main(["batch", "run", "iris", str(source), "--output", str(output),
                 "--chunk-size", "500", "--wait"]) == 0  # fmt: skip
    line = capsys.readouterr().out.strip()
    job_id = line.split()[0]
    assert "succeeded  3000/3000 rows" in line
    scored = pd.read_json(output, lines=True)
    assert scored["row_id"].tolist() == list(range(3000))
    assert main(["batch", "status", job_id]) == 0
    assert capsys.readouterr().out.startswith(job_id)
    big = _rows_file(nstarx_home / "big", iris_data)
    assert main(["batch", "run", "iris", str(big), "--chunk-size", "20",
                 "--parallelism", "1"]) == 0  # fmt: skip
    running = capsys.readouterr().out.split()[0]
    assert main(["batch", "cancel", running]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["batch", "status"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["batch", "run", "nope", str(source)]) == 2
    assert "no deployment or pipeline 'nope'" in capsys.readouterr().err


def test_a_pipeline_job_over_json_lines_keeps_the_row_order(
    server: ServerProcess, state_dir: Path, nstarx_home: Path, iris_data: Any
) -> None:
    from tests.integration.test_pipelines import _iris_pipeline

    backend = LocalBackend(state_dir, timeout_s=60)
    try:
        _iris_pipeline("deployment:iris").deploy(backend=backend)
    finally:
        backend.close()
    x, _ = iris_data
    frame = pd.DataFrame(np.resize(x, (900, 4)), columns=list(IRIS_FEATURES))
    frame.insert(0, "row_id", np.arange(len(frame)))
    source = nstarx_home / "data" / "rows.jsonl"
    source.parent.mkdir(parents=True)
    frame.to_json(source, orient="records", lines=True)
    body = {"deployment": "flowers", "input": str(source), "chunk_size": 100,
            "passthrough": ["row_id"]}  # fmt: skip
    done = _wait(server.url, _start(server.url, body)["id"])
    assert done["state"] == "succeeded", done
    out = pd.read_json(done["output"], lines=True)
    assert out["row_id"].tolist() == list(range(900))
    assert {"species", "confidence", "sure"} <= set(out.columns)


def test_chunks_the_models_limits_turn_away_are_retried(
    state_dir: Path, named_iris: Path, nstarx_home: Path, iris_data: Any
) -> None:
    """One prediction at a time and one waiting: most of 8 chunks in flight get 503, then go."""
    limits = ("--container-concurrency", "1", "--max-queue", "1")
    process = start_server("--state-dir", str(state_dir), "--model", f"iris={named_iris}",
                           *limits, auth=True)  # fmt: skip
    try:
        source = _rows_file(nstarx_home / "data", iris_data, rows=20_000)
        job = _start(process.url, {"deployment": "iris", "input": str(source),
                                   "chunk_size": 250, "parallelism": 8})  # fmt: skip
        done = _wait(process.url, job["id"])
        assert done["state"] == "succeeded", done
        metrics = httpx.get(f"{process.url}/metrics", headers=_admin()).text
    finally:
        process.stop()
    assert pd.read_csv(done["output"])["row_id"].tolist() == list(range(20_000))
    rejected = [line for line in metrics.splitlines()
                if line.startswith("nstarx_requests_total") and 'protocol="batch"' in line
                and 'status="unavailable"' in line]  # fmt: skip
    assert rejected, "no chunk was turned away: the limits did not apply"
