"""The JupyterLab sidebar in Chromium: how long it takes to open on a busy registry.

A real `jupyter lab` (with the server extension) over a temporary `$NSTARX_HOME` that holds
--models registered models (MLflow, SQLite) and --deployments deployments on the local model
server. Chromium loads the lab; then, inside the page, one click on the sidebar's tab starts the
clock, and it stops at the first animation frame where the Models list shows every model and
the Deployments list every deployment (the page polls with requestAnimationFrame, so the
figure is to the frame, ±16 ms). Each run reloads the page, so the panel starts empty and asks
the server extension for everything again.

- first open: the first run after `jupyter lab` started (the server extension's first
  registry query, MLflow's import and store set-up included, unless warmed before);
- open: the later runs (median and max);
- reference, in the same runs: JupyterLab's own file browser opening a folder of 100 files
  (double click to every entry drawn), median.

Usage: python bench/lab_panel.py [--runs 7] [--models 100] [--deployments 20]
(needs /usr/bin/chromium; setting up 100 registry models takes about a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update"]  # fmt: skip
SETTINGS = {"@jupyterlab/apputils-extension/notification":
            {"checkForUpdates": False, "fetchNews": "false"}}  # fmt: skip
DRAWN_JS = """([models, deployments]) => {
  const count = (selector) => document.querySelectorAll(`#nstarx-sidebar ${selector}`).length;
  const drawn = count(".nstarx-sidebar__model") >= models && count("article") >= deployments;
  return drawn && performance.now() - window.nstarxClick;
}"""


def populate(home: Path, models: int, deployments: int) -> None:
    """Register `models` models and deploy the first `deployments` of them, in a child process."""
    script = f"""
import joblib, os
from pathlib import Path
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.sources import spec_for
from nstarx_jupyter.registry import Registry

x, y = load_iris(return_X_y=True, as_frame=True)
model = LogisticRegression(max_iter=300).fit(x, y)
registry = Registry()
for i in range({models}):
    registry.register(model, f"model-{{i:03d}}", tags={{"team": "bench"}})
path = Path(os.environ["NSTARX_HOME"]) / "iris.joblib"
joblib.dump(model, path)
backend = LocalBackend()
for i in range({deployments}):
    backend.apply(spec_for(f"models:/model-{{i:03d}}/1", f"dep-{{i:02d}}"))
"""
    subprocess.run([sys.executable, "-c", script], check=True,
                   env={**os.environ, "NSTARX_HOME": str(home)})  # fmt: skip


def start_lab(base: Path, home: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    config = base / "config"
    for plugin, settings in SETTINGS.items():
        target = config / "lab" / "user-settings" / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(settings))
    token, runtime = secrets.token_hex(16), base / "runtime"
    env = {**os.environ, "NSTARX_HOME": str(home), "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_DATA_DIR": str(base / "data"), "JUPYTER_RUNTIME_DIR": str(runtime)}  # fmt: skip
    root = base / "root"
    (root / "hundred").mkdir(parents=True)
    for i in range(100):  # the reference: JupyterLab's own file browser opening a folder
        (root / "hundred" / f"file-{i:03d}.txt").write_text("x")
    log = (base / "lab.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         "--port=0", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.workspaces_dir={base / 'workspaces'}", "--LabApp.news_url=None"],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    info = runtime / f"jpserver-{process.pid}.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            url = str(json.loads(info.read_text())["url"])
            if httpx.get(f"{url}api/status", params={"token": token}).status_code == 200:
                return process, url, token
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"jupyter lab did not start: see {base / 'lab.log'}")


def open_panel(page: Page, url: str, token: str, models: int, deployments: int) -> float:
    """Reload the lab, click the sidebar's tab; ms from the click to every row drawn."""
    page.goto(f"{url}lab?reset&token={token}")
    tab = page.get_by_role("tab", name="Model serving")
    tab.wait_for()
    page.wait_for_selector(".jp-Launcher")
    page.evaluate("window.nstarxClick = performance.now()")
    tab.click()
    try:
        drawn = page.wait_for_function(DRAWN_JS, arg=[models, deployments], polling="raf",
                                       timeout=60_000)  # fmt: skip
    except Exception:
        page.screenshot(path="lab_panel-failed.png")
        raise
    return float(drawn.json_value())


LISTED_JS = """() => {
  const items = document.querySelectorAll(".jp-FileBrowser .jp-DirListing-item").length;
  return items >= 100 && performance.now() - window.nstarxClick;
}"""


def open_folder(page: Page, url: str, token: str) -> float:
    """The same for JupyterLab's file browser: a double click on a folder of 100 files."""
    page.goto(f"{url}lab?reset&token={token}")
    folder = page.locator(".jp-DirListing-item", has_text="hundred")
    folder.wait_for()
    page.evaluate("window.nstarxClick = performance.now()")
    folder.dblclick()
    listed = page.wait_for_function(LISTED_JS, polling="raf", timeout=60_000)
    return float(listed.json_value())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--deployments", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nstarx-lab-bench-") as tmp:
        base = Path(tmp)
        home = base / "nstarx-home"
        started = time.perf_counter()
        populate(home, args.models, args.deployments)
        print(f"set up {args.models} models, {args.deployments} deployments in "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        process, url, token = start_lab(base, home)
        try:
            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    base / "chromium", executable_path=CHROMIUM, headless=True, args=ARGS,
                    viewport={"width": 1400, "height": 1000},
                )  # fmt: skip
                page = context.pages[0] if context.pages else context.new_page()
                times, folder = [], []
                for _ in range(args.runs):  # interleaved: the same load on both
                    times.append(open_panel(page, url, token, args.models, args.deployments))
                    folder.append(open_folder(page, url, token))
                context.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
            subprocess.run([sys.executable, "-m", "nstarx_jupyter.cli", "stop"], check=False,
                           env={**os.environ, "NSTARX_HOME": str(home)})  # fmt: skip
    rest = times[1:] or times
    print(f"| {args.models} | {args.deployments} | {times[0]:.0f} | "
          f"{statistics.median(rest):.0f} | {max(rest):.0f} | "
          f"{statistics.median(folder):.0f} | {args.runs} |")  # fmt: skip


if __name__ == "__main__":
    main()
