"""deploy() and the local backend: a detached server, its control API, restarts and redeploys."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter import Deployment, deploy
from nstarx_jupyter.client import InferenceClient
from nstarx_jupyter.config import STATE_FILE
from nstarx_jupyter.deployment.local import LocalBackend, ServerState
from nstarx_jupyter.errors import InvalidInputError, NotFoundError
from tests.conftest import IRIS_FEATURES

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]
ROW = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """A backend on this test's $NSTARX_HOME; its server is stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def test_deploy_starts_a_detached_server_and_serves(
    backend: LocalBackend, named_iris: Path, iris_model: LogisticRegression
) -> None:
    assert backend.running() is None
    made = deploy(named_iris, "iris", backend=backend)
    assert made.status == "Ready"
    assert made.revision == 1
    assert made.predict(ROW)["prediction"] == int(iris_model.predict([list(ROW.values())])[0])
    state_file = backend.state_dir / STATE_FILE
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600  # the admin token is the user's
    # The control API wants the admin token; the deployment wants the key deploy() minted.
    state = backend.running()
    assert state is not None
    refused = httpx.get(f"{state.url}/nstarx/v1/deployments")
    assert refused.status_code == 401
    assert "admin token" in refused.json()["error"]
    assert made.api_key is not None
    assert httpx.post(f"{made.url}/predict", json=ROW).status_code == 401
    keyed = httpx.post(f"{made.url}/predict", json=ROW,
                       headers={"Authorization": f"Bearer {made.api_key}"})  # fmt: skip
    assert keyed.status_code == 200
    assert [d.name for d in backend.deployments()] == ["iris"]
    figures = made.metrics(window_s=60)
    assert figures["requests"] >= 1
    assert figures["errors"] == 1  # the call without a key, refused above
    assert figures["p99_ms"] is not None
    with pytest.raises(InvalidInputError, match="window_s"):
        made.metrics(window_s=0)
    assert "kind: InferenceService" in made.to_kserve(storage_uri="s3://bucket/iris")


def test_a_redeploy_is_a_new_revision_and_drops_no_request(
    backend: LocalBackend, named_iris: Path
) -> None:
    made = deploy(named_iris, "iris", backend=backend)
    failures: list[str] = []
    done = threading.Event()
    sent = 0

    def load() -> None:
        nonlocal sent
        with InferenceClient(made.url, api_key=made.api_key, retries=0) as client:
            while not done.is_set():
                try:
                    client.predict(ROW)
                except Exception as exc:  # noqa: BLE001 - any failure is the finding
                    failures.append(repr(exc))
                sent += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for revision in (2, 3):
            assert deploy(named_iris, "iris", backend=backend, container_concurrency=8).revision \
                == revision  # fmt: skip
        deadline = time.monotonic() + 10
        while sent <= 50 and time.monotonic() < deadline:  # enough traffic to mean something
            time.sleep(0.01)
    finally:
        done.set()
        for worker in workers:
            worker.join()
    assert sent > 50
    assert failures == []
    assert made.spec.container_concurrency == 8


def test_deployments_survive_a_server_restart(backend: LocalBackend, named_iris: Path) -> None:
    deploy(named_iris, "iris", backend=backend)
    first = backend.running()
    assert first is not None
    assert backend.stop()
    assert backend.running() is None
    again = Deployment("iris", backend)
    assert again.status == "Ready"  # ensure_server started a new one, which restored iris
    second = backend.running()
    assert second is not None
    assert second.pid != first.pid
    assert "prediction" in again.predict(ROW)
    again.delete()
    with pytest.raises(NotFoundError, match="no deployment 'iris'"):
        again.describe()
    backend.stop()
    assert backend.deployments() == []  # deleted for good: not restored


def test_control_calls_go_straight_to_the_server_and_find_a_new_one_when_it_went_away(
    backend: LocalBackend, named_iris: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(named_iris, "iris", backend=backend)
    lookups = 0
    running = backend.running

    def counted() -> ServerState | None:
        nonlocal lookups
        lookups += 1
        return running()

    monkeypatch.setattr(backend, "running", counted)
    for _ in range(5):
        assert [d.name for d in backend.deployments()] == ["iris"]
    assert lookups == 0  # no state file, pid or health check per call
    first = running()
    assert first is not None
    assert LocalBackend(backend.state_dir).stop()  # stopped by someone else (the CLI, say)
    assert [d.name for d in backend.deployments()] == ["iris"]  # a new server, iris restored
    second = running()
    assert second is not None
    assert second.pid != first.pid
    assert lookups >= 1


def test_mistakes_are_reported_by_field_and_leave_the_old_revision_serving(
    backend: LocalBackend, named_iris: Path, tmp_path: Path
) -> None:
    made = deploy(named_iris, "iris", backend=backend)
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"not a model")
    with pytest.raises(InvalidInputError, match="the model did not load"):
        deploy(broken, "iris", backend=backend)
    assert made.revision == 1
    events = made.logs()
    assert "deployed revision 1" in events[0]
    assert "revision 2 failed: the model did not load" in events[-1]
    assert "prediction" in made.predict(ROW)
    with pytest.raises(InvalidInputError, match="neither a file nor a registry URI"):
        deploy("no/such/file.joblib", "iris", backend=backend)
    with pytest.raises(InvalidInputError, match="'name'"):
        deploy(named_iris, "Bad_Name", backend=backend)


