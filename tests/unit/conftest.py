"""Unit-test fixtures: the heap that importing the frameworks built, frozen once."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(scope="session", autouse=True)
def frozen_imports() -> None:
    """Freeze what collection imported (torch, TensorFlow, MLflow, ...: about a million objects).

    Every full collection otherwise walks all of it: 0.2-0.5 CPU s each in a process that
    imported the frameworks, and the runtimes' `unload`, the tests that prove a model is freed,
    and the interpreter's own generation-2 passes all run one. A server's start still unfreezes
    and collects everything once (`repository._settle_heap`), as it does in production.
    """
    gc.collect()
    gc.freeze()
