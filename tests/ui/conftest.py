"""A real JupyterLab on a copy of notebooks/, and Debian's Chromium driven by Playwright.

Each UI test session starts one `jupyter lab` (its own config, data, runtime and workspace
folders, `$NSTARX_HOME` and `$KUBECONFIG`, so nothing of the user's leaks in or out) and stops
it, and the local model server its kernels started, afterwards. The lab extension is the one
built in this checkout (`npm run build:prod` writes nstarx_jupyter/labextension), linked into
a `$JUPYTER_PATH` folder, which JupyterLab reads before the environment's installed copy (a
virtualenv's copy comes before the user's data folder: `JUPYTER_PREFER_ENV_PATH`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from nstarx_jupyter.deployment.local import LocalBackend

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from playwright.sync_api import Locator, Page, Route

ROOT = Path(__file__).resolve().parents[2]
BUILT_EXTENSION = ROOT / "nstarx_jupyter" / "labextension"
SCREENSHOTS = ROOT / "test-output" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
# A quiet lab: no news or update toasts over the notebook; every cell rendered, not only the
# ones in view, so what the tests look for is in the DOM.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"checkForUpdates": False, "fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}
START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Lab:
    """A running JupyterLab: where it answers, its token, its files and its log."""

    url: str
    token: str
    root_dir: Path
    nstarx_home: Path
    log: Path
    kubeconfig: Path
    """The lab's `$KUBECONFIG`: absent until a test writes one (the sidebar then lists none)."""

    def page_url(self, path: str) -> str:
        """The browser URL of `path` (e.g. `lab/tree/x.ipynb`), token included.

        `reset` starts from an empty workspace: the tabs an earlier test of the session left
        open are not restored (a run-all would otherwise go to whichever tab has the focus).
        """
        return f"{self.url}{path}?reset&token={self.token}"

    def open_sidebar(self, page: Page, answer: Callable[[Route], None]) -> Locator:
        """Open the lab with its `/nstarx/` calls answered by `answer`; the sidebar, shown."""
        page.route(re.compile(r"/nstarx/"), answer)
        page.goto(self.page_url("lab"))
        page.get_by_role("tab", name="Model serving").click()
        return page.locator("#nstarx-sidebar")

    def api(self, path: str) -> httpx.Response:
        """GET the server's REST API (e.g. `api/contents/x.ipynb`)."""
        return httpx.get(f"{self.url}{path}", headers={"authorization": f"token {self.token}"})

    def predict(self, url: str, record: Mapping[str, object]) -> dict[str, Any]:
        """POST `record` to a deployed endpoint of the lab's local server with a key for it.

        The key is minted here, scoped to the deployment the URL names (`predict:NAME`).
        """
        name = url.rstrip("/").split("/")[-2]
        made = LocalBackend(self.nstarx_home / "server").create_key(f"ui test of {name}",
                                                                   [f"predict:{name}"])  # fmt: skip
        answer = httpx.post(url, json=dict(record), timeout=30,
                            headers={"Authorization": f"Bearer {made.key}"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; without it the UI tests skip, or fail when NSTARX_REQUIRE_UI=1 (CI)."""
    if not CHROMIUM.exists():
        reason = (
            f"{CHROMIUM} is missing: apt-get install -y chromium fonts-liberation "
            "(Playwright drives Debian's Chromium; `playwright install` is not used)"
        )
        if os.environ.get("NSTARX_REQUIRE_UI") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
def lab(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`jupyter lab` on a free port over a copy of notebooks/, stopped with its servers after."""
    del chromium  # requested first: no browser, no lab to start
    base = tmp_path_factory.mktemp("lab")
    root_dir = base / "notebooks"
    ignore = shutil.ignore_patterns("conftest.py", "__pycache__", ".ipynb_checkpoints")
    shutil.copytree(ROOT / "notebooks", root_dir, ignore=ignore)
    config_dir = base / "config"
    for plugin, settings in LAB_SETTINGS.items():
        target = config_dir / "lab" / "user-settings" / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(settings))
    home, runtime_dir, log = base / "nstarx-home", base / "runtime", base / "jupyter-lab.log"
    if (BUILT_EXTENSION / "package.json").exists():  # this checkout's build, not the installed one
        linked = base / "jupyter-path" / "labextensions" / "nstarx-jupyter"
        linked.parent.mkdir(parents=True)
        linked.symlink_to(BUILT_EXTENSION, target_is_directory=True)
    kubeconfig = base / "kubeconfig"
    token = secrets.token_hex(16)
    env = {**os.environ, "NSTARX_HOME": str(home), "JUPYTER_CONFIG_DIR": str(config_dir),
           "KUBECONFIG": str(kubeconfig), "JUPYTER_PATH": str(base / "jupyter-path"),
           "JUPYTER_DATA_DIR": str(base / "data"),
           "JUPYTER_RUNTIME_DIR": str(runtime_dir),
           # the project folder, as its owner would allow it (`nstarx serve --allow-path`):
           # pipeline documents there name model files beside them
           "NSTARX_ALLOW_PATHS": str(root_dir)}  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
             "--ip=127.0.0.1", "--port=0", "--ServerApp.port_retries=0",
             f"--ServerApp.token={token}", f"--ServerApp.root_dir={root_dir}",
             f"--LabApp.workspaces_dir={base / 'workspaces'}", "--LabApp.news_url=None"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = _wait_until_serving(process, runtime_dir, token, log)
        yield Lab(url, token, root_dir, home, log, kubeconfig)
    finally:
        process.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        LocalBackend(home / "server").stop()


def _wait_until_serving(
    process: subprocess.Popen[bytes], runtime_dir: Path, token: str, log: Path
) -> str:
    """Read the bound URL from the server's info file, then wait for `/api/status`."""
    info = runtime_dir / f"jpserver-{process.pid}.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {process.returncode}:\n{log.read_text()}")
        try:
            url = str(json.loads(info.read_text())["url"])
            status = httpx.get(f"{url}api/status", headers={"authorization": f"token {token}"})
            if status.status_code == 200:
                return url
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    pytest.fail(f"jupyter lab did not answer in {START_TIMEOUT_S:.0f} s:\n{log.read_text()}")


@pytest.fixture
def page(chromium: Path, tmp_path: Path) -> Iterator[Page]:
    """A fresh headless Chromium page (its own profile), closed after the test."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile", executable_path=chromium, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
