"""The notebooks under pytest (nbval): each runs in one kernel, in its own `$NSTARX_HOME`.

nbval starts a notebook's kernel when its first cell is set up, and the kernel inherits this
process's environment at that moment; the local server the notebook starts is stopped after its
last cell.

`04-kserve.ipynb` needs a cluster: it gets the test one (tests/support): a real etcd +
kube-apiserver with KServe's CRDs, a real S3-compatible server as the model store, and `StandIn`
playing KServe's controller and pods, all in the kernel's environment (`KUBECONFIG`, the AWS
variables, `NSTARX_MODEL_STORE`). Without the binaries its cells skip, or fail when
`NSTARX_REQUIRE_K8S=1` (CI).
"""

from __future__ import annotations

import contextlib
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
_CLUSTER = pytest.StashKey[contextlib.ExitStack]()
_SKIP = pytest.StashKey[str]()
_NEEDS_CLUSTER = ("04-kserve.ipynb",)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep every notebook cell on one xdist worker, in order (`--dist loadgroup`)."""
    for item in items:
        if isinstance(item, IPyNbCell):
            item.add_marker(pytest.mark.xdist_group("notebooks"))


def _cluster_env(home: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    """Start the test cluster, object store and stand-in; the variables that point at them."""
    from nstarx_jupyter.security import admin_token
    from nstarx_jupyter.security.home import security_dir
    from tests.support.kserve_stand_in import StandIn
    from tests.support.kube import running_cluster
    from tests.support.s3 import running_s3

    (home / "kube").mkdir()
    cluster = stack.enter_context(running_cluster(home / "kube"))
    s3 = stack.enter_context(running_s3(home / "moto.log"))
    store = f"{s3.bucket('models')}/notebooks"
    stack.enter_context(StandIn(cluster, "default", s3, home / "pod"))
    return {"KUBECONFIG": str(cluster.kubeconfig), "NSTARX_MODEL_STORE": store,
            # the stand-in pod's nstarx serve answers the figures the latency chart draws
            "NSTARX_KSERVE_TOKEN": admin_token(security_dir()), **s3.environ}  # fmt: skip


def _missing_cluster() -> str | None:
    from tests.support.kube import binaries
    from tests.support.s3 import moto_server

    for found in (binaries(), moto_server()):
        if isinstance(found, str):
            return found
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None]:
    """Give a notebook's kernel a fresh `$NSTARX_HOME` (and a cluster) while nbval starts it."""
    notebook = item.parent
    if not isinstance(notebook, IPyNbFile):
        return (yield)
    if _SKIP in notebook.stash:
        pytest.skip(notebook.stash[_SKIP])
    if _HOME in notebook.stash:
        return (yield)
    needs_cluster = Path(str(notebook.path)).name in _NEEDS_CLUSTER
    if needs_cluster and (missing := _missing_cluster()) is not None:
        if os.environ.get("NSTARX_REQUIRE_K8S") == "1":
            pytest.fail(missing)
        notebook.stash[_SKIP] = missing
        pytest.skip(missing)
    home = notebook.stash[_HOME] = Path(tempfile.mkdtemp(prefix="nstarx-nbval-"))
    env = {"NSTARX_HOME": str(home)}
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        if needs_cluster:
            stack = notebook.stash[_CLUSTER] = contextlib.ExitStack()
            try:
                extra = _cluster_env(home, stack)
            except BaseException:
                stack.close()  # what started before the failure
                raise
            previous.update({name: os.environ.get(name) for name in extra})
            os.environ.update(extra)
        return (yield)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """After a notebook's last cell (and its kernel): stop its servers, drop its home."""
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
            if _CLUSTER in notebook.stash:
                notebook.stash[_CLUSTER].close()
            shutil.rmtree(home, ignore_errors=True)
