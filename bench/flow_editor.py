"""The flow editor's front end in Chromium: first render of a big pipeline, edit → problems.

The page loads the built `flow.js` (nstarx_jupyter/notebook/static) with a stand-in for the
anywidget model; its `save_changes` hands the spec to a real `FlowEditor` in this process
(through Playwright's `expose_function`, in place of the kernel's comm), which validates it
and answers with `problems`, as in a notebook. Figures: the median of --runs runs.

- first render: from `render()` to the frame where every node of the pipeline is in the DOM
  (the canvas fits the whole pipeline in view, so all of them are drawn);
- edit → problems: from an input event in the properties form (the model node's `model`,
  filled in or cleared) to the frame where the node's problems say so; five edits a run, 150
  ms of each is the editor's debounce before it sends the spec. The process's first edit also
  opens the model registry (to check that the model exists): it is reported apart.

Usage: python bench/flow_editor.py [--runs 5] [--nodes 10 200]   (needs /usr/bin/chromium)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "nstarx_jupyter" / "notebook" / "static"
ORIGIN = "http://flow.bench"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
SYNCED: set[str] = set()
"""The editor's synced traits: a command's answer carries them back to the page."""

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="flow.css"></head><body style="margin:0">
<div id="root" style="width:1360px"></div>
<script type="module">
const state = JSON.parse(document.getElementById("state").textContent);
const listeners = new Map();
const fire = (name) => (listeners.get(name) || []).slice().forEach((cb) => cb());
const model = {
  get: (key) => state[key],
  set: (key, value) => { state[key] = value; fire(`change:${key}`); },
  on: (name, cb) => listeners.set(name, [...(listeners.get(name) || []), cb]),
  off: (name, cb) => listeners.set(name, (listeners.get(name) || []).filter((f) => f !== cb)),
  save_changes: async () => {
    const answer = JSON.parse(await window.pySync(JSON.stringify(state.spec)));
    for (const [key, value] of Object.entries(answer)) model.set(key, value);
  },
  send: () => {},
};
const experimental = {
  invoke: async (name, msg) => {
    const { answer, traits } = JSON.parse(await window.pyInvoke(name, JSON.stringify(msg ?? {})));
    for (const [key, value] of Object.entries(traits)) {
      if (JSON.stringify(value) !== JSON.stringify(state[key])) model.set(key, value);
    }
    return [answer, []];
  },
};
window.benchRender = async () => {
  const widget = (await import("./flow.js")).default;
  const start = performance.now();
  widget.render({ model, el: document.getElementById("root"), experimental });
  const want = state.spec.nodes.length;
  await new Promise((done) => {
    const check = () => {
      if (document.querySelectorAll(".react-flow__node").length >= want) done();
      else requestAnimationFrame(check);
    };
    check();
  });
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - start;
};
window.benchState = state;
</script></body></html>"""


