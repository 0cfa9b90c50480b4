"""The flow editor's first display of a pipeline built in code (issue 22, item 1).

`FlowEditor(pipe)` on notebooks/02-pipelines.ipynb's 10-node fraud pipeline, whose nodes have no
positions: laid out in layers (the router's three branches side by side), at a zoom whose text
can be read, with a minimap in proportion to the canvas; an empty editor says what to do.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import SCREENSHOTS
from tests.ui.flow_steps import node

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.ui.conftest import Lab

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.xdist_group("ui"),
              pytest.mark.timeout(600)]  # fmt: skip

NOTEBOOK = "flow-first-display.ipynb"
# The fraud pipeline of notebooks/02-pipelines.ipynb, its models named but not trained (the
# layout does not need them).
FRAUD = """\
import nstarx_jupyter as nsx

FEATURES = ["amount", "hour", "merchant_risk", "distance_km", "account_age_days", "tx_last_24h"]
pipe = nsx.Pipeline(name="fraud-detector")
pipe.add("validate", "check", schema={"type": "object", "required": ["amount"]})
pipe.add("impute", "fill", strategy="median", columns=FEATURES)
pipe.add("outliers", "odd", method="zscore", columns=["amount", "distance_km"], threshold=4)
pipe.add("router", "route",
         branches=[{"name": "large", "when": [{"field": "amount", "op": ">", "value": 1000}]}])
for node_id, uri, prefix in (("lr", "models:/fraud-lr/1", "lr_"),
                             ("lr-large", "models:/fraud-lr/1", "lr_"),
                             ("rf", "models:/fraud-rf/1", "rf_")):
    pipe.add("model", node_id, model=uri, output_prefix=prefix, features=FEATURES)
pipe.add("ensemble", "combine", members=["lr_", "rf_"], method="mean",
         score_field="probabilities.1", output="fraud_score")
pipe.add("threshold", "decide", field="fraud_score", threshold=0.5, output="is_fraud")
pipe.add("fields", "answer", fields={"is_fraud": "is_fraud", "fraud_score": "fraud_score"})
pipe.chain("check", "fill", "odd", "route")
pipe.connect("route", "rf", source_port="large")
pipe.connect("route", "lr-large", source_port="large")
pipe.connect("route", "lr", source_port="default")
for scorer in ("lr", "lr-large", "rf"):
    pipe.connect(scorer, "combine")
pipe.chain("combine", "decide", "answer")
nsx.FlowEditor(pipe)"""
EMPTY = """\
nsx.FlowEditor(name="blank", height=360)"""
READABLE_ZOOM = 0.6


def _notebook() -> dict[str, object]:
    cells: list[dict[str, object]] = [{"cell_type": "code", "execution_count": None,
              "metadata": {}, "outputs": [],
              "source": source} for source in (FRAUD, EMPTY)]  # fmt: skip
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3",
            "display_name": "Python 3", "language": "python"}}, "nbformat": 4,
            "nbformat_minor": 5}  # fmt: skip


def test_a_pipeline_without_positions_opens_laid_out_and_readable(lab: Lab, page: Page) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (lab.root_dir / NOTEBOOK).write_text(json.dumps(_notebook()))
    page.goto(lab.page_url(f"lab/tree/{NOTEBOOK}"))
    kernel_idle = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$"))
    expect(kernel_idle).to_be_visible(timeout=120_000)
    page.get_by_role("menubar").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menu").get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()

    editors = page.locator(".nstarx-flow")
    expect(editors).to_have_count(2, timeout=180_000)
    editor, empty = editors.nth(0), editors.nth(1)
    editor.scroll_into_view_if_needed()
    expect(node(editor, "answer")).to_have_count(1)
    page.wait_for_timeout(800)  # the first fit runs once every node is measured

    viewport = editor.locator(".react-flow__viewport")
    transform = viewport.evaluate("(el) => getComputedStyle(el).transform")
    zoom = float(transform.removeprefix("matrix(").split(",")[0])
    assert zoom >= READABLE_ZOOM, f"fitted to {zoom:.2f}: node text unreadable"

    # Layers, not one row: the branches side by side on one layer, below the router.
    boxes = {}
    for node_id in ("check", "route", "lr", "lr-large", "rf", "combine"):
        box = node(editor, node_id).bounding_box()
        assert box is not None, node_id
        boxes[node_id] = box
    branch_tops = {round(boxes[b]["y"]) for b in ("lr", "lr-large", "rf")}
    assert max(branch_tops) - min(branch_tops) <= 2, boxes
    assert len({round(boxes[b]["x"]) for b in ("lr", "lr-large", "rf")}) == 3, boxes
    assert boxes["check"]["y"] < boxes["route"]["y"] < boxes["lr"]["y"] < boxes["combine"]["y"]
    # ... shown from its start: the first step is inside the canvas.
    canvas = editor.locator(".nstarx-flow__canvas").bounding_box()
    assert canvas is not None
    assert canvas["y"] <= boxes["check"]["y"] < canvas["y"] + canvas["height"] / 2

    # The minimap in proportion to the canvas, not a fixed 200 x 150 over a third of it.
    minimap = editor.locator(".react-flow__minimap svg").bounding_box()
    assert minimap is not None
    assert minimap["width"] <= 0.2 * canvas["width"] + 1, (minimap, canvas)
    shape, canvas_shape = minimap["height"] / minimap["width"], canvas["height"] / canvas["width"]
    assert abs(shape - min(1.0, canvas_shape)) < 0.05, (minimap, canvas)
    editor.screenshot(path=SCREENSHOTS / "flow-first-display.png")

    expect(empty.get_by_test_id("flow-empty")).to_contain_text("Drag a component here")