def test_deploying_a_fitted_model_registers_it_first(
    backend: LocalBackend, iris_data: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
) -> None:
    x, y = iris_data
    model = LogisticRegression(max_iter=500).fit(x, y)
    made = deploy(model, "iris-fitted", backend=backend)
    # It serves at once from a staged copy, and moves to the registry version when registered.
    assert made.predict([list(x[0])])[0]["prediction"] == int(model.predict(x[:1])[0])
    assert made.registration is not None
    version = made.registration.result(timeout=120)
    assert version.uri == "models:/iris-fitted/1"
    assert made.spec.storage_uri == "models:/iris-fitted/1"
    assert made.revision == 2
    assert made.predict([list(x[0])])[0]["prediction"] == int(model.predict(x[:1])[0])


def test_the_cli_applies_kubectl_yaml_and_reports_status(
    backend: LocalBackend, named_iris: Path, nstarx_home: Path
) -> None:
    manifest = named_iris.parent / "isvc.yaml"
    manifest.write_text(f"""
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: sklearn-iris
spec:
  predictor:
    minReplicas: 1
    sklearn:
      storageUri: {named_iris.name}
""")

    def nstarx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nstarx_jupyter.cli", *args], capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip

    applied = nstarx("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert "inferenceservice/sklearn-iris applied" in applied.stdout
    status = nstarx("status")
    assert "sklearn-iris" in status.stdout
    assert "Ready" in status.stdout
    assert "deployed revision 1" in nstarx("logs", "sklearn-iris").stdout
    bad = nstarx("apply", "-f", str(named_iris / "model-settings.json"))
    assert bad.returncode == 2
    assert bad.stderr.startswith("nstarx apply:")
    assert "Traceback" not in bad.stderr


def test_a_load_test_moves_the_live_latency_chart(backend: LocalBackend, named_iris: Path) -> None:
    made = deploy(named_iris, "iris", backend=backend)
    figure = made.latency_chart(window_s=5, interval_s=0.2)
    test = made.load_test(ROW, rps=100, duration_s=2)
    report = test.wait(timeout_s=30).summary()
    assert report["sent"] == 200
    assert report["errors"] == 0
    time.sleep(0.5)  # a poll or two after the last request
    made.close()  # stops the chart's poller
    p99, rps = figure.data[2].y, figure.data[3].y
    assert len(rps) >= 5
    assert max(v for v in rps if v is not None) > 0  # the server saw the load
    assert max(v for v in p99 if v is not None) > 0
    assert made.metrics(window_s=10)["requests"] >= 200


def test_the_card_shows_a_real_deployment_and_sends_a_test_prediction(
    backend: LocalBackend, named_iris: Path
) -> None:
    pytest.importorskip("anywidget")
    made = deploy(named_iris, "iris", backend=backend, input_example=ROW)
    assert made.api_key is not None
    data, _ = made._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    card = made.card()
    assert (card.status, card.version, card.auth) == ("Ready", "rev 1", True)
    assert made.api_key not in json.dumps(card.get_state())  # the synced state keeps a hint
    assert f"Bearer {made.api_key[:12]}…" in card.curl
    assert f"{made.url}/predict" in card.curl
    assert json.loads(card.example) == ROW
    # The front end's "Predict" button sends this message; the answer comes from the server.
    card._on_message(card, {"type": "predict", "body": json.dumps(ROW)}, [])
    deadline = time.monotonic() + 30
    while (card.busy or not card.result) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert card.error == ""
    assert "prediction" in json.loads(card.result)
    card._on_message(card, {"type": "predict", "body": json.dumps({"petal_width": "x"})}, [])
    while (card.busy or not card.error) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "sepal_length" in card.error  # the server's own message: a missing feature
    assert card._worker is not None
    card._worker.join(30)  # its status refresh, before the fixture stops the server
    # The card follows its deployment: deleted through another handle, as the quickstart's
    # `dep2.delete()` deletes what `dep`'s card shows.
    Deployment("iris", backend).delete()
    assert (card.status, card.reason) == ("Deleted", "the deployment 'iris' was deleted")
    card._on_message(card, {"type": "predict", "body": json.dumps(ROW)}, [])
    card._worker.join(30)
    assert (
        card.error
        == "The deployment 'iris' was deleted: deploy it again (nx.deploy) to try it here."
    )
    assert card.status == "Deleted"
    deploy(named_iris, "iris", backend=backend)  # deployed again: the card follows
    card._on_message(card, {"type": "predict", "body": json.dumps(ROW)}, [])
    card._worker.join(30)
    assert (card.status, card.error) == ("Ready", "")


def test_a_registration_finishing_late_does_not_undo_a_newer_deploy_or_a_delete(
    backend: LocalBackend,
    named_iris: Path,
    iris_data: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    x, y = iris_data
    fitted = LogisticRegression(max_iter=500).fit(x, y)
    first = deploy(fitted, "iris", backend=backend)
    newer = deploy(named_iris, "iris", backend=backend)  # while MLflow is still registering
    assert first.registration is not None
    assert first.registration.result(timeout=120).uri == "models:/iris/1"  # registered anyway
    assert newer.spec.storage_uri == str(named_iris)  # ...but the newer deploy still serves
    assert newer.revision == 2
    gone = deploy(fitted, "iris-gone", backend=backend)
    gone.delete()
    assert gone.registration is not None
    gone.registration.result(timeout=120)
    with pytest.raises(NotFoundError):
        gone.describe()  # not brought back by the registration's switch
