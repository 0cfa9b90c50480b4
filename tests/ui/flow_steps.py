"""Steps on the pipeline editor that the notebook widget and the lab document share."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Locator


def node(editor: Locator, node_id: str) -> Locator:
    """A node of the canvas by its id."""
    return editor.locator(f'.react-flow__node[data-id="{node_id}"]')


def save_version(editor: Locator, message: str, said: str) -> None:
    """Save a version with `message` from the toolbar; the status line then says `said`."""
    editor.get_by_test_id("flow-save").click()
    editor.get_by_test_id("flow-save-message").fill(message)
    editor.get_by_test_id("flow-save-confirm").click()
    expect(editor.get_by_test_id("flow-status")).to_have_text(said, timeout=60_000)


def deploy(editor: Locator, name: str) -> str:
    """Deploy from the toolbar; the endpoint the deployment box shows."""
    editor.get_by_test_id("flow-deploy").click()
    url_box = editor.get_by_test_id("flow-deployment-url")
    expect(url_box).to_have_text(re.compile(rf"^http://.+/v1/models/{name}/predict$"),
                                 timeout=60_000)  # fmt: skip
    expect(editor.get_by_test_id("flow-status")).to_contain_text("deployed at")
    return url_box.inner_text()
