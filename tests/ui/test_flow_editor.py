"""The pipeline editor widget in a real JupyterLab: build, fix, run, save and deploy a pipeline."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import SCREENSHOTS
from tests.ui.flow_steps import deploy, node, save_version

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.ui.conftest import Lab

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.xdist_group("ui"),
              pytest.mark.timeout(900)]  # fmt: skip

NOTEBOOK = "flow-test.ipynb"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
TRAIN = """\
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
import nstarx_jupyter

iris = load_iris(as_frame=True)
x = iris.data.set_axis(["sepal_length", "sepal_width", "petal_length", "petal_width"], axis=1)
model = LogisticRegression(max_iter=500).fit(x, iris.target)
deployment = nstarx_jupyter.deploy(model, "iris-flow")
print("deployed", deployment.name)"""
EDITOR = f"""\
from nstarx_jupyter.notebook.flow import FlowEditor

editor = FlowEditor(name="flower-flow", sample={ROW!r}, height=640)
editor"""


def _notebook() -> dict[str, object]:
    cells: list[dict[str, object]] = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": source} for source in (TRAIN, EDITOR)
    ]  # fmt: skip
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3",
            "display_name": "Python 3", "language": "python"}}, "nbformat": 4,
            "nbformat_minor": 5}  # fmt: skip


def test_a_pipeline_is_drawn_fixed_run_saved_and_deployed_from_the_editor(
    lab: Lab, page: Page
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (lab.root_dir / NOTEBOOK).write_text(json.dumps(_notebook()))
    try:
        page.goto(lab.page_url(f"lab/tree/{NOTEBOOK}"))
        kernel_idle = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$"))
        expect(kernel_idle).to_be_visible(timeout=120_000)
        page.get_by_role("menubar").get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menu").get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()

        editor = page.locator(".nstarx-flow")
        expect(editor).to_be_visible(timeout=300_000)
        editor.scroll_into_view_if_needed()
        problems = editor.get_by_test_id("flow-problems")
        expect(problems).to_contain_text("the pipeline has no nodes")
        _screenshot(editor, "flow-empty")

        # Two components dragged from the palette, then joined port to port.
        pane = editor.locator(".react-flow__pane")
        box = pane.bounding_box()
        assert box is not None
        for name, share in (("model", 0.2), ("fields", 0.8)):
            editor.get_by_test_id(f"palette-{name}").drag_to(
                pane, target_position={"x": box["width"] * share, "y": box["height"] * 0.4}
            )
            expect(node(editor, f"{name}-1")).to_be_visible()
        _connect(page, editor, "model-1", "fields-1")
        expect(editor.locator(".react-flow__edge")).to_have_count(1)
        # dagre, in the direction that fits the canvas better: top down in this narrow one
        editor.get_by_test_id("flow-layout").click()
        page.wait_for_timeout(800)
        model_box = node(editor, "model-1").bounding_box()
        fields_box = node(editor, "fields-1").bounding_box()
        assert model_box is not None
        assert fields_box is not None
        across = model_box["x"] + model_box["width"] < fields_box["x"]
        down = model_box["y"] + model_box["height"] < fields_box["y"]
        assert across or down, (model_box, fields_box)
        assert abs(model_box["y" if across else "x"] - fields_box["y" if across else "x"]) < 2
        expect(problems).to_contain_text("missing required config 'model'")
        expect(node(editor, "model-1").locator(".nstarx-flow__node--invalid")).to_have_count(1)
        expect(node(editor, "fields-1").locator(".nstarx-flow__node--invalid")).to_have_count(1)
        _screenshot(editor, "flow-invalid")

        # Fixed in the properties form: the problems clear.
        node(editor, "model-1").click()
        editor.locator('.nstarx-flow__side input[name="model"]').fill("deployment:iris-flow")
        node(editor, "fields-1").click()
        editor.locator('.nstarx-flow__side textarea[name="fields"]').fill(
            json.dumps({"species": "prediction", "confidence": "confidence"})
        )
        expect(problems).to_contain_text("The pipeline is valid.", timeout=15_000)
        expect(editor.locator(".nstarx-flow__node--invalid")).to_have_count(0)
        # Undo takes the last edit back (and its problem with it), redo restores it.
        editor.get_by_test_id("flow-undo").click()
        expect(problems).to_contain_text("missing required config 'fields'")
        editor.get_by_test_id("flow-redo").click()
        expect(problems).to_contain_text("The pipeline is valid.")
        # The editor's keys reach it inside the notebook: copy, paste, delete.
        node(editor, "model-1").click()
        page.keyboard.press("Control+c")
        page.keyboard.press("Control+v")
        expect(node(editor, "model-2")).to_be_visible()
        expect(problems).to_contain_text("nothing flows into 'model-2'")
        page.keyboard.press("Delete")
        expect(node(editor, "model-2")).to_have_count(0)
        expect(problems).to_contain_text("The pipeline is valid.")
        _screenshot(editor, "flow-valid")

        # Test run: each node shows its latency, the panel the pipeline's output.
        editor.get_by_test_id("flow-run").click()
        output = editor.get_by_test_id("flow-output")
        expect(output).to_contain_text('"species": 0', timeout=60_000)
        for node_id in ("model-1", "fields-1"):
            expect(node(editor, node_id).locator(".nstarx-flow__run-ms")).to_have_text(
                re.compile(r"^\d+(\.\d)? ms$")
            )
        _screenshot(editor, "flow-run")

        save_version(editor, "model and fields", "saved version 1")
        url = deploy(editor, "flower-flow")
        _screenshot(editor, "flow-deployed")

        # The deployed pipeline answers over HTTP with a key for it.
        body = lab.predict(url, ROW)
        assert body["species"] == 0
        assert 0.5 < body["confidence"] <= 1.0
    finally:
        shot = SCREENSHOTS / "flow-page.png"
        page.screenshot(path=shot, full_page=True)
        print(f"screenshot: {shot}")


def _connect(page: Page, editor: Locator, source: str, target: str) -> None:
    """Drag from the source's output handle to the target's input handle."""
    editor.get_by_test_id("flow-fit").click()
    page.wait_for_timeout(800)  # the fit animates; handle boxes move until it ends
    start = node(editor, source).locator(".react-flow__handle.source").first.bounding_box()
    end = node(editor, target).locator(".react-flow__handle.target").first.bounding_box()
    assert start is not None
    assert end is not None
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=12)
    page.mouse.up()


def _screenshot(element: Locator, name: str) -> None:
    shot = SCREENSHOTS / f"{name}.png"
    element.screenshot(path=shot)
    print(f"screenshot: {shot}")
