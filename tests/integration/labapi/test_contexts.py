"""The sidebar's cluster picker and its calls against a real kube-apiserver (tests/support/kube.py).

`contexts` lists the kubeconfig's contexts (none, with the reason, without one); the deployment
routes with `?target=kserve&context=NAME&namespace=NS` work on that cluster's InferenceServices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from nstarx_jupyter.client.inference import InferenceClient
from nstarx_jupyter.deployment import kubeconfig
from nstarx_jupyter.deployment.kserve_backend import KServeBackend
from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.deployment.uploads import STORE_VARIABLE
from nstarx_jupyter.registry import Registry
from nstarx_jupyter.security import admin_token
from nstarx_jupyter.security.home import security_dir
from tests.integration.server import start_server
from tests.support.kube import FakeController

if TYPE_CHECKING:
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

    from tests.integration.labapi.conftest import Api
    from tests.support.kube import Cluster
    from tests.support.s3 import S3Server

pytestmark = [pytest.mark.integration]

CONTEXT = "nstarx-test"  # the context tests/support/kube.py writes into its kubeconfig
V1, V2 = "s3://models/iris/1", "s3://models/iris/2"


def test_without_a_kubeconfig_there_are_no_contexts_and_the_answer_says_why(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config there
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    answer = api("GET", "contexts")
    assert answer["contexts"] == []
    assert (answer["kubeconfig"], answer["in_cluster_namespace"]) == (None, None)
    assert "no kubeconfig" in answer["reason"]
    # Inside a pod: its own cluster, through the service account (its namespace file, or the
    # API server's default when none is mounted).
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setattr(kubeconfig, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "namespace")
    assert api("GET", "contexts")["in_cluster_namespace"] == "default"
    (tmp_path / "namespace").write_text("ml-team\n")
    answer = api("GET", "contexts")
    assert answer["in_cluster_namespace"] == "ml-team"
    assert (answer["reason"], answer["contexts"]) == (None, [])
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")

    broken = tmp_path / "broken-kubeconfig"
    broken.write_text("contexts: [this is not a kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(broken))
    answer = api("GET", "contexts")
    assert answer["contexts"] == []
    assert str(broken) in answer["reason"]
    # Asking for a cluster anyway is a clear refusal, not a 500.
    refused = api("GET", "deployments", params={"target": "kserve"}, status=503)
    assert str(broken) in refused["error"]


@pytest.mark.k8s
@pytest.mark.xdist_group("k8s")
def test_the_picker_lists_the_kubeconfig_contexts_and_the_routes_work_on_the_cluster(
    api: Api, kube_cluster: Cluster, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    answer = api("GET", "contexts")
    assert answer == {
        "kubeconfig": str(kube_cluster.kubeconfig),
        "in_cluster_namespace": None,
        "contexts": [{"name": CONTEXT, "cluster": "test", "namespace": "default",
                      "current": True}],
        "reason": None,
    }  # fmt: skip

    where = {"target": "kserve", "context": CONTEXT, "namespace": kube_namespace}
    assert api("GET", "deployments", params=where) == []
    # An InferenceService applied through the backend: listed with its status and stage.
    backend = KServeBackend(namespace=kube_namespace, kubeconfig=kube_cluster.kubeconfig)
    try:
        backend.apply(DeploymentSpec.build(name="iris", storage_uri=V1, auth=False))
    finally:
        backend.close()
    controller = FakeController(kube_cluster, kube_namespace)
    controller.conditions("iris", PredictorConfigurationReady="True", PredictorRouteReady="True")
    [listed] = api("GET", "deployments", params=where)
    assert (listed["name"], listed["target"], listed["namespace"]) == ("iris", "kserve",
                                                                        kube_namespace)  # fmt: skip
    assert (listed["status"], listed["stage"]) == ("Loading", "scheduled")
    assert listed["metrics"]["cost_per_1000"] is None  # the local server's figures only
    controller.conditions("iris", PredictorReady=("False", "ModelLoadFailed", "no such bucket"))
    failed = api("GET", "deployments/iris", params=where)
    assert (failed["status"], failed["stage"]) == ("Failed", "failed")
    assert failed["reason"] == "ModelLoadFailed: no such bucket"

    # The deploy form on the cluster: a canary of the uploaded v2, no key minted.
    controller.ready("iris", "http://127.0.0.1:9")
    controller.event("iris", "InferenceServiceReady", "InferenceService [iris] is Ready")
    logs = api("GET", "deployments/iris/logs", params=where)
    assert [line.split(" ", 1)[1] for line in logs["lines"]] == [
        "Normal InferenceServiceReady: InferenceService [iris] is Ready"]  # fmt: skip
    snippets = api("GET", "deployments/iris/snippets", params=where)
    assert snippets["url"] == "http://127.0.0.1:9/v1/models/iris"
    assert snippets["url"] in snippets["curl"]
    form = {"name": "iris", "model": "iris", "version": "2", "storage_uri": V2,
            "canary_percent": 20}  # fmt: skip
    deployed = api("POST", "deployments", form, status=201, params=where)
    assert deployed["key"] is None
    assert (deployed["deployment"]["model"], deployed["deployment"]["canary_percent"]) == (V2, 20)
    assert deployed["deployment"]["stable_model"] == V1
    moved = api("PUT", "deployments/iris/traffic", {"canary_percent": 60}, params=where)
    assert moved["canary_percent"] == 60
    assert controller.get("iris")["spec"]["predictor"]["canaryTrafficPercent"] == 60
    # Each call answers once the API server took the change: no controller reports it here.
    rolled_back = api("POST", "deployments/iris/rollback", params=where)
    assert (rolled_back["model"], rolled_back["stable_revision"]) == (V1, None)
    stored = controller.get("iris")["spec"]["predictor"]
    assert stored["model"]["storageUri"] == V1
    assert "canaryTrafficPercent" not in stored
    controller.ready("iris", "http://127.0.0.1:9")
    api("POST", "deployments", form, status=201, params=where)  # the canary again
    controller.ready("iris", "http://127.0.0.1:9", canary_percent=20)
    promoted = api("POST", "deployments/iris/promote", params=where)
    assert (promoted["model"], promoted["stable_revision"]) == (V2, None)
    stored = controller.get("iris")["spec"]["predictor"]
    assert stored["model"]["storageUri"] == V2
    assert "canaryTrafficPercent" not in stored
    api("DELETE", "deployments/iris", status=204, params=where)
    assert api("GET", "deployments", params=where) == []


@pytest.mark.k8s
@pytest.mark.xdist_group("k8s")
def test_the_deploy_form_uploads_a_local_registry_version_to_the_store_for_the_cluster(
    api: Api,
    kube_cluster: Cluster,
    kube_namespace: str,
    s3_server: S3Server,
    iris_model: LogisticRegression,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    Registry().register(iris_model, "iris")  # MLflow keeps its artifacts on this machine
    where = {"target": "kserve", "context": CONTEXT, "namespace": kube_namespace}
    form = {"name": "iris", "model": "iris", "version": "1"}
    # No store: refused, naming the option, with nothing applied.
    refused = api("POST", "deployments", form, status=400, params=where)
    assert STORE_VARIABLE in refused["error"]
    assert api("GET", "deployments", params=where) == []
    for key, value in s3_server.environ.items():
        monkeypatch.setenv(key, value)
    store = f"{s3_server.bucket('models')}/{kube_namespace}"
    monkeypatch.setenv(STORE_VARIABLE, store)
    deployed = api("POST", "deployments", form, status=201, params=where)
    assert deployed["deployment"]["model"] == f"{store}/iris/1"
    controller = FakeController(kube_cluster, kube_namespace)
    stored = controller.get("iris")["spec"]["predictor"]["model"]
    assert stored["storageUri"] == f"{store}/iris/1"
    bucket, _, prefix = store.removeprefix("s3://").partition("/")
    keys = {item.object_name for item in s3_server.client().list_objects(
        bucket, prefix=f"{prefix}/iris/1/", recursive=True)}  # fmt: skip
    assert f"{prefix}/iris/1/MLmodel" in keys  # the version's model folder, as MLflow wrote it
    api("DELETE", "deployments/iris", status=204, params=where)


@pytest.mark.k8s
@pytest.mark.xdist_group("k8s")
def test_a_wrong_context_or_a_local_artifact_is_a_clear_4xx(
    api: Api, kube_cluster: Cluster, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    unknown = api("GET", "deployments", params={"target": "kserve", "context": "nope"},
                  status=400)  # fmt: skip
    assert "no context 'nope'" in unknown["error"]
    assert CONTEXT in unknown["error"]
    where = {"target": "kserve", "context": CONTEXT, "namespace": kube_namespace}
    local_file = {"name": "iris", "model": "iris", "version": "1", "storage_uri": "models/m.pkl"}
    refused = api("POST", "deployments", local_file, status=400, params=where)
    assert "not remote storage" in refused["error"]
    only_cluster = {"name": "iris", "model": "iris", "version": "1", "storage_uri": V1}
    refused = api("POST", "deployments", only_cluster, status=400)
    assert "storage_uri: only for a cluster" in refused["error"]


@pytest.mark.k8s
@pytest.mark.xdist_group("k8s")
def test_a_ready_inference_service_shows_the_figures_of_the_runtime_at_its_url(
    api: Api,
    kube_cluster: Cluster,
    kube_namespace: str,
    named_iris: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    backend = KServeBackend(namespace=kube_namespace, kubeconfig=kube_cluster.kubeconfig)
    try:
        for name in ("iris", "away"):
            backend.apply(DeploymentSpec.build(name=name, storage_uri=V1, auth=False))
    finally:
        backend.close()
    # The stand-in for the cluster's URL: nstarx serve with its control API (as in
    # test_kserve_backend), reached with the token the cluster's ingress would take.
    server = start_server("--model", f"iris={named_iris}", "--state-dir", str(tmp_path / "state"))
    try:
        monkeypatch.setenv("NSTARX_KSERVE_TOKEN", admin_token(security_dir()))
        controller = FakeController(kube_cluster, kube_namespace)
        controller.ready("iris", server.url)
        controller.ready("away", "http://127.0.0.1:9")  # nothing answers there
        with InferenceClient(f"{server.url}/v1/models/iris", admin_token(security_dir())) as client:
            client.predict({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                            "petal_width": 0.2})  # fmt: skip
        where = {"target": "kserve", "context": CONTEXT, "namespace": kube_namespace}
        listed = {d["name"]: d for d in api("GET", "deployments", params=where)}
    finally:
        server.stop()
    figures = listed["iris"]["metrics"]
    assert figures["requests"] >= 1
    assert figures["p50_ms"] is not None
    # Resource use and cost are the local server's figures: none for a cluster's deployment.
    local_only = ("cpu_s", "rss_bytes", "cost_per_1000", "cost_per_day", "currency")
    assert [figures[key] for key in local_only] == [None] * len(local_only)
    # Unreachable from here: listed all the same, Ready, without figures.
    assert listed["away"]["status"] == "Ready"
    assert listed["away"]["metrics"]["requests"] == 0
    assert listed["away"]["metrics"]["p50_ms"] is None
