"""Registrations behind deployments: several in flight in one process, and one that fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]
ROW = [[5.1, 3.5, 1.4, 0.2]]
WAIT_S = 120


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """A backend on this test's $NSTARX_HOME; its server is stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


@pytest.fixture
def fitted(iris_data: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> list[Any]:
    """Two models fitted on iris here; the second takes longer to log, so it registers last."""
    x, y = iris_data
    forest = RandomForestClassifier(n_estimators=300, random_state=0).fit(x, y)
    return [LogisticRegression(max_iter=500).fit(x, y), forest]


def test_two_fitted_deploys_in_a_row_both_register_and_move_to_the_registry(
    backend: LocalBackend, fitted: list[Any]
) -> None:
    first = deploy(fitted[0], "iris-a", backend=backend)
    second = deploy(fitted[1], "iris-b", backend=backend)  # while the first still registers
    assert first.registration is not None
    assert second.registration is not None
    assert first.registration.result(timeout=WAIT_S).uri == "models:/iris-a/1"
    assert second.registration.result(timeout=WAIT_S).uri == "models:/iris-b/1"
    assert first.spec.storage_uri == "models:/iris-a/1"
    assert second.spec.storage_uri == "models:/iris-b/1"
    assert list(Registry().versions("iris-b")["version"]) == ["1"]
    assert "prediction" in second.predict(ROW)[0]


def test_a_fitted_canary_registers_while_the_deploy_before_it_still_registers(
    backend: LocalBackend, fitted: list[Any]
) -> None:
    made = deploy(fitted[0], "iris", backend=backend)
    first = made.registration
    made.canary(fitted[1], 30)  # a second registration of `iris`, in flight with the first
    assert first is not None
    assert made.registration is not None
    versions = {first.result(timeout=WAIT_S).uri, made.registration.result(timeout=WAIT_S).uri}
    assert versions == {"models:/iris/1", "models:/iris/2"}
    spec = made.spec
    # The canary left its staged file for its registry version; the stable one keeps its own.
    assert spec.storage_uri == made.registration.result().uri
    assert spec.canary_traffic_percent == 30


def test_registering_in_the_notebook_while_a_deploy_registers_behind_works(
    backend: LocalBackend, fitted: list[Any]
) -> None:
    import mlflow

    registry = Registry()
    registry.client  # noqa: B018 - the store made now, so the registers below start at once
    for attempt in range(3):  # each overlap is a race on the old code: three make it certain
        made = deploy(fitted[0], f"iris-{attempt}", backend=backend)
        deadline = time.monotonic() + WAIT_S
        # Wait until the registration behind deploy() is logging its model (MLflow's fluent
        # API then points at the registry), and register a bigger model on this thread then.
        while mlflow.get_tracking_uri() != registry.tracking_uri and time.monotonic() < deadline:
            time.sleep(0.001)
        assert registry.register(fitted[1], f"mine-{attempt}").uri == f"models:/mine-{attempt}/1"
        assert made.registration is not None
        assert made.registration.result(timeout=WAIT_S).uri == f"models:/iris-{attempt}/1"
        assert made.spec.storage_uri == f"models:/iris-{attempt}/1"


def test_a_failed_registration_shows_in_the_logs_and_on_the_card(
    backend: LocalBackend, fitted: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("anywidget")
    backend.ensure_server()  # started before the registry is broken: it never reads it here
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    made = deploy(fitted[0], "iris", backend=backend)
    assert made.registration is not None
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever MLflow raises for its store
        made.registration.result(timeout=WAIT_S)
    assert made.spec.storage_uri is not None
    assert "/staging/" in made.spec.storage_uri  # it keeps serving the staged copy...
    assert "prediction" in made.predict(ROW)[0]
    assert any("registration failed" in line for line in made.logs())  # ...and says so
    card = made.card()
    assert card.status == "Ready"
    assert "registration failed" in card.reason


def test_records_as_the_example_of_an_all_numeric_frame_model_register_its_columns(
    backend: LocalBackend,
) -> None:
    frame, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(frame, target)
    records = frame.iloc[:3].to_dict("records")
    made = deploy(model, "iris-records", input_example=records, backend=backend)
    assert made.registration is not None
    version = made.registration.result(timeout=WAIT_S)  # "Expected 2D array" before
    stored = Registry().signature("iris-records", version.version)
    assert stored is not None
    assert [column["name"] for column in stored["inputs"]] == list(frame.columns)
    assert made.example() == records[0]  # the card's form starts from the first record
    answer = made.predict(records[0])
    assert answer["prediction"] == model.predict(pd.DataFrame(records[:1]))[0]


def test_records_as_the_example_of_a_model_fitted_on_an_array_are_refused_before_deploying(
    backend: LocalBackend, iris_data: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
) -> None:
    x, y = iris_data
    model = LogisticRegression(max_iter=500).fit(x, y)
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    with pytest.raises(InvalidInputError, match=r"without feature names.*pass rows"):
        deploy(model, "iris-norecords", input_example=[record], backend=backend)
    assert backend.running() is None  # refused before a server was needed
    made = deploy(model, "iris-norecords", input_example=x[:3], backend=backend)  # rows work
    assert made.registration is not None
    assert made.registration.result(timeout=WAIT_S).uri == "models:/iris-norecords/1"


def test_a_registration_that_ends_after_the_server_stopped_does_not_start_one(
    backend: LocalBackend, fitted: list[Any]
) -> None:
    made = deploy(fitted[1], "iris-stopped", backend=backend)  # the forest: seconds to log
    assert made.registration is not None
    assert not made.registration.done()
    assert backend.stop()  # `nstarx stop` while MLflow still logs the model
    version = made.registration.result(timeout=WAIT_S)
    assert version.uri == "models:/iris-stopped/1"  # registered all the same...
    assert backend.running() is None  # ...and the switch found no server: none was started
