"""Serving policies: no-wait batching (default for models with independent rows) through the real
app, and a frozen long-lived heap."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import TYPE_CHECKING, Any

import httpx
import joblib
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from nstarx_jupyter.serving.app import ServingConfig, create_app
from nstarx_jupyter.serving.settings import ModelSettings

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from nstarx_jupyter.serving.inference_http import InferenceApp


def _batches(text: str) -> tuple[float, float]:
    """(batches, rows) from the batch-size histogram."""
    for family in text_string_to_metric_families(text):
        if family.name == "nstarx_batch_size":
            samples = {s.name: s.value for s in family.samples}
            return samples["nstarx_batch_size_count"], samples["nstarx_batch_size_sum"]
    raise AssertionError("no batch-size histogram")


async def test_no_wait_batching_groups_concurrent_requests_and_answers_each(
    iris_path: Path, iris_model: LogisticRegression
) -> None:
    settings = ModelSettings(name="iris", path=iris_path, max_batch_size=32, max_latency_ms=0)
    app = create_app([settings], ServingConfig(auth=False))
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]] * 4
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            lone = await http.post("/v1/models/iris:predict", json={"instances": [rows[0]]})
            assert lone.json() == {"predictions": [int(iris_model.predict([rows[0]])[0])]}
            answers = await asyncio.gather(*(
                http.post("/v1/models/iris:predict", json={"instances": [row]}) for row in rows
            ))  # fmt: skip
            batches, batched_rows = _batches((await http.get("/metrics")).text)
    assert [a.json()["predictions"][0] for a in answers] == iris_model.predict(rows).tolist()
    assert batched_rows == 1 + len(rows)
    assert batches < 1 + len(rows)  # concurrent requests shared predict calls


@pytest.fixture
def cyclic_model(tmp_path: Path) -> Path:
    """An iris model holding a reference cycle (as TensorFlow's and many others' do): once it
    is frozen with the heap, only an unfreeze and a full collection free it."""
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    model.cycle = model
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    return path


def _held_model(app: InferenceApp, name: str) -> weakref.ref[Any]:
    loaded = app.dataplane.repository.entry(name, None).loaded
    assert loaded is not None
    return weakref.ref(loaded.runtime.model)  # type: ignore[attr-defined]


async def test_loading_a_model_freezes_the_long_lived_heap(cyclic_model: Path) -> None:
    """Full collections must not walk the framework and the model on every pass; the model's
    cycles, frozen with the heap, are freed when it is unloaded."""
    gc.unfreeze()
    app = create_app([ModelSettings(name="iris", path=cyclic_model)], ServingConfig(auth=False))
    try:
        async with app.lifespan():
            assert gc.get_freeze_count() > 10_000
            held = _held_model(app, "iris")
            await app.dataplane.repository.unload("iris")
            assert held() is None
            assert gc.get_freeze_count() > 10_000  # collected, then frozen again
    finally:
        gc.collect()  # leave the heap frozen, as tests/unit/conftest.py did
        gc.freeze()


async def test_a_model_loaded_into_a_frozen_heap_is_freed_without_walking_it(
    cyclic_model: Path,
) -> None:
    """A model that is small beside an already frozen heap is not frozen, so its unload (and
    the server's close) collect only what lies outside the frozen heap."""
    gc.collect()
    pinned = _Pinned()
    pinned.cycle = pinned
    kept = weakref.ref(pinned)
    del pinned
    gc.freeze()  # garbage in the frozen heap: freed only by an unfreeze and a full collection
    app = create_app([ModelSettings(name="iris", path=cyclic_model)], ServingConfig(auth=False))
    async with app.lifespan():
        held = _held_model(app, "iris")
        await app.dataplane.repository.unload("iris")
        assert held() is None
        await app.dataplane.repository.load("iris")
    assert kept() is not None  # neither the unload nor the close unfroze the heap


class _Pinned:
    cycle: _Pinned | None = None


def _log1p(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(np.log1p(np.abs(x)))


@pytest.mark.parametrize(
    ("make", "settings", "batches"),
    [
        (lambda: LogisticRegression(max_iter=500), {}, True),
        (lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), {}, True),
        (lambda: make_pipeline(FunctionTransformer(_log1p), LogisticRegression()), {}, False),
        (lambda: LogisticRegression(max_iter=500), {"max_batch_size": 0}, False),
    ],
    ids=["estimator", "sklearn-pipeline", "function-transformer", "turned-off"],
)
async def test_models_with_independent_rows_batch_without_waiting_by_default(
    tmp_path: Path, make: Callable[[], Any], settings: dict[str, Any], batches: bool
) -> None:
    x, y = load_iris(return_X_y=True)
    path = tmp_path / "model.joblib"
    joblib.dump(make().fit(x, y), path)
    app = create_app([ModelSettings(name="m", path=path, **settings)], ServingConfig(auth=False))
    async with app.lifespan():
        loaded = app.dataplane.repository.entry("m", None).loaded
        assert loaded is not None
        assert (loaded.batcher is not None) is batches
