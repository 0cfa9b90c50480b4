"""Pipelines as documents: `*.pipeline.json` opens in the editor inside JupyterLab itself.

New from the launcher, edited on the canvas and saved to the file, checked, test-run, versioned
and deployed, with no notebook and no kernel.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import httpx
import pytest
import skops.io as skops_io
from playwright.sync_api import expect
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.ui.conftest import SCREENSHOTS
from tests.ui.flow_steps import deploy, node, save_version

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Locator, Page

    from tests.ui.conftest import Lab

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.xdist_group("ui"),
              pytest.mark.timeout(600)]  # fmt: skip

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
DOCUMENT = "irises.pipeline.json"
# A long output name: its line of the test run's output is wider than the side panel.
FIELDS = {"species": "prediction", "confidence_of_the_predicted_species": "confidence"}


def _model_file(folder: Path) -> Path:
    iris = load_iris(as_frame=True)
    x = iris.data.set_axis(FEATURES, axis=1)
    # skops: a pipeline sent over the control API loads no format that runs code (Trust model)
    target = folder / "iris-doc.skops"
    skops_io.dump(LogisticRegression(max_iter=500).fit(x, iris.target), target)
    return target


def _register(lab: Lab, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A model in the lab's registry, for the model field's choices."""
    from nstarx_jupyter.registry import Registry

    # The lab opens the registry on a worker thread as it starts: wait for it (a second first
    # opening of the fresh SQLite store would race it through MLflow's migrations).
    catalog = httpx.get(f"{lab.url}nstarx/models", timeout=120,
                        headers={"authorization": f"token {lab.token}"})  # fmt: skip
    assert catalog.status_code == 200, catalog.text
    monkeypatch.setenv("NSTARX_HOME", str(lab.nstarx_home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    iris = load_iris(as_frame=True)
    x = iris.data.set_axis(FEATURES, axis=1)
    Registry().register(LogisticRegression(max_iter=500).fit(x, iris.target), name)


def _document(model: Path) -> dict[str, object]:
    """A pipeline file as a user would keep it in a project (no schema_version: format 0)."""
    return {
        "name": "irises",
        "description": "iris species with confidence",
        "nodes": [
            {"id": "model-1", "component": "model", "config": {"model": model.as_uri()},
             "position": {"x": 0, "y": 0}},
            {"id": "fields-1", "component": "fields",
             "config": {"fields": {"species": "prediction"}}, "position": {"x": 0, "y": 160}},
        ],
        "edges": [{"id": "e1", "source": "model-1", "target": "fields-1"}],
    }  # fmt: skip


def test_a_pipeline_document_is_created_edited_saved_run_versioned_and_deployed(
    lab: Lab, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    model = _model_file(lab.root_dir)
    _register(lab, monkeypatch, "iris-doc")
    (lab.root_dir / DOCUMENT).write_text(json.dumps(_document(model), indent=1))
    # What `python -m jupyterlab.browser_check` checks (it cannot run here: it downloads its own
    # browser): the lab starts with our plugins and nothing throws in the page.
    crashes: list[str] = []
    page.on("pageerror", lambda error: crashes.append(str(error)))
    try:
        # "New pipeline" from the launcher: an empty pipeline file, open in the editor.
        page.goto(lab.page_url("lab"))
        launcher = page.locator(".jp-Launcher")
        launcher.locator('.jp-LauncherCard[title^="Create a new inference pipeline"]').click()
        editor = _editor(page)
        expect(editor).to_be_visible(timeout=30_000)
        tab = page.get_by_role("tab", name=re.compile(r"untitled.*\.pipeline\.json"))
        expect(tab).to_be_visible()
        created = json.loads((lab.root_dir / "untitled.pipeline.json").read_text())
        assert created == {"schema_version": 1, "name": "untitled", "description": "",
                           "nodes": [], "edges": []}  # fmt: skip
        problems = editor.get_by_test_id("flow-problems")
        expect(problems).to_contain_text("the pipeline has no nodes", timeout=15_000)

        # An existing document opens in the same editor, checked by the server.
        page.goto(lab.page_url(f"lab/tree/{DOCUMENT}"))
        editor = _editor(page)
        expect(node(editor, "model-1")).to_be_visible(timeout=30_000)
        expect(_problems(editor)).to_contain_text("The pipeline is valid.", timeout=15_000)

        # An edit in the properties form goes into the file on save (Ctrl+S).
        node(editor, "fields-1").click()
        editor.locator('.nstarx-flow__side textarea[name="fields"]').fill(json.dumps(FIELDS))
        expect(page.get_by_role("tab", name=re.compile(DOCUMENT))).to_have_class(
            re.compile("jp-mod-dirty"), timeout=10_000
        )
        page.keyboard.press("Control+s")
        expect(page.get_by_role("tab", name=re.compile(DOCUMENT))).not_to_have_class(
            re.compile("jp-mod-dirty"), timeout=10_000
        )
        saved = json.loads((lab.root_dir / DOCUMENT).read_text())
        assert saved["schema_version"] == 1
        fields = next(n for n in saved["nodes"] if n["id"] == "fields-1")
        assert fields["config"]["fields"] == FIELDS

        # Test run on the server: per-node latency and the pipeline's output.
        editor.get_by_test_id("flow-sample").fill(json.dumps(ROW))
        editor.get_by_test_id("flow-run").click()
        expect(editor.get_by_test_id("flow-output")).to_contain_text('"species": 0',
                                                                      timeout=60_000)  # fmt: skip
        expect(node(editor, "model-1").locator(".nstarx-flow__run-ms")).to_have_text(
            re.compile(r"^\d+(\.\d)? ms$")
        )
        # The output keeps its lines: no number split over two (it scrolls instead).
        output = editor.get_by_test_id("flow-output").locator("pre")
        lines = output.evaluate(_RENDERED_LINES)
        assert lines == output.inner_text().count("\n") + 1, lines
        _shot(editor, "pipeline-document-run")

        # Versions in the registry, then a deployment on the local server.
        save_version(editor, "model and two fields", "saved version 1 of irises")
        url = deploy(editor, "irises")
        _shot(editor, "pipeline-document-deployed")

        # The model field offers the registry's models (and deployments); labels are titles.
        node(editor, "model-1").click()
        form = editor.locator(".nstarx-flow__side")
        expect(form.locator('[data-field="cache_ttl_s"] label')).to_have_text("Cache TTL (s)")
        choices = form.get_by_test_id("choices-model").locator("option")
        expect(choices.and_(page.locator('[value="models:/iris-doc/1"]'))).to_have_count(1)
        assert form.locator('input[name="model"]').get_attribute("list")

        assert lab.predict(url, ROW)["species"] == 0
        assert crashes == []
    finally:
        page.screenshot(path=SCREENSHOTS / "pipeline-document-page.png", full_page=True)


# How many lines an element's text takes on screen (one per distinct line box).
_RENDERED_LINES = """(el) => {
  const range = document.createRange();
  range.selectNodeContents(el);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
}"""


def _problems(editor: Locator) -> Locator:
    return editor.get_by_test_id("flow-problems")


def _shot(element: Locator, name: str) -> None:
    element.screenshot(path=SCREENSHOTS / f"{name}.png")


def _editor(page: Page) -> Locator:
    """The editor of the pipeline document in view."""
    return page.locator(".nstarx-pipeline-doc .nstarx-flow").locator("visible=true")
