"""Unit-test fixtures: the heap that importing the frameworks built, frozen once; one BLAS and
OpenMP thread per test process."""

from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING

import pytest
from threadpoolctl import threadpool_limits

from nstarx_jupyter.serving._heap import FREEZE_AT_OBJECTS, settle_heap

if TYPE_CHECKING:
    from collections.abc import Iterator

# for the native libraries that load later (XGBoost's and LightGBM's OpenMP, PyTorch's)
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")


@pytest.fixture(scope="session", autouse=True)
def one_native_thread() -> Iterator[None]:
    """One thread in the BLAS and OpenMP libraries already loaded (NumPy's, SciPy's, sklearn's).

    `make test-unit` runs two workers on the machine's cores; OpenBLAS's own threads per worker
    then spin waiting for each other on every tiny product: a logistic regression fitted on iris
    took 0.1 CPU s instead of 0.01 on two cores, and most tests fit or predict such models.
    """
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(autouse=True)
def frozen_imports() -> None:
    """Keep what imports built frozen (torch, TensorFlow, MLflow, ...: about a million objects).

    Every full collection otherwise walks all of it: 0.2-0.5 CPU s each in a process that
    imported the frameworks, and the runtimes' `unload`, the tests that prove a model is freed,
    and the interpreter's own generation-2 passes all run one. Collection's imports are frozen
    before the first test, a framework a test imported (building a model, loading a runtime)
    before the next one, as a server does after a load (`serving._heap`, which also counts the
    freeze for the servers running). A server loading a model into this frozen heap neither
    freezes nor unfreezes it.
    """
    if len(gc.get_objects()) >= FREEZE_AT_OBJECTS:
        settle_heap(unfreeze=False)
