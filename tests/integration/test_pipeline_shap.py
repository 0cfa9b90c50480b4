"""The `explain_shap` pipeline step on a real server: the same SHAP values as the explain route,
in the served pipeline and in the kernel's run of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.notebook.pipeline import Pipeline
from tests.conftest import IRIS_FEATURES
from tests.integration.server import start_server

pytestmark = pytest.mark.integration
pytest.importorskip("shap")  # the explain extra
ROWS = [dict(zip(IRIS_FEATURES, row, strict=True))
        for row in ([5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3])]  # fmt: skip


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    state_dir = nstarx_home / "server"
    process = start_server("--state-dir", str(state_dir), auth=True)
    yield LocalBackend(state_dir, timeout_s=60)
    process.stop()


def _pipeline(explained: str) -> Pipeline:
    pipe = Pipeline(name="explained")
    pipe.add("model", "clf", model="deployment:iris")
    pipe.add("explain_shap", "why", model=explained, top_k=2)
    pipe.add("fields", "out", fields={"species": "prediction", "why": "shap"})
    pipe.chain("clf", "why", "out")
    return pipe


def test_a_pipeline_step_adds_the_explain_routes_shap_values(
    backend: LocalBackend, named_iris: Path
) -> None:
    x = load_iris(as_frame=True).data.set_axis(IRIS_FEATURES, axis=1)
    made = deploy(named_iris, "iris", backend=backend, reference_data=x)
    pipe = _pipeline("deployment:iris")
    assert pipe.validate() == []
    deployed = pipe.deploy(backend=backend)
    headers = {"Authorization": f"Bearer {deployed.api_key}"}
    answer = httpx.post(deployed.url, json=ROWS, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    served = answer.json()
    # One source: the route's SHAP values of each row's predicted class, the two largest.
    route = made.explain_report(pd.DataFrame(ROWS))
    for record, row in zip(served, route["rows"], strict=True):
        values = dict(zip(route["features"], row["shap"], strict=True))
        top = sorted(values, key=lambda f: -abs(values[f]))[:2]
        assert list(record["why"]) == top
        assert record["why"] == pytest.approx({f: values[f] for f in top})
        assert str(record["species"]) == row["output"]
    assert pipe.predict(ROWS) == pytest.approx(served)  # the kernel's run asks the same server
    # A request the explainer cannot read is the caller's mistake, named.
    bad = httpx.post(deployed.url, json={**ROWS[0], "petal_width": "wide"}, headers=headers)
    assert bad.status_code == 400, bad.text


def test_the_step_explains_deployments_only_and_a_known_one(
    backend: LocalBackend, named_iris: Path
) -> None:
    problems = _pipeline("models:/iris/1").validate()
    assert any("is not a deployment" in p.message for p in problems), problems
    deploy(named_iris, "iris", backend=backend)
    with pytest.raises(Exception, match="not deployed"):
        _pipeline("deployment:nope").deploy(backend=backend)
