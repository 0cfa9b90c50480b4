"""The same `Deployment` calls on the local server and on KServe: one suite, both backends.

`target="local"`: the local server of this test's `$NSTARX_HOME`. `target="kserve"`: a real
etcd + kube-apiserver with KServe's CRDs, where `StandIn` plays KServe's controller, storage
initializer and predictor pod (tests/support/kserve_stand_in.py); the models are the same files,
named by path locally, and on the cluster uploaded (`deployment/uploads.py`) to a real
S3-compatible server (tests/support/s3.py) and named by `s3://models/...`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import joblib
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier

from nstarx_jupyter import InferenceClient, deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.uploads import upload_folder
from nstarx_jupyter.errors import NotFoundError
from nstarx_jupyter.security import admin_token
from nstarx_jupyter.security.home import security_dir
from tests.conftest import IRIS_FEATURES
from tests.support.kserve_stand_in import StandIn

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nstarx_jupyter.notebook.api import Deployment
    from tests.support.kube import Cluster
    from tests.support.s3 import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("k8s")]
ROW = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
V2_BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                       "data": [5.1, 3.5, 1.4, 0.2]}]}  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Target:
    """Where the suite deploys, and how it names the two model versions there."""

    name: Literal["local", "kserve"]
    v1: str
    v2: str
    namespace: str | None = None


def _models(named_iris: Path, folder: Path) -> tuple[Path, Path]:
    """v1: the logistic regression (class 0 for ROW); v2: a model that always answers 2."""
    v1, v2 = folder / "iris" / "1", folder / "iris" / "2"
    shutil.copytree(named_iris, v1)
    v2.mkdir(parents=True)
    x, y = load_iris(return_X_y=True)
    joblib.dump(DummyClassifier(strategy="constant", constant=2).fit(x, y), v2 / "model.joblib")
    (v2 / "model-settings.json").write_text(json.dumps({"options": {
        "feature_names": IRIS_FEATURES}}))  # fmt: skip
    return v1, v2


@pytest.fixture(params=["local", "kserve"])
def target(
    request: pytest.FixtureRequest,
    named_iris: Path,
    nstarx_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Target]:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    if request.param == "local":
        v1, v2 = _models(named_iris, tmp_path / "files")
        yield Target("local", str(v1), str(v2))
        LocalBackend(nstarx_home / "server").stop()
        return
    cluster: Cluster = request.getfixturevalue("kube_cluster")
    namespace: str = request.getfixturevalue("kube_namespace")
    s3: S3Server = request.getfixturevalue("s3_server")
    for key, value in s3.environ.items():
        monkeypatch.setenv(key, value)
    bucket = f"{s3.bucket('models')}/{namespace}"
    v1, v2 = _models(named_iris, tmp_path / "files")
    uris = [upload_folder(folder, f"{bucket}/iris/{folder.name}") for folder in (v1, v2)]
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    with StandIn(cluster, namespace, s3, tmp_path / "pod") as stand_in:
        # the pod's nstarx serve answers the metrics the latency chart draws
        monkeypatch.setenv("NSTARX_KSERVE_TOKEN", admin_token(security_dir()))
        yield Target("kserve", uris[0], uris[1], namespace)
        assert stand_in.errors == []


def _deploy(target: Target, **spec: Any) -> Deployment:
    return deploy(target.v1, "iris", target=target.name, namespace=target.namespace, auth=False,
                  **spec)  # fmt: skip


def _v2_answers(made: Deployment, count: int) -> set[int]:
    """The classes `count` V2 requests get at the deployment's URL.

    On KServe a split is answered by the graph's router, which passes the body as it came to
    the variant's service (V2 `/infer` for `deploy()`'s deployments): a V2 body works on both,
    and so do records (the nstarx runtime answers them there as its product endpoint would).
    """
    endpoint = made.service.backend.endpoint(made.name)
    base = endpoint.url.rsplit("/v1/models/", 1)[0]
    headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
    found = set()
    with httpx.Client(timeout=30, headers=headers) as http:
        for _ in range(count):
            answer = http.post(f"{base}/v2/models/{made.name}/infer", json=V2_BODY)
            assert answer.status_code == 200, answer.text
            found.add(int(answer.json()["outputs"][0]["data"][0]))
    return found


def _arms(made: Deployment) -> dict[str, float]:
    traffic = made.traffic()
    return {} if traffic is None else {arm.variant: arm.percent for arm in traffic.split}


def test_deploy_predict_canary_promote_and_delete(target: Target) -> None:
    made = _deploy(target)
    assert made.status == "Ready"
    assert made.describe().target == target.name
    assert made.predict(ROW)["prediction"] == 0

    made.canary(target.v2, 30)
    assert made.describe().spec.storage_uri == target.v2
    assert _arms(made) == {"canary": 30, "stable": 70}
    answers = {made.predict(ROW)["prediction"] for _ in range(40)}
    assert answers == {0, 2}  # both revisions answer, by their shares

    made.promote()
    assert made.describe().stable is None
    assert made.describe().spec.canary_traffic_percent is None
    assert {made.predict(ROW)["prediction"] for _ in range(10)} == {2}

    assert made.events()  # what happened, from the server or the cluster's Events
    made.delete()
    with pytest.raises(NotFoundError):
        made.describe()


def test_a_canary_rolls_back_to_the_model_that_had_all_the_traffic(target: Target) -> None:
    made = _deploy(target)
    made.canary(target.v2, 20)
    stable = made.describe().stable
    assert stable is not None
    assert stable.spec.storage_uri == target.v1
    made.rollback()
    described = made.describe()
    assert described.spec.storage_uri == target.v1
    assert described.stable is None
    assert described.status == "Ready"
    assert {made.predict(ROW)["prediction"] for _ in range(10)} == {0}
    made.delete()


def test_the_latency_chart_draws_the_servers_figures(target: Target) -> None:
    made = _deploy(target)
    for _ in range(20):
        made.predict(ROW)
    figures = made.metrics(60)
    assert figures["requests"] >= 20
    chart = made.latency_chart(window_s=10, interval_s=0.2)
    try:
        assert chart.data  # the p50/p95/p99 and rate traces
    finally:
        made.close()
    made.delete()


def test_an_ab_split_is_set_changed_and_undone(target: Target) -> None:
    made = _deploy(target)
    made.set_traffic({"primary": 70, "b": 30}, variants={"b": target.v2})
    assert _arms(made) == {"primary": 70, "b": 30}
    described = made.describe()
    assert described.status == "Ready"
    assert described.spec.traffic is not None
    assert [v.storage_uri for v in described.spec.traffic.variants] == [target.v2]
    assert _v2_answers(made, 40) == {0, 2}  # both variants answer, by their shares
    # Records and DataFrames as on one model: the variant answers them at the path KServe's
    # router posts them to, as its product endpoint would.
    assert {made.predict(ROW)["prediction"] for _ in range(40)} == {0, 2}
    answers = made.predict(pd.DataFrame([ROW, ROW]))
    assert [set(answer) >= {"prediction", "confidence"} for answer in answers] == [True, True]
    endpoint = made.service.backend.endpoint(made.name)
    with InferenceClient(endpoint.url, api_key=endpoint.token) as client:
        assert {client.predict(ROW)["prediction"] for _ in range(40)} == {0, 2}
    # The split's figures count every request; on KServe each variant's pod adds its own.
    figures = made.metrics(60)
    assert figures["requests"] >= 121
    assert figures["p95_ms"] is not None
    if target.name == "kserve":
        variants = {row["variant"]: row for row in figures["variants"]}
        assert [(name, row["percent"]) for name, row in variants.items()] == [
            ("primary", 70), ("b", 30)]  # fmt: skip
        assert sum(row["requests"] for row in variants.values()) == figures["requests"]
        assert all(row["requests"] > 0 for row in variants.values())
    chart = made.latency_chart(window_s=10, interval_s=0.2)
    try:
        assert chart.data
    finally:
        made.close()
    made.set_traffic({"primary": 50, "b": 50})
    assert _arms(made) == {"primary": 50, "b": 50}
    assert [d.name for d in made.service.deployments()] == ["iris"]  # one deployment, not three

    made.set_traffic(None)  # back to one model
    assert _arms(made) == {"primary": 100}
    assert made.describe().spec.traffic is None
    assert _v2_answers(made, 10) == {0}
    assert {made.predict(ROW)["prediction"] for _ in range(10)} == {0}
    made.delete()
    with pytest.raises(NotFoundError):
        made.describe()
