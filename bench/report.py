"""Write the results table and the target ratios into bench/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _find(rows: list[dict[str, Any]], **want: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in want.items())), None)


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str = "rps") -> float | None:
    if a is None or b is None or not b[key]:
        return None
    return a[key] / b[key]


def _targets(res: dict[str, Any]) -> list[str]:
    rows, inproc = res["rows"], res["in_process"]
    lines = ["| target | measured | met |", "|---|---|---|"]

    def add(text: str, value: float | None, ok: bool | None, fmt: str = "{:.2f}×") -> None:
        shown = "n/a" if value is None else fmt.format(value)
        lines.append(f"| {text} | {shown} | {'n/a' if ok is None else ('✓' if ok else '✗')} |")

    for c in (8, 64):
        ours = _find(rows, server="ours", model="iris", scenario="V2 REST 1 row", c=c)
        ks = _find(rows, server="kserve", model="iris", scenario="V2 REST 1 row", c=c)
        r = _ratio(ours, ks)
        add(f"iris V2 REST 1 row c={c}: ≥ 2.5× KServe req/s", r, None if r is None else r >= 2.5)
    ours = _find(rows, server="ours", model="iris", scenario="V2 REST 1 row", c=64)
    ks = _find(rows, server="kserve", model="iris", scenario="V2 REST 1 row", c=64)
    r = None if ours is None or ks is None else ours["p99_ms"] / ks["p99_ms"]
    add("iris V2 REST 1 row c=64: p99 ≤ 0.5× KServe's", r, None if r is None else r <= 0.5)
    variants = (("ours", ""), ("ours, batching off", " (batching off)"))
    for c in (8, 64):
        for server, note in variants:
            found = _find(rows, server=server, model="iris", scenario="V2 REST 1 row", c=c)
            r = None if found is None else found["rps"] / inproc["iris_codec_predict"]
            add(f"iris V2 REST 1 row c={c}{note}: ≥ 70 % of in-process decode+predict+encode", r,
                None if r is None else r >= 0.7, "{:.0%}")  # fmt: skip
    off = _find(rows, server="ours, batching off", model="iris", scenario="V2 REST 1 row", c=64)
    r = None if off is None or ks is None else off["p99_ms"] / ks["p99_ms"]
    add("(batching off) iris c=64: p99 ≤ 0.5× KServe's", r, None if r is None else r <= 0.5)
    for c in (8, 64):
        g = _find(rows, server="ours", scenario="V2 gRPC 1 row", c=c)
        gk = _find(rows, server="kserve", scenario="V2 gRPC 1 row", c=c)
        r = _ratio(g, gk)
        add(f"gRPC c={c}: ≥ 2× KServe's gRPC", r, None if r is None else r >= 2)
    g = _find(rows, server="ours", scenario="V2 gRPC 1 row", c=8)
    for key, text in (("grpc_client_ceiling", "threaded"), ("grpc_aio_ceiling", "grpc.aio")):
        ceiling = inproc.get(key)
        r = None if g is None or not ceiling else g["rps"] / ceiling
        add(f"(ours c=8 over a fixed-answer {text} server's rate)", r, None, "{:.0%}")
    for server, note in variants:
        rf = _find(rows, server=server, model="forest", c=8)
        r = None if rf is None else rf["rps"] / inproc["forest_predict"]
        add(f"random forest c=8{note}: ≥ 90 % of in-process predict", r,
            None if r is None else r >= 0.9, "{:.0%}")  # fmt: skip
    on = _find(rows, server="ours, batching on", model="forest", c=64)
    off = _find(rows, server="ours, batching off", model="forest", c=64)
    r = _ratio(on, off)
    add("random forest, 64 clients: batching ≥ 5× batching off", r, None if r is None else r >= 5)
    return lines


def write_readme(res: dict[str, Any], readme: Path, versions: dict[str, str]) -> None:
    """Replace the block between the markers with this run's tables."""
    out = [START, "", f"Machine: {versions['cpu']}, {versions['cores']} cores; Python "
           f"{versions['python']}; nstarx-jupyter {versions['nstarx-jupyter']}, kserve "
           f"{versions['kserve']}, mlserver {versions['mlserver']}, scikit-learn "
           f"{versions['scikit-learn']}. Warm-up {res['args']['warmup_s']} s, measured "
           f"{res['args']['duration_s']} s per row.", "",
           "| server | model | scenario | c | req/s | p50 ms | p99 ms | errors |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res["rows"]:
        out.append(
            f"| {r['server']} | {r['model']} | {r['scenario']} | {r['c']} | "
            f"{r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
        )
    ip = res["in_process"]
    end = res.get("in_process_end", ip)
    out += ["", "In-process ceilings (one core), measured before the first row and again after "
            f"the last: iris `model.predict` 1 row {ip['iris_predict']:.0f}/s "
            f"({end['iris_predict']:.0f}/s at the end); iris JSON decode + predict + JSON encode "
            f"{ip['iris_codec_predict']:.0f}/s ({end['iris_codec_predict']:.0f}/s); random "
            f"forest `predict` 1 row {ip['forest_predict']:.0f}/s ({end['forest_predict']:.0f}/s)."
            " The targets use the first figures, measured next to our rows. gRPC load generator "
            "against a fixed-answer server "
            f"(`peers/grpc_echo.py`, core 0), c=8: threaded grpcio server "
            f"{ip.get('grpc_client_ceiling', 0):.0f}/s, `grpc.aio` server "
            f"{ip.get('grpc_aio_ceiling', 0):.0f}/s.", "",
            "| server | start to ready s | RSS idle, 1 model MiB | RSS, 20 models MiB |",
            "|---|---|---|---|"]  # fmt: skip
    for kind, info in res["servers"].items():
        out.append(
            f"| {kind} | {info['ready_s']:.2f} | {info['rss_idle_mib']:.0f} | "
            f"{info['rss_20_models_mib']:.0f} |"
        )
    out += [
        "",
        f"`python -X importtime -c 'import nstarx_jupyter'`: {res['import_ms']:.1f} ms "
        "(median of 5; budget 300 ms).",
        "",
        *_targets(res),
        "",
        END,
    ]
    text = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(head + "\n".join(out) + tail)
