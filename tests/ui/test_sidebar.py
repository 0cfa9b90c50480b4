"""The "Model serving" sidebar in a real JupyterLab: a registered model to a canary, and keys."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from nstarx_jupyter.deployment.local import LocalBackend
from tests.ui.conftest import SCREENSHOTS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Locator, Page, Route

    from tests.ui.conftest import Lab

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.xdist_group("ui"),
              pytest.mark.timeout(900)]  # fmt: skip

MODEL = "iris-ui"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
READY_TIMEOUT_MS = 120_000


@pytest.fixture
def registered(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two versions of an iris classifier in the lab's registry (`$NSTARX_HOME/mlflow`)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from nstarx_jupyter.registry import Registry

    # The lab opens the registry on a worker thread as it starts; a second first opening of the
    # same fresh SQLite store meanwhile races it through MLflow's migrations. The catalog's
    # answer comes after that thread is done.
    catalog = httpx.get(f"{lab.url}nstarx/models", timeout=120,
                        headers={"authorization": f"token {lab.token}"})  # fmt: skip
    assert catalog.status_code == 200, catalog.text
    monkeypatch.setenv("NSTARX_HOME", str(lab.nstarx_home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    iris = load_iris(as_frame=True)
    x = iris.data.set_axis(COLUMNS, axis=1)
    registry = Registry()
    for c in (1.0, 0.1):
        model = LogisticRegression(C=c, max_iter=500).fit(x, iris.target)
        registry.register(model, MODEL, input_example=x.head(2), tags={"task": "iris"})
    return lab.nstarx_home


@pytest.fixture
def backend(registered: Path) -> Iterator[LocalBackend]:
    """The lab's local server, stopped first: the test starts it from the sidebar's header."""
    local = LocalBackend(registered / "server")
    local.stop()  # the UI tests before this one may have started it; they are done with it
    yield local
    local.close()


def test_a_model_is_deployed_canaried_and_keyed_from_the_sidebar(
    lab: Lab, page: Page, backend: LocalBackend
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(lab.page_url("lab"))
    expect(page.get_by_role("tab", name="Model serving")).to_be_visible(timeout=60_000)
    _run_command(page, "Open the Model Serving Sidebar")
    sidebar = page.locator("#nstarx-sidebar")
    expect(sidebar.get_by_role("heading", name="Model serving")).to_be_visible(timeout=60_000)

    # The header: the server is not running until the button starts it.
    server_state = sidebar.get_by_role("status", name="Local server state")
    expect(server_state).to_have_text("Not running", timeout=30_000)
    sidebar.get_by_role("button", name="Start server").click()
    expect(server_state).to_contain_text("Running at http", timeout=READY_TIMEOUT_MS)

    # The catalog, searched on the server, and the model's versions with their metadata.
    sidebar.get_by_role("searchbox", name="Search models").fill("no such model")
    expect(sidebar.get_by_text("No model matches")).to_be_visible()
    sidebar.get_by_role("searchbox", name="Search models").fill("iris-u")
    sidebar.get_by_role("button", name=f"Model {MODEL}").click()
    versions = sidebar.get_by_role("list", name=f"Versions of {MODEL}")
    expect(
        versions.get_by_role("listitem", name=re.compile(rf"^{MODEL} version \d$"))
    ).to_have_count(2)
    expect(versions.get_by_role("listitem", name=f"{MODEL} version 1")).to_contain_text("sklearn")
    _screenshot(sidebar, "sidebar-models")

    # A failed call says why: a deployment name the server refuses.
    form = _open_deploy_form(sidebar, "1")
    expect(form.get_by_role("checkbox", name="Canary")).to_be_disabled()
    form.get_by_role("textbox", name="Deployment name").fill("Bad Name!")
    form.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Could not deploy iris-ui v1: .+"))).to_be_visible()

    # Version 1 deployed from the form; its key is shown once.
    form.get_by_role("textbox", name="Deployment name").fill(MODEL)
    form.get_by_role("button", name="Deploy", exact=True).click()
    minted = sidebar.get_by_role("status", name=f"API key for {MODEL}")
    expect(minted).to_contain_text("will not be shown again", timeout=READY_TIMEOUT_MS)
    key = minted.get_by_test_id("once-key").inner_text()
    _screenshot(sidebar, "sidebar-deployed-key")
    minted.get_by_role("button", name="Done").click()
    card = sidebar.get_by_role("article", name=MODEL)
    expect(card.get_by_role("status", name="Status: Ready")).to_be_visible(timeout=READY_TIMEOUT_MS)
    url = _api(lab, f"deployments/{MODEL}")["url"]

    with _traffic(f"{url}/predict", key):
        # Version 2 as a canary at 20 %: the card shows both revisions and the split.
        form = _open_deploy_form(sidebar, "2")
        form.get_by_role("checkbox", name="Canary").check()
        form.get_by_role("spinbutton", name="Canary percent").fill("20")
        form.get_by_role("button", name="Deploy canary").click()
        sidebar.get_by_role("region", name=f"Deployed {MODEL}").get_by_role(
            "button", name="Done"
        ).click()
        expect(card).to_contain_text("canary; stable 1", timeout=READY_TIMEOUT_MS)
        canary_share = card.get_by_role("meter", name=re.compile(r"^canary"))
        expect(canary_share).to_have_attribute("aria-valuenow", "20")
        slider = card.get_by_role("slider", name=f"Canary share of {MODEL}")
        expect(slider).to_have_value("20")

        # The slider, released at about half: the UI, the API and the server agree.
        box = slider.bounding_box()
        assert box is not None
        slider.click(position={"x": box["width"] * 0.55, "y": box["height"] / 2})
        moved = int(slider.input_value())
        assert 35 <= moved <= 75, moved
        expect(canary_share).to_have_attribute("aria-valuenow", str(moved), timeout=30_000)
        assert _api(lab, f"deployments/{MODEL}")["canary_percent"] == moved
        view = backend.traffic(MODEL)
        assert view is not None
        split = {arm.variant: arm.percent for arm in view.split}
        assert split["canary"] == pytest.approx(moved)
        assert backend.describe(MODEL).spec.canary_traffic_percent == moved

        # Live figures: the sparklines fill in as the sidebar polls every 3 s.
        expect(card.get_by_test_id("figure-p50")).to_have_text(re.compile(r"^\d+(\.\d)? ms$"),
                                                               timeout=30_000)  # fmt: skip
        expect(card.locator(".nstarx-sidebar__sparkline polyline").first).to_be_attached(
            timeout=30_000
        )
        # While the traffic is split, each arm shows its own latency and rate.
        for arm in ("stable (1)", "canary (2)"):
            expect(card.get_by_label(f"{arm} figures")).to_have_text(
                re.compile(r"^p50 \d+(\.\d)? ms · p99 \d+(\.\d)? ms · \d+(\.\d)? req/s"),
                timeout=30_000,
            )
        sidebar.get_by_role("button", name=f"Model {MODEL}").click()  # the versions fold away
        page.mouse.move(900, 500)  # no hover highlight in the picture
        page.wait_for_timeout(9_000)  # three more polls, for a sparkline worth a README
        _screenshot(sidebar, "sidebar")

    # Keys: one created (shown once) and revoked after a confirmation.
    keys = sidebar.get_by_role("form", name="Create an API key")
    keys.get_by_role("textbox", name="Key name").fill("ui-test")
    keys.get_by_role("textbox", name="Scopes").fill(f"predict:{MODEL}")
    keys.get_by_role("button", name="Create key").click()
    created = sidebar.get_by_role("status", name="New API key ui-test")
    expect(created).to_contain_text("will not be shown again")
    prefix = created.get_by_test_id("once-key").inner_text()[:12]
    row = sidebar.get_by_role("listitem", name="Key ui-test")
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Revoke ui-test").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    _screenshot(sidebar, "sidebar-keys")
    revoked = [k for k in backend.list_keys() if k.name == "ui-test"]
    assert [k.state for k in revoked] == ["revoked"]
    assert revoked[0].prefix == prefix

    # The palette's command mints one too, in dialogs.
    _run_command(page, "Create an API Key")
    page.get_by_role("dialog").locator("input").fill("palette-key")
    page.keyboard.press("Enter")
    # The palette suggests calling a named deployment (the first of the lab's, which other UI
    # tests in this lab may have made), never a wildcard (the lab refuses it).
    named = re.compile(r"^predict:[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    expect(page.get_by_role("dialog").locator("input")).to_have_value(named)
    page.keyboard.press("Enter")
    shown = page.get_by_role("dialog").get_by_role("status", name="New API key")
    expect(shown).to_contain_text("will not be shown again")
    page.get_by_role("dialog").get_by_role("button", name="Done").click()
    expect(sidebar.get_by_role("listitem", name="Key palette-key")).to_contain_text("active")

    # How to call it, copied with the key left out; its events in the main area.
    card.get_by_role("button", name="Copy cURL").click()
    expect(page.get_by_text("The cURL command copied to the clipboard")).to_be_visible()
    copied = str(page.evaluate("navigator.clipboard.readText()"))
    assert copied.startswith(f"curl {url}/predict"), copied
    assert "Bearer $NSTARX_API_KEY" in copied
    assert key not in copied
    card.get_by_role("button", name="Logs").click()
    expect(page.locator(".nstarx-logs")).to_contain_text("canary revision 2")

    # Promoted: the canary takes all the traffic; then deleted after a confirmation.
    card.get_by_role("button", name="Promote").click()
    expect(card.get_by_role("slider")).to_have_count(0, timeout=30_000)
    expect(card).not_to_contain_text("canary; stable")
    assert backend.describe(MODEL).stable is None
    card.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(sidebar.get_by_role("article", name=MODEL)).to_have_count(0, timeout=30_000)
    assert all(d.name != MODEL for d in backend.deployments())


def test_the_panel_opens_on_100_models_and_20_deployments_with_one_request_per_list(
    lab: Lab, page: Page
) -> None:
    """The server extension's answers are stubbed: this is the panel's own cost on open."""
    answers: dict[str, Any] = {
        "server": {"running": True, "url": "http://127.0.0.1:1", "grpc": None, "pid": 1,
                   "home": str(lab.nstarx_home), "version": "0"},
        "models": [_model_summary(i) for i in range(100)],
        "deployments": [_deployment_info(i) for i in range(20)],
        "keys": [],
    }  # fmt: skip
    calls: list[str] = []

    def fulfil(route: Route) -> None:
        path = route.request.url.split("/nstarx/", 1)[1].split("?", 1)[0]
        calls.append(path)
        if path in answers:
            route.fulfill(json=answers[path])
        else:
            route.fulfill(status=404, json={"error": f"not stubbed: {path}"})

    page.route(re.compile(r"/nstarx/"), fulfil)
    page.goto(lab.page_url("lab"))
    expect(page.get_by_role("tab", name="Model serving")).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1_000)
    assert calls == [], "the panel called the server before it was opened"

    page.evaluate("window.nstarxClick = performance.now()")
    page.get_by_role("tab", name="Model serving").click()
    elapsed_ms = page.wait_for_function(DRAWN, polling="raf", timeout=20_000).json_value()
    print(f"opened with 100 models and 20 deployments in {elapsed_ms:.0f} ms")
    assert sorted(calls) == ["contexts", "deployments", "keys", "models", "server"]
    sidebar = page.locator("#nstarx-sidebar")
    expect(sidebar.get_by_role("article")).to_have_count(20)
    expect(sidebar.get_by_role("status", name="Status: Failed")).to_have_count(5)
    _screenshot(sidebar, "sidebar-many")

    # Polled while shown, every 3 s; not at all once the sidebar is closed.
    page.wait_for_timeout(3_500)
    assert calls.count("deployments") >= 2
    page.get_by_role("tab", name="Model serving").click()
    expect(sidebar).to_be_hidden()
    page.wait_for_timeout(500)
    closed = calls.count("deployments")
    page.wait_for_timeout(4_000)
    assert calls.count("deployments") == closed


# Whether every row is drawn; then how long since the click (`window.nstarxClick`).
DRAWN = """() => {
  const count = (selector) => document.querySelectorAll(`#nstarx-sidebar ${selector}`).length;
  const drawn = count("article") === 20 && count(".nstarx-sidebar__model") === 100;
  return drawn && performance.now() - window.nstarxClick;
}"""


def _model_summary(i: int) -> dict[str, Any]:
    return {"name": f"model-{i:03d}", "latest_version": str(1 + i % 7),
            "aliases": {"champion": "1"} if i % 3 == 0 else {}, "tags": {"team": f"t{i % 5}"},
            "description": "", "created": "2026-01-02T03:04:05+00:00", "updated": None}  # fmt: skip


def _deployment_info(i: int) -> dict[str, Any]:
    canary = i % 4 == 1
    traffic = [{"variant": "stable", "version": "1", "percent": 70.0},
               {"variant": "canary", "version": "2", "percent": 30.0}] if canary else [
               {"variant": "primary", "version": "1", "percent": 100.0}]  # fmt: skip
    return {
        "name": f"dep-{i:02d}", "status": "Failed" if i % 4 == 3 else "Ready",
        "reason": "the model did not load" if i % 4 == 3 else None,
        "revision": 2 if canary else 1, "stable_revision": 1 if canary else None,
        "model": f"models:/model-{i:03d}/2", "stable_model": "models:/x/1" if canary else None,
        "canary_percent": 30 if canary else None, "min_replicas": 1, "max_replicas": 2,
        "auth": True, "url": f"http://127.0.0.1:1/v1/models/dep-{i:02d}",
        "traffic": traffic, "created": 1.0, "updated": 2.0,
        "metrics": {"requests": 10 * i, "rps": i / 2, "error_rate": 0.0, "p50_ms": 1.5 + i,
                    "p99_ms": 9.0 + i},
    }  # fmt: skip


def _run_command(page: Page, label: str) -> None:
    """Run a command from the palette (Ctrl+Shift+C), found by its label."""
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill(label)
    page.keyboard.press("Enter")


def _open_deploy_form(sidebar: Locator, version: str) -> Locator:
    sidebar.get_by_role("button", name=f"Deploy {MODEL} version {version}").click()
    form = sidebar.get_by_role("form", name=f"Deploy {MODEL} version {version}")
    expect(form.get_by_role("textbox", name="Deployment name")).to_have_value(MODEL)
    return form


def _api(lab: Lab, path: str) -> dict[str, Any]:
    answer = lab.api(f"nstarx/{path}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@contextmanager
def _traffic(url: str, key: str) -> Iterator[None]:
    """Predictions every 50 ms from a thread while the block runs, so the figures move."""
    stop = threading.Event()
    failures: list[str] = []

    def send() -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=10) as client:
            while not stop.wait(0.05):
                try:
                    answer = client.post(url, json=ROW, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text}")

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
    assert failures == [], failures[:3]


def _screenshot(element: Locator, name: str) -> None:
    shot = SCREENSHOTS / f"{name}.png"
    element.screenshot(path=shot)
    print(f"screenshot: {shot}")
