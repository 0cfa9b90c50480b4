"""Explanations through a real local server: SHAP per row, importance over live traffic.

The notebook's `Deployment.explain()`, `feature_importance()` and `importance_chart()` show the
control API's answers (one source); `/metrics` has the importance gauge; bad calls are 4xx.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.neighbors import KNeighborsRegressor

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.errors import InvalidInputError, NotFoundError
from nstarx_jupyter.notebook.explain import EXPLAIN_COLUMNS, IMPORTANCE_COLUMNS
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nstarx_jupyter.monitoring.live import ImportanceChart

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]

FEATURES = ["driver", "minor", "noise"]


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """A backend on this test's $NSTARX_HOME; its server is stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def _data(rows: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """`driver` makes the target, `minor` a little of it, `noise` none."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    y = 3 * x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.1, rows)
    return pd.DataFrame(x, columns=FEATURES), y


def _folder(root: Path, name: str, model: object) -> Path:
    folder = root / name
    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    (folder / "model-settings.json").write_text(json.dumps({"options": {
        "feature_names": FEATURES}}))  # fmt: skip
    return folder


def test_a_tree_model_is_explained_and_its_live_importance_ranks_the_driving_feature_first(
    backend: LocalBackend, tmp_path: Path
) -> None:
    x, y = _data()
    model = GradientBoostingRegressor(n_estimators=40, random_state=0).fit(x.to_numpy(), y)
    made = deploy(_folder(tmp_path, "forest", model), "forest", backend=backend,
                  reference_data=x)  # fmt: skip

    frame = made.explain(x.iloc[:5])
    assert list(frame.columns) == list(EXPLAIN_COLUMNS)
    assert len(frame) == 15
    assert frame.attrs["explainer"] == "tree"
    assert frame.attrs["space"] == "raw"
    assert frame["value"].tolist()[:3] == pytest.approx(x.iloc[0].tolist())
    wide = made.explain(x.iloc[:5].to_numpy(), wide=True)
    total = wide["base"] + wide[FEATURES].sum(axis=1)
    np.testing.assert_allclose(total, model.predict(x.iloc[:5].to_numpy()), atol=1e-6)
    np.testing.assert_allclose(wide["prediction"], total, atol=1e-9)
    one = made.explain({"driver": 1.0, "minor": 0.0, "noise": 0.0}, wide=True)
    assert len(one) == 1

    assert made.feature_importance("15m").attrs["status"] == "no traffic"
    traffic, _ = _data(240, seed=1)
    for start in range(0, 240, 30):  # 30 rows a request: every row kept (120 a minute)
        made.predict(traffic.iloc[start : start + 30].to_dict("records"))
    importance = made.feature_importance("15m")
    assert list(importance.columns) == list(IMPORTANCE_COLUMNS)
    assert importance["feature"].tolist()[0] == "driver"
    assert importance["rank"].tolist() == [1, 2, 3]
    assert importance.attrs["status"] == "ok"
    assert importance.attrs["explainer"] == "tree"
    assert 100 <= importance.attrs["rows"] <= 200
    server = backend.importance("forest", "15m")
    assert importance["importance"].tolist() == [row.importance for row in server.features]

    chart = made.importance_chart(window="15m", interval_s=60)
    try:
        drawn = cast("ImportanceChart", made._charts[-1])
        for _ in range(100):  # the first poll runs on the chart's thread
            if drawn.last is not None:
                break
            drawn._stop.wait(0.05)
        assert drawn.last is not None, drawn.errors
        assert chart.data[0].y[0] == "driver"
        assert chart.data[0].x == tuple(importance["importance"])
    finally:
        made.close()

    state = backend.running()
    assert state is not None
    http, auth = backend._http, {"authorization": f"Bearer {state.token}"}
    hour = backend.importance("forest")  # the gauge shows the default window's last answer
    scraped = http.get(f"{state.url}/metrics", headers=auth).text
    first = hour.features[0]
    assert (f'nstarx_feature_importance{{deployment="forest",feature="driver"}} '
            f"{first.importance!r}") in scraped  # fmt: skip

    base = f"{state.url}/nstarx/v1/deployments"
    too_many = http.post(f"{base}/forest/explain", json={"rows": [[0, 0, 0]] * 101},
                         headers=auth)  # fmt: skip
    assert too_many.status_code == 400
    assert "at most 100 rows" in too_many.json()["error"]
    malformed: list[dict[str, object]] = [
        {"rows": [[0, 0]]}, {"rows": []}, {"rows": [[0, 0, "x"]]}, {"rows": [[0] * 3], "x": 1},
        {"rows": [{"driver": 1}]}, {"rows": [[0] * 3], "class": [1]}, {"rows": "all"},
    ]  # fmt: skip
    for bad in malformed:
        assert http.post(f"{base}/forest/explain", json=bad, headers=auth).status_code == 400
    assert http.post(f"{base}/nope/explain", json={"rows": [[0, 0, 0]]},
                     headers=auth).status_code == 404  # fmt: skip
    assert http.get(f"{base}/nope/importance", headers=auth).status_code == 404
    assert http.get(f"{base}/forest/importance?window=7h", headers=auth).status_code == 400
    assert http.post(f"{base}/forest/explain", json={"rows": [[0, 0, 0]]}).status_code == 401
    with pytest.raises(NotFoundError):
        backend.explain("nope", [[0, 0, 0]])
    with pytest.raises(InvalidInputError):
        made.explain(np.zeros((101, 3)))


def test_a_linear_classifier_and_a_model_of_another_kind_get_their_explainers(
    backend: LocalBackend, named_iris: Path, iris_data: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:  # fmt: skip
    x_iris, _ = iris_data
    iris = deploy(named_iris, "iris", backend=backend,
                  reference_data=pd.DataFrame(x_iris, columns=IRIS_FEATURES))  # fmt: skip
    rows = pd.DataFrame(x_iris[[0, 60, 120]], columns=IRIS_FEATURES)
    answer = backend.explain("iris", rows.to_numpy().tolist())
    assert (answer.explainer, answer.space) == ("linear", "log-odds")
    assert answer.features == IRIS_FEATURES
    assert answer.outputs == ["0", "1", "2"]
    assert [row.output for row in answer.rows] == ["0", "1", "2"]  # the predicted classes
    chosen = backend.explain("iris", rows.to_numpy().tolist(), label="2")
    assert [row.output for row in chosen.rows] == ["2", "2", "2"]
    for row in chosen.rows:
        assert row.base + sum(row.shap) == pytest.approx(row.value)
    frame = iris.explain(rows, label="1")
    assert set(frame["output"]) == {"1"}

    x, y = _data()
    knn = KNeighborsRegressor(n_neighbors=5).fit(x.to_numpy(), y)
    other = deploy(_folder(tmp_path, "knn", knn), "knn", backend=backend, reference_data=x)
    wide = other.explain(x.iloc[:3], wide=True)
    assert wide.attrs["explainer"] == "kernel"
    np.testing.assert_allclose(wide["base"] + wide[FEATURES].sum(axis=1),
                               knn.predict(x.iloc[:3].to_numpy()), atol=1e-6)  # fmt: skip
    assert wide[FEATURES].abs().mean().idxmax() == "driver"