def _at(i: int) -> dict[str, float]:
    """Twenty nodes a row."""
    return {"x": 260.0 * (i % 20), "y": 120.0 * (i // 20)}


def chain(n: int) -> dict[str, Any]:
    """A pipeline of n nodes in a chain: input processors, a model, an output formatter."""
    nodes: list[dict[str, Any]] = []
    for i in range(n - 2):
        nodes.append({"id": f"step-{i}", "component": "coerce" if i % 2 else "scale",
                      "config": {}, "position": _at(i)})  # fmt: skip
    nodes.append({"id": "model-1", "component": "model", "config": {}, "position": _at(n - 2)})
    fields = {"fields": {"y": "prediction"}}
    nodes.append({"id": "fields-1", "component": "fields", "config": fields,
                  "position": _at(n - 1)})  # fmt: skip
    edges = [
        {"id": f"e{i}", "source": a["id"], "source_port": "out", "target": b["id"],
         "target_port": "in"}
        for i, (a, b) in enumerate(itertools.pairwise(nodes))
    ]  # fmt: skip
    return {"name": "bench", "nodes": nodes, "edges": edges}


def open_editor(page: Page, spec: dict[str, Any]) -> float:
    """Load the widget on `page` over a real FlowEditor; returns the first render's ms."""
    from nstarx_jupyter.notebook.flow import FlowEditor

    editor = FlowEditor(spec, height=900)
    state = {key: getattr(editor, key) for key in editor.keys if not key.startswith("_")}
    SYNCED.update(state)

    def sync(text: str) -> str:
        editor.spec = json.loads(text)
        return json.dumps({"problems": editor.problems, "node_ports": editor.node_ports})

    def invoke(name: str, text: str) -> str:
        answer, _ = getattr(editor, name)(json.loads(text), [])
        traits = {key: getattr(editor, key) for key in SYNCED}
        return json.dumps({"answer": answer, "traits": traits}, default=str)

    html = PAGE.replace("</body>", f'<script id="state" type="application/json">'
                        f"{json.dumps(state, default=str)}</script></body>")  # fmt: skip

    def serve(route: Route) -> None:
        name = route.request.url.removeprefix(ORIGIN + "/")
        if name == "index.html":
            route.fulfill(body=html, content_type="text/html")
        elif (STATIC / name).is_file():
            kind = "text/javascript" if name.endswith(".js") else "text/css"
            route.fulfill(body=(STATIC / name).read_bytes(), content_type=kind)
        else:
            route.fulfill(status=404)

    page.route(f"{ORIGIN}/**", serve)
    page.expose_function("pySync", sync)
    page.expose_function("pyInvoke", invoke)
    page.goto(f"{ORIGIN}/index.html")
    return float(page.evaluate("window.benchRender()"))


EDIT = """async ([node, value]) => {
  const input = document.querySelector('.nstarx-flow__side input[name="model"]');
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
  const start = performance.now();
  setter.call(input, value);
  input.dispatchEvent(new Event("input", { bubbles: true }));
  const box = document.querySelector(`.react-flow__node[data-id="${node}"] .nstarx-flow__node`);
  const missing = () => (box.getAttribute("title") || "").includes("missing required config");
  const gone = () => missing() === (value === "");
  const limit = start + 10000;
  await new Promise((done, fail) => {
    const check = () => gone() ? done() : performance.now() > limit ? fail(new Error("timeout"))
      : requestAnimationFrame(check);
    check();
  });
  return performance.now() - start;
}"""


def measure(nodes: int) -> tuple[float, list[float]]:
    """One run in a fresh browser: first render, then one edit's round trip."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            first = open_editor(page, chain(nodes))
            page.locator('.react-flow__node[data-id="model-1"]').click()
            page.locator('.nstarx-flow__side input[name="model"]').wait_for()
            edits = [float(page.evaluate(EDIT, ["model-1", value]))
                     for value in ("models:/bench/1", "", "models:/bench/2", "",
                                   "models:/bench/3")]  # fmt: skip
        finally:
            browser.close()
    return first, edits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, nargs="*", default=[10, 200])
    args = parser.parse_args()
    os.environ["NSTARX_HOME"] = tempfile.mkdtemp(prefix="nstarx-bench-")
    print("| nodes | first render ms | edit → problems ms (p50) | (max) | runs |")
    print("|---|---|---|---|---|")
    cold: float | None = None
    for count in args.nodes:
        renders, edits = [], []
        for _ in range(args.runs):
            first, times = measure(count)
            if cold is None:  # the process's first model check opens the registry
                cold, times = times[0], times[1:]
            renders.append(first)
            edits += times
        print(f"| {count} | {statistics.median(renders):.0f} | {statistics.median(edits):.0f} "
              f"| {max(edits):.0f} | {args.runs} |", flush=True)  # fmt: skip
    print(f"\nThe first edit of the process (it opens the model registry): {cold:.0f} ms")


if __name__ == "__main__":
    main()
