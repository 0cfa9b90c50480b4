"""Batch jobs against in-process `model.predict` on the same file: rows per second.

    python bench/batch.py [--rows 1000000] [--chunk-sizes 2000,10000] [--parallelism 1,2,4]

An iris logistic regression (fixed seed) and a CSV of `--rows` iris rows with a `row_id` column,
in a fresh `$NSTARX_HOME`. The server (`nstarx serve --state-dir`, with a key check and audit as
users get it) runs each job from `POST /nstarx/v1/jobs` to `succeeded`, output assembled and on
disk. The in-process rows read the CSV with pandas, predict (`predict` and `predict_proba`, as
the job answers both) and write the output CSV, in one process: the ceiling a job pays its
chunking, HTTP-free data plane, part files and assembly against. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import joblib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def make_files(home: Path, rows: int) -> tuple[Path, Path]:
    """The model (joblib, feature names from a DataFrame) and the CSV of `rows` rows."""
    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = FEATURES
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x, y)
    model_path = home / "models" / "iris.joblib"
    model_path.parent.mkdir(parents=True)
    joblib.dump(model, model_path)
    frame = pd.DataFrame(np.resize(x.to_numpy(), (rows, 4)), columns=FEATURES)
    frame.insert(0, "row_id", np.arange(rows))
    data = home / "data" / "rows.csv"
    data.parent.mkdir(parents=True)
    frame.to_csv(data, index=False)
    return model_path, data


def in_process(model_path: Path, data: Path, out: Path) -> float:
    """Seconds to read, predict (labels and probabilities) and write, in this process."""
    started = time.perf_counter()
    model = joblib.load(model_path)
    frame = pd.read_csv(data)
    features = frame[FEATURES]
    proba = model.predict_proba(features)
    result = pd.DataFrame({"row_id": frame["row_id"], "prediction": model.predict(features),
                           "confidence": proba.max(axis=1)})  # fmt: skip
    for index, label in enumerate(model.classes_):
        result[f"probabilities.{label}"] = proba[:, index]
    result.to_csv(out, index=False)
    return time.perf_counter() - started


def run_job(url: str, headers: dict[str, str], body: dict[str, object]) -> float:
    """Seconds from the job's POST to its `succeeded`."""
    started = time.perf_counter()
    made = httpx.post(f"{url}/nstarx/v1/jobs", json=body, headers=headers, timeout=600)
    made.raise_for_status()
    job_id = made.json()["id"]
    while True:
        job = httpx.get(f"{url}/nstarx/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    if job["state"] != "succeeded":
        raise SystemExit(f"job {job_id} {job['state']}: {job['errors']}")
    httpx.delete(f"{url}/nstarx/v1/jobs/{job_id}", headers=headers)
    return seconds


def main() -> None:
    """Run the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-sizes", default="2000,10000")
    parser.add_argument("--parallelism", default="1,2,4")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="nstarx-batch-bench-"))
    os.environ["NSTARX_HOME"] = str(home)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from nstarx_jupyter.security import admin_token
    from nstarx_jupyter.security.home import security_dir
    from tests.integration.server import start_server

    model_path, data = make_files(home, args.rows)
    rows: list[tuple[str, float]] = []
    seconds = in_process(model_path, data, home / "data" / "in_process.csv")
    rows.append(("in-process read + predict + write", seconds))
    server = start_server("--state-dir", str(home / "server"), auth=True, timeout_s=120)
    try:
        headers = {"Authorization": f"Bearer {admin_token(security_dir())}"}
        spec = {"storage_uri": str(model_path), "trusted": True}
        httpx.put(f"{server.url}/nstarx/v1/deployments/iris", json=spec, headers=headers,
                  timeout=120).raise_for_status()  # fmt: skip
        for size in (int(v) for v in args.chunk_sizes.split(",")):
            for parallelism in (int(v) for v in args.parallelism.split(",")):
                body = {"deployment": "iris", "input": str(data), "chunk_size": size,
                        "parallelism": parallelism}  # fmt: skip
                rows.append((f"job, chunk {size}, parallelism {parallelism}",
                             run_job(server.url, headers, body)))  # fmt: skip
    finally:
        server.stop()
    base = rows[0][1]
    print(f"{args.rows:,} rows of iris (CSV in, CSV out)\n")
    print(f"| {'run':<40} | {'seconds':>8} | {'rows/s':>10} | {'vs in-process':>13} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 12}|{'-' * 15}|")
    for name, secs in rows:
        print(f"| {name:<40} | {secs:>8.2f} | {args.rows / secs:>10,.0f} | "
              f"{base / secs:>12.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
