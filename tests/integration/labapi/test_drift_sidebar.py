"""The sidebar's drift badge is the control API's drift answer, picked, not recomputed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from tests.conftest import IRIS_FEATURES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.integration.labapi.conftest import Api

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("labapi")]


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """The backend the extension uses too ($NSTARX_HOME/server); stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def test_the_sidebar_badge_is_the_control_apis_drift_answer(
    api: Api, backend: LocalBackend, named_iris: Path, iris_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = iris_data
    made = deploy(named_iris, "iris", backend=backend)
    [row] = api("GET", "deployments")
    assert row["drift"] == {"status": "no reference", "drifted": [], "score": None, "rows": 0}

    made.set_reference(pd.DataFrame(x, columns=IRIS_FEATURES))
    rng = np.random.default_rng(0)
    shifted = x[rng.integers(0, len(x), 30)] + rng.normal(0, 0.05, (30, 4))
    shifted[:, 3] += x[:, 3].std()  # petal width: one SD up
    for start in range(0, 30, 10):
        made.predict(pd.DataFrame(shifted[start:start + 10], columns=IRIS_FEATURES)
                     .to_dict("records"))  # fmt: skip
    [row] = api("GET", "deployments")
    server = backend.drift("iris", "1h")
    assert row["drift"] == {"status": "drift", "drifted": server.drifted,
                            "score": server.score, "rows": server.rows}  # fmt: skip
    assert "petal_width" in server.drifted
    assert server.rows == 30
