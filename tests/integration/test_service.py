"""`DeploymentService` on the local backend: deploy, follow to Ready, roll out, by name, typed.

The local server is real (a detached process on this test's $NSTARX_HOME), as in
test_local_backend.py; the notebook's `deploy()` shows the same progress in IPython.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.backend import Description
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.service import DeploymentService
from nstarx_jupyter.errors import UnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]
STAGES = ["accepted", "scheduled", "loaded", "ready"]


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """A backend on this test's $NSTARX_HOME; its server is stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


@pytest.fixture
def other_iris(named_iris: Path, tmp_path: Path) -> Path:
    """The same model in another folder: another storage URI, so a canary is a new revision."""
    folder = tmp_path / "other"
    shutil.copytree(named_iris, folder)
    return folder


def test_the_service_deploys_a_fitted_model_follows_it_to_ready_and_rolls_out_by_name(
    backend: LocalBackend, iris_model: LogisticRegression, other_iris: Path
) -> None:
    service = DeploymentService(backend)
    applied = service.deploy(iris_model, "iris", auth=False)
    assert isinstance(applied.description, Description)
    assert (applied.description.target, applied.description.revision) == ("local", 1)
    seen: list[str] = []
    ready = service.wait_ready("iris", on_progress=lambda step: seen.append(step.stage))
    assert seen == STAGES
    assert ready.status == "Ready"
    assert ready.url == backend.endpoint("iris").url
    assert ready.url is not None
    assert ready.url.endswith("/v1/models/iris")
    assert applied.registration is not None
    assert applied.registration.result(timeout=120).uri == "models:/iris/1"
    assert service.describe("iris").spec.storage_uri == "models:/iris/1"  # switched behind
    canary, registration = service.canary("iris", other_iris, 25)
    assert registration is None
    assert canary.stable is not None
    assert canary.stable.spec.storage_uri == "models:/iris/1"
    split = {arm.variant: arm.percent for arm in service.traffic("iris").split}
    assert split == {"stable": 75.0, "canary": 25.0}
    assert service.set_canary_percent("iris", 40).spec.canary_traffic_percent == 40
    rolled = service.rollback("iris")
    assert (rolled.stable, rolled.spec.storage_uri) == (None, "models:/iris/1")
    service.note("iris", "checked by the service test")
    events = service.events("iris")
    assert any("deployed revision 1" in line for line in events)
    assert "checked by the service test" in events[-1]
    assert [d.name for d in service.deployments()] == ["iris"]
    service.delete("iris")
    assert service.deployments() == []


def test_wait_ready_raises_with_the_reason_a_deployment_failed(
    backend: LocalBackend, named_iris: Path
) -> None:
    service = DeploymentService(backend)
    service.deploy(named_iris, "iris")
    assert backend.stop()
    (named_iris / "model.joblib").write_bytes(b"not a model any more")
    backend.ensure_server()  # restores iris, which does not load now
    seen: list[str] = []
    with pytest.raises(UnavailableError, match="did not load") as caught:
        service.wait_ready("iris", on_progress=lambda step: seen.append(step.stage))
    assert "'iris' did not become ready" in caught.value.message
    assert seen == ["accepted", "scheduled", "failed"]


def test_deploy_in_ipython_shows_its_stages_on_one_updating_line(
    backend: LocalBackend, named_iris: Path
) -> None:
    shell = InteractiveShell.instance()
    captured = CapturingDisplayPublisher()  # type: ignore[no-untyped-call]
    shell.display_pub = captured
    try:
        deploy(named_iris, "iris", backend=backend, auth=False)
    finally:
        InteractiveShell.clear_instance()
    outputs: list[dict[str, Any]] = captured.outputs
    lines = [output for output in outputs if "iris:" in output["data"].get("text/plain", "")]
    assert len(lines) == len(STAGES)
    ids = {output["transient"]["display_id"] for output in lines}
    assert len(ids) == 1  # one display, updated in place
    assert [output["update"] for output in lines] == [False, True, True, True]
    assert lines[-1]["data"]["text/plain"] == "iris: accepted → scheduled → loaded → ready"


def test_the_cli_deploys_through_the_service_and_prints_each_stage(
    backend: LocalBackend, named_iris: Path
) -> None:
    def nstarx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nstarx_jupyter.cli", *args], capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip

    made = nstarx("deploy", "iris", str(named_iris), "--no-auth", "--target", "local")
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert [line.split(":")[0].strip() for line in lines[:4]] == STAGES
    assert lines[4].startswith("deployed iris revision 1 (Ready) at http")
    status = nstarx("status", "--target", "local")
    assert status.returncode == 0, status.stderr
    assert any(line.startswith("iris ") and "Ready" in line for line in status.stdout.splitlines())
    refused = nstarx("status", "--target", "local", "--namespace", "team-a")
    assert refused.returncode == 2
    assert refused.stderr == "nstarx status: context and namespace: only for target 'kserve'\n"
