"""Shared fixtures: a temporary $NSTARX_HOME for every test and small models trained here."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import numpy as np

from tests.support.skips import pytest_sessionfinish

__all__ = ["IRIS_FEATURES", "pytest_sessionfinish"]  # the hook: CI fails on an unexpected skip

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary $NSTARX_HOME for what starts before a test's own (module-scoped servers):
    since every server keeps keys and an audit log in its home, none may touch the user's."""
    home = tmp_path_factory.mktemp("session-home")
    before = os.environ.get("NSTARX_HOME")
    os.environ["NSTARX_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("NSTARX_HOME", None)
    else:
        os.environ["NSTARX_HOME"] = before


@pytest.fixture(autouse=True)
def nstarx_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point $NSTARX_HOME at a fresh folder so no test touches the user's state."""
    home = tmp_path / "nstarx-home"
    monkeypatch.setenv("NSTARX_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def iris_data() -> tuple[np.ndarray, np.ndarray]:
    """Return iris features and labels."""
    x, y = load_iris(return_X_y=True)
    return x, y


@pytest.fixture(scope="session")
def iris_model(iris_data: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    """Return a logistic regression fitted on iris with a fixed seed."""
    x, y = iris_data
    return LogisticRegression(max_iter=1000, random_state=0).fit(x, y)


@pytest.fixture(scope="session")
def iris_path(iris_model: LogisticRegression, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the iris model saved with joblib."""
    path = tmp_path_factory.mktemp("iris") / "model.joblib"
    joblib.dump(iris_model, path)
    return path


@pytest.fixture
def named_iris(iris_path: Path, tmp_path: Path) -> Path:
    """The iris model in a folder whose model-settings.json names its features."""
    folder = tmp_path / "iris"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(iris_path.read_bytes())
    (folder / "model-settings.json").write_text(json.dumps({"options": {
        "feature_names": IRIS_FEATURES}}))  # fmt: skip
    return folder
