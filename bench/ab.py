"""Interleaved A/B of builds of our server: which change is faster, on a machine that drifts.

    python bench/ab.py base=/tmp/base new=. [new-off=.:NSTARX_X=0] [--scenarios v2@8,grpc@8]

Each NAME=SRC[:VAR=VALUE...] is a source tree (a `git worktree` of another commit, say) put
first on PYTHONPATH, with extra environment variables. Every build's server starts at once,
pinned to core 0 as in `run.py`; the load (wrk, or grpc_load.py for `grpc@C`, on core 1) then
alternates between them in short slices, in turned order each round, so the drift of a shared
machine (10-15 % between runs of the same build here) falls on every build alike; each slice
also reports the server's CPU time per request, which neighbours hardly move. `--drift` gives
each build's iris a drift reference (iris' training data, over the control API) so the drift tap
samples every request; a build without drift detection says so and runs as it is. `--split`
makes iris a canary over the control API (a second revision of the same model takes 50 %), so
every request goes through the traffic router's split path. Scenarios:
`v2@C`, `v2x32@C`, `v1@C`, `records@C` (REST, C connections) and `grpc@C`. Extra server flags
go after `--flags`. Prints per scenario the mean, median and spread of req/s, the median p99,
and each build's change against the first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # the script next to this one

SCENARIOS = {  # short name: run.py's scenario, whose body and path it uses
    "v2": "V2 REST 1 row",
    "v2x32": "V2 REST 32 rows",
    "v1": "V1 :predict",
    "records": "product records",
    "grpc": "V2 gRPC 1 row",
}
STUBS = Path("nstarx_jupyter/protocol/grpc")
"""Generated gRPC stubs, which a fresh worktree lacks (they are built, not committed)."""


class Build(bench.Server):
    """Our server from the source tree on PYTHONPATH (`python -m`, not the installed script)."""

    def _command(self, models: dict[str, Path], extra: list[str]) -> list[str]:
        command = super()._command(models, extra)
        return [str(bench.ROOT / ".venv/bin/python"), "-m", "nstarx_jupyter.cli", *command[1:]]


def start(
    spec: str,
    flags: list[str],
    models: dict[str, Path],
    *,
    drift: bool = False,
    split: bool = False,
) -> tuple[str, Build]:
    """Start the build `NAME=SRC[:VAR=VALUE...]` (environment restored after).

    With `drift`, iris is a deployment made over the control API (drift detection belongs to
    deployments) with a drift reference; the server starts with a second model to wait on.
    """
    name, _, rest = spec.partition("=")
    source, *assignments = rest.split(":")
    src = Path(source).resolve()
    for stub in (bench.ROOT / STUBS).glob("inference_pb2*.py"):
        if not (src / STUBS / stub.name).exists():
            shutil.copy(stub, src / STUBS / stub.name)
    saved = dict(bench.ENV)
    bench.ENV.update(dict(a.split("=", 1) for a in assignments), PYTHONPATH=str(src))
    try:
        if not (drift or split):
            return name, Build("ours", {"iris": models["iris"]}, flags)
        state = bench.WORK / f"state-{name}"
        shutil.rmtree(state, ignore_errors=True)
        server = Build("ours", {"warm": models["iris"]}, [*flags, "--state-dir", str(state)])
        home_copy = bench.WORK / "home" / "models" / "iris"  # $NSTARX_HOME: an allowed folder
        shutil.copytree(models["iris"], home_copy, dirs_exist_ok=True)
        try:
            deploy_iris(server, home_copy)
            if drift:
                drift_reference(name, server)
            if split:
                canary_copy = home_copy.with_name("iris-canary")
                shutil.copytree(models["iris"], canary_copy, dirs_exist_ok=True)
                deploy_iris(server, canary_copy, canary_traffic_percent=50)
        except BaseException:
            server.stop()  # not yet in the caller's list of builds to stop
            raise
        return name, server
    finally:
        bench.ENV.clear()
        bench.ENV.update(saved)


WARMUP_S = 1.0


def measure(server: Build, scenario: str, body: dict[str, Path], seconds: float) -> dict[str, Any]:
    """One slice: req/s and p99 from the load tool, and the server's CPU µs per request.

    CPU time per request (user + system, from /proc, warm-up and slice together at the slice's
    rate) hardly moves when something else runs on the machine, unlike req/s: it is the figure
    to compare builds by on a shared machine.
    """
    short, _, connections = scenario.partition("@")
    key, path, _ = bench.SCENARIOS[SCENARIOS[short]]
    c = int(connections)
    before = cpu_s(server.process.pid)
    if key == "grpc":
        got = bench.grpc_load(f"127.0.0.1:{server.grpc}", "iris", c, WARMUP_S, seconds)
    else:
        got = bench.wrk(server.url + path.format(m="iris"), body[key], c, WARMUP_S, seconds)
    requests = got["rps"] * (WARMUP_S + seconds)
    got["cpu_us"] = 1e6 * (cpu_s(server.process.pid) - before) / max(requests, 1.0)
    return dict(got)


def control(server: Build) -> Any:
    """An httpx client with the admin token, for iris' deployment on the control API."""
    import httpx

    token = (bench.WORK / "home" / "security" / "admin-token").read_text().strip()
    base = f"{server.url}/nstarx/v1/deployments"
    headers = {"authorization": f"Bearer {token}", "host": "localhost"}
    return httpx.Client(base_url=base, headers=headers, timeout=60)


