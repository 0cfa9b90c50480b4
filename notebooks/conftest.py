"""The notebooks under pytest (nbval): each runs in one kernel, in its own `$NSTARX_HOME`.

nbval starts a notebook's kernel when its first cell is set up, and the kernel inherits this
process's environment at that moment; the local server the notebook starts is stopped after its
last cell.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from nbval.plugin import IPyNbCell, IPyNbFile

from nstarx_jupyter.deployment.local import LocalBackend

if TYPE_CHECKING:
    from collections.abc import Generator

_HOME = pytest.StashKey[Path]()


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep every notebook cell on one xdist worker, in order (`--dist loadgroup`)."""
    for item in items:
        if isinstance(item, IPyNbCell):
            item.add_marker(pytest.mark.xdist_group("notebooks"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None]:
    """Give a notebook's kernel a fresh `$NSTARX_HOME` while nbval starts it."""
    notebook = item.parent
    if not isinstance(notebook, IPyNbFile) or _HOME in notebook.stash:
        return (yield)
    home = notebook.stash[_HOME] = Path(tempfile.mkdtemp(prefix="nstarx-nbval-"))
    previous = os.environ.get("NSTARX_HOME")
    os.environ["NSTARX_HOME"] = str(home)
    try:
        return (yield)
    finally:
        if previous is None:
            del os.environ["NSTARX_HOME"]
        else:
            os.environ["NSTARX_HOME"] = previous


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """After a notebook's last cell (and its kernel): stop its local server, drop its home."""
    try:
        return (yield)
    finally:
        notebook = item.parent
        if (
            isinstance(notebook, IPyNbFile)
            and _HOME in notebook.stash
            and (nextitem is None or nextitem.parent is not notebook)
        ):
            home = notebook.stash[_HOME]
            LocalBackend(home / "server").stop()
            shutil.rmtree(home, ignore_errors=True)
