"""MLflow's fluent API pointed at one registry for a block leaks nothing to other threads."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import pytest

from nstarx_jupyter.registry import Registry

if TYPE_CHECKING:
    from pathlib import Path

mlflow = pytest.importorskip("mlflow")


def test_a_registry_made_in_another_thread_during_a_block_keeps_its_own_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NSTARX_HOME", str(tmp_path / "first"))
    first = Registry()
    monkeypatch.setenv("NSTARX_HOME", str(tmp_path / "second"))
    made: list[Registry] = []
    with first._fluent():
        assert mlflow.get_tracking_uri() == first.tracking_uri  # MLflow itself is pointed
        assert "MLFLOW_TRACKING_URI" not in os.environ  # but a child process would not see it
        thread = threading.Thread(target=lambda: made.append(Registry()))
        thread.start()  # a registration behind another deploy, in its own $NSTARX_HOME
        thread.join()
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert made[0].tracking_uri == f"sqlite:///{tmp_path / 'second' / 'mlflow' / 'mlflow.db'}"
    assert made[0].tracking_uri != first.tracking_uri
