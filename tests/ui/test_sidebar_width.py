"""The sidebar at JupyterLab's default width (issue 22, item 7).

Readable at about 250 px: the search's placeholder fits, no text under 11 px, labels not light
grey, a new key on one line beside its copy button, no button's text wrapping, dates as the
notebooks write them (`YYYY-MM-DD`), and a first slow catalog call that shows its progress.

The server extension's answers are stubbed (the lab API's shapes, as `LabService` sends them):
what is tested is how the panel lays out what it is given. The catalog answers late, as a
registry opening its MLflow store for the first time does (15.8 s measured for a new store):
the test holds it until the panel has shown its progress.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import SCREENSHOTS
from tests.ui.test_sidebar_usage import _deployment

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, Route

    from tests.ui.conftest import Lab

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.xdist_group("ui"),
              pytest.mark.timeout(600)]  # fmt: skip

SECRET = "nsx_" + "k3Y9" * 12  # as long as the keys the server mints
# How many lines the most wrapped text node under an element takes.
ONE_LINE = """(el) => {
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  let most = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const tops = [...range.getClientRects()].filter((r) => r.width > 0)
                                            .map((r) => Math.round(r.top));
    most = Math.max(most, new Set(tops).size);
  }
  return most;
}"""
SMALLEST_TEXT = """(root) => {
  let smallest = [99, ""];
  for (const el of root.querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.getClientRects().length === 0) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < smallest[0]) smallest = [size, el.className + ": " + el.textContent.trim()];
  }
  return smallest;
}"""
PLACEHOLDER_FITS = """(input) => {
  const style = getComputedStyle(input);
  const context = document.createElement("canvas").getContext("2d");
  context.font = `${style.fontSize} ${style.fontFamily}`;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return context.measureText(input.placeholder).width <= room;
}"""
# Contrast of a text's colour on white (WCAG's ratio; 4.5 is AA for small text).
CONTRAST = """(el) => {
  const [r, g, b, a] = getComputedStyle(el).color.match(/[\\d.]+/g).map(Number);
  const alpha = a === undefined ? 1 : a;
  const lin = (c) => { const v = (c * alpha + 255 * (1 - alpha)) / 255;
                       return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  return 1.05 / (lum + 0.05);
}"""


def _answers(lab: Lab) -> dict[str, Any]:
    canary = {**_deployment(), "name": "fraud-detector", "revision": 2, "stable_revision": 1,
              "model": "models:/fraud/4", "stable_model": "models:/fraud/3", "canary_percent": 20,
              "traffic": [{"variant": "stable", "version": "3", "percent": 80.0, "metrics": None},
                          {"variant": "canary", "version": "4", "percent": 20.0,
                           "metrics": None}]}  # fmt: skip
    key = {"id": "k1", "name": "deploy of fraud-detector", "prefix": SECRET[:12],
           "scopes": ["predict:fraud-detector"], "state": "active", "created": 1.79e9,
           "expires": None}  # fmt: skip
    return {
        "server": {"running": True, "url": "http://127.0.0.1:36701", "grpc": None, "pid": 1,
                   "home": str(lab.nstarx_home), "version": "0"},
        "models": [{"name": "fraud-detector-rf", "latest_version": "4",
                    "aliases": {"champion": "3"}, "tags": {"task": "fraud"}, "description": "",
                    "created": "2026-11-29T21:04:05+00:00", "updated": None}],
        "deployments": [canary], "keys": [key],
    }  # fmt: skip


def test_the_sidebar_reads_well_at_the_default_width(lab: Lab, page: Page) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    answers = _answers(lab)
    held: list[Route] = []

    def fulfil(route: Route) -> None:
        path = route.request.url.split("/nstarx/", 1)[1].partition("?")[0]
        if path == "keys" and route.request.method == "POST":
            info = {**answers["keys"][0], "id": "k2", "name": "dashboard", "prefix": SECRET[:12]}
            route.fulfill(json={"info": info, "key": SECRET})
        elif path == "models":
            held.append(route)  # answered later: a first opening of the registry
        elif path in answers:
            route.fulfill(json=answers[path])
        else:
            route.fulfill(status=404, json={"error": f"not stubbed: {path}"})

    sidebar = lab.open_sidebar(page, fulfil)

    # The slow first catalog call shows that it is under way, and for how long.
    loading = sidebar.get_by_role("status", name="Loading the registry")
    expect(loading).to_contain_text(re.compile(r"\d s"), timeout=30_000)
    expect(loading).to_contain_text("MLflow")
    for route in held:
        route.fulfill(json=answers["models"])
    model = sidebar.get_by_role("button", name="Model fraud-detector-rf")
    expect(model).to_be_visible(timeout=30_000)

    width = (sidebar.bounding_box() or {"width": 0})["width"]
    assert 240 <= width <= 320, f"not JupyterLab's default width: {width}"

    # The search says what it searches, whole.
    search = sidebar.get_by_role("searchbox", name="Search models")
    assert search.evaluate(PLACEHOLDER_FITS), search.get_attribute("placeholder")

    # Dates as in the notebooks, whatever the browser's locale.
    expect(model.locator(".nstarx-sidebar__muted")).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2}$"))

    # A new key: on one line, its copy button beside it.
    keys = sidebar.get_by_role("form", name="Create an API key")
    keys.get_by_role("textbox", name="Key name").fill("dashboard")
    keys.get_by_role("textbox", name="Scopes").fill("predict:fraud-detector")
    keys.get_by_role("button", name="Create key").click()
    created = sidebar.get_by_role("status", name="New API key dashboard")
    secret = created.get_by_test_id("once-key")
    expect(secret).to_have_text(SECRET)
    assert secret.evaluate(ONE_LINE) == 1
    copy, shown = (
        created.get_by_role("button", name="Copy key").bounding_box(),
        secret.bounding_box(),
    )
    assert copy is not None
    assert shown is not None
    assert copy["y"] < shown["y"] + shown["height"] / 2 < copy["y"] + copy["height"]

    page.mouse.move(900, 500)  # no hover highlight in the picture
    sidebar.screenshot(path=SCREENSHOTS / "sidebar-default-width.png")

    # No button's text wraps.
    card = sidebar.get_by_role("article", name="fraud-detector")
    expect(card.get_by_role("button", name="Promote")).to_be_visible()
    buttons = sidebar.get_by_role("button")
    wrapped = [_label(b) for b in buttons.all() if b.is_visible() and b.evaluate(ONE_LINE) > 1]
    assert not wrapped, f"buttons whose text wraps: {wrapped}"

    # No text under 11 px; labels dark enough to read.
    size, where = sidebar.evaluate(SMALLEST_TEXT)
    assert size >= 11, f"{size} px: {where}"
    for label in [*sidebar.locator("label > span").all(), *sidebar.locator("dt").all()]:
        if label.is_visible():
            assert label.evaluate(CONTRAST) >= 4.5, _label(label)


def _label(element: Locator) -> str:
    return element.get_attribute("aria-label") or element.inner_text()