def deploy_iris(server: Build, model: Path, **fields: Any) -> None:
    """Deploy (or roll out) iris from `model` over the control API, with extra spec `fields`."""
    with control(server) as http:
        doc = {"storage_uri": str(model / "model.joblib"), "trusted": True, **fields}
        made = http.put("/iris", json=doc)
        if made.status_code == 400 and "trusted" in made.text:  # a build before the trust model
            made = http.put("/iris", json={k: v for k, v in doc.items() if k != "trusted"})
        made.raise_for_status()
        if fields.get("canary_traffic_percent") is not None:
            split = http.get("/iris/variants").json()
            print(f"iris' variants: {split}", file=sys.stderr)


def drift_reference(name: str, server: Build) -> None:
    """Give iris a drift reference: iris' training rows."""
    from sklearn.datasets import load_iris

    with control(server) as http:
        x = load_iris().data
        columns = {feature: x[:, i].tolist() for i, feature in enumerate(bench.FEATURES)}
        answer = http.put("/iris/drift/reference", json={"columns": columns})
        if answer.status_code == 404:
            print(f"{name}: no drift detection in this build", file=sys.stderr)
        else:
            answer.raise_for_status()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("builds", nargs="+", help="NAME=SRC[:VAR=VALUE...]")
    parser.add_argument("--scenarios", default="v2@8,grpc@8")
    parser.add_argument("--slices", type=int, default=6, help="rounds over every build")
    parser.add_argument("--seconds", type=float, default=3, help="measured per slice")
    parser.add_argument("--drift", action="store_true", help="set a drift reference on iris")
    parser.add_argument("--split", action="store_true", help="make iris a 50 %% canary")
    parser.add_argument("--flags", nargs=argparse.REMAINDER, default=[], help="server flags")
    args = parser.parse_args()
    models = bench.make_models()
    body = bench.bodies(4)
    bench.ENV["BENCH_KEY"] = bench.bench_key()
    builds = []
    try:
        for spec in args.builds:
            builds.append(start(spec, args.flags, models, drift=args.drift, split=args.split))
        scenarios = args.scenarios.split(",")
        rps: dict[tuple[str, str], list[float]] = {}
        p99: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.slices):
            for name, server in builds if round_ % 2 == 0 else builds[::-1]:
                for scenario in scenarios:
                    got = measure(server, scenario, body, args.seconds)
                    rps.setdefault((scenario, name), []).append(got["rps"])
                    p99.setdefault((scenario, name), []).append(got["p99_ms"])
                    cpu.setdefault((scenario, name), []).append(got["cpu_us"])
            print(f"round {round_ + 1}/{args.slices}", file=sys.stderr, flush=True)
    finally:
        for _, server in builds:
            server.stop()
    for scenario in scenarios:
        first = statistics.mean(rps[(scenario, builds[0][0])])
        first_cpu = statistics.median(cpu[(scenario, builds[0][0])])
        for name, _ in builds:
            runs = rps[(scenario, name)]
            mean = statistics.mean(runs)
            per = cpu[(scenario, name)]
            print(f"{scenario:10} {name:12} req/s mean {mean:7.0f} median "
                  f"{statistics.median(runs):7.0f} sd {statistics.pstdev(runs):5.0f}  "
                  f"p99 {statistics.median(p99[(scenario, name)]):6.2f} ms  "
                  f"{100 * (mean / first - 1):+5.1f} %  CPU/req median "
                  f"{statistics.median(per):6.1f} us (sd {statistics.pstdev(per):4.1f}) "
                  f"{100 * (statistics.median(per) / first_cpu - 1):+5.1f} %")  # fmt: skip


if __name__ == "__main__":
    main()
