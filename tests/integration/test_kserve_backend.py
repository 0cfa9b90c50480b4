"""`KServeBackend` against a real etcd + kube-apiserver with KServe's v0.20 CRDs.

No KServe controller runs: `FakeController` writes the InferenceService's status as KServe would,
and a local `nstarx serve` stands in at the status URL for predictions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from nstarx_jupyter.client.inference import InferenceClient
from nstarx_jupyter.deployment import kube_objects
from nstarx_jupyter.deployment.kserve_backend import STABLE_ANNOTATION, KServeBackend
from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
    UnsupportedError,
)
from nstarx_jupyter.protocol.control import DeploymentMetrics
from nstarx_jupyter.security import admin_token
from nstarx_jupyter.security.home import security_dir
from tests.integration.server import start_server
from tests.support.kube import GROUP, Cluster, FakeController

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.xdist_group("k8s")]

V1 = "s3://models/iris/1"
V2 = "s3://models/iris/2"


def iris(**fields: Any) -> DeploymentSpec:
    return DeploymentSpec.build(**{"name": "iris", "storage_uri": V1, "auth": False, **fields})


@pytest.fixture
def backend(kube_cluster: Cluster, kube_namespace: str) -> Iterator[KServeBackend]:
    made = KServeBackend(namespace=kube_namespace, kubeconfig=kube_cluster.kubeconfig)
    yield made
    made.close()


@pytest.fixture
def controller(kube_cluster: Cluster, kube_namespace: str) -> FakeController:
    return FakeController(kube_cluster, kube_namespace)


def test_an_applied_spec_is_accepted_by_the_api_server_and_reads_back_as_the_same_spec(
    backend: KServeBackend, kube_cluster: Cluster, kube_namespace: str
) -> None:
    spec = iris(min_replicas=1, max_replicas=3, labels={"team": "ml"})
    described = backend.apply(spec)

    assert (described.name, described.target, described.revision) == ("iris", "kserve", 1)
    assert described.namespace == kube_namespace
    assert described.status == "Unknown"  # no controller wrote a status yet
    assert described.spec == spec.replace(namespace=kube_namespace)
    assert described.created is not None
    assert described.url is None
    # The same manifests as to_kserve(): the nstarx ServingRuntime came along.
    with kube_cluster.http() as http:
        base = f"/apis/{GROUP}/v1alpha1/namespaces/{kube_namespace}/servingruntimes/nstarx"
        assert http.get(base).status_code == 200
        isvc = http.get(f"/apis/{GROUP}/v1beta1/namespaces/{kube_namespace}/"
                        "inferenceservices/iris").json()  # fmt: skip
    assert isvc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "nstarx"
    managers = {entry["manager"] for entry in isvc["metadata"]["managedFields"]}
    assert managers == {"nstarx"}
    # Applying the same spec again changes nothing: still revision 1.
    assert backend.apply(spec).revision == 1
    assert [d.name for d in backend.deployments()] == ["iris"]
    # Another namespace, per call through the spec.
    with pytest.raises(NotFoundError, match="no namespace 'elsewhere' on this cluster"):
        backend.apply(spec.replace(namespace="elsewhere"))


SPECS = {
    "batching, resources, Knative scale to zero": {
        "deployment_mode": "Knative", "min_replicas": 0, "max_replicas": 4,
        "container_concurrency": 8, "timeout_s": 30,
        "batching": {"max_batch_size": 16, "max_latency_ms": 10, "timeout_s": 5},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2"}}},
    "a canary": {"canary_traffic_percent": 10, "deployment_mode": "Knative"},
    "auth, options, labels, annotations": {
        "auth": True, "options": {"feature_names": ["a", "b"]}, "labels": {"team": "ml"},
        "annotations": {"example.com/owner": "me"}},
    "KServe's own runtime, V1": {"runtime": "kserve-sklearnserver", "protocol_version": "v1",
                                 "model_format_version": "1"},
    "an A/B split (an InferenceGraph)": {"traffic": {
        "variants": [{"name": "b", "storage_uri": V2}], "split": {"primary": 70, "b": 30}}},
}  # fmt: skip


PATHS = {"InferenceService": ("v1beta1", "inferenceservices"),
         "ServingRuntime": ("v1alpha1", "servingruntimes"),
         "InferenceGraph": ("v1alpha1", "inferencegraphs")}  # fmt: skip


def _contained(sent: Any, stored: Any, where: str = "") -> list[str]:
    """Where `stored` lacks or changed what was `sent` (server defaults may add fields)."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        return [problem for key, value in sent.items()
                for problem in _contained(value, stored.get(key), f"{where}.{key}")]  # fmt: skip
    return [] if sent == stored else [f"{where}: sent {sent!r}, stored {stored!r}"]


@pytest.mark.parametrize("fields", SPECS.values(), ids=list(SPECS))
def test_every_manifest_to_kserve_makes_is_stored_as_sent_by_the_api_server(
    backend: KServeBackend, kube_cluster: Cluster, fields: dict[str, Any]
) -> None:
    docs = list(yaml.safe_load_all(iris(namespace=backend.namespace, **fields).to_kserve()))
    lines = backend.apply_manifests(docs)
    assert lines == [f"{doc['kind']}/{doc['metadata']['name']} applied" for doc in docs]
    with kube_cluster.http() as http:
        for doc in docs:
            version, plural = PATHS[doc["kind"]]
            stored = http.get(f"/apis/{GROUP}/{version}/namespaces/{backend.namespace}/"
                              f"{plural}/{doc['metadata']['name']}").json()  # fmt: skip
            # Nothing pruned: the API server drops fields its schema does not know, silently.
            assert _contained(doc["spec"], stored["spec"]) == []
            assert _contained(doc["metadata"], stored["metadata"]) == []


def test_the_context_and_its_namespace_come_from_kubeconfig(
    kube_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    backend = KServeBackend(context="nstarx-test")
    try:
        assert backend.namespace == "default"
        assert backend.api_client.configuration.host == kube_cluster.url
    finally:
        backend.close()
    with pytest.raises(InvalidInputError, match=r"no context 'elsewhere'.*nstarx-test"):
        KServeBackend(context="elsewhere")
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(kube_cluster.kubeconfig.parent / "no-home"))
    with pytest.raises(UnavailableError, match="no Kubernetes cluster configured: set KUBECONFIG"):
        KServeBackend()


def test_a_cluster_without_kserve_says_so(
    backend: KServeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same API server, asked for a group it does not serve: as if KServe's CRDs were missing.
    monkeypatch.setattr(kube_objects, "GROUP", "serving.example.io")
    with pytest.raises(NotFoundError, match=r"no InferenceService resource .*is KServe installed"):
        backend.apply(iris())
    with pytest.raises(NotFoundError, match="is KServe installed"):
        backend.deployments()


def test_every_inference_service_is_listed_even_one_nstarx_cannot_run(
    backend: KServeBackend, kube_cluster: Cluster, controller: FakeController
) -> None:
    backend.apply(iris())
    by_hand = {"apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService",
               "metadata": {"name": "other"},
               "spec": {"predictor": {"sklearn": {"storageUri": V2}}, "transformer": {
                   "containers": [{"name": "t", "image": "t:1"}]}}}  # fmt: skip
    with kube_cluster.http() as http:
        answer = http.patch(
            f"/apis/{GROUP}/v1beta1/namespaces/{backend.namespace}/inferenceservices/other",
            params={"fieldManager": "kubectl"}, content=json.dumps(by_hand),
            headers={"Content-Type": "application/apply-patch+yaml"})  # fmt: skip
        answer.raise_for_status()
    controller.ready("other", "http://other.example")
    listed = {d.name: d for d in backend.deployments()}
    assert sorted(listed) == ["iris", "other"]
    assert listed["other"].status == "Ready"
    assert listed["other"].url == "http://other.example/v1/models/other"
    assert listed["iris"].status == "Unknown"


def test_a_scaled_to_zero_deployment_is_idle(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(iris(min_replicas=0, deployment_mode="Knative"))
    controller.ready("iris", "http://iris.example")
    assert backend.describe("iris").status == "Ready"
    copies = {"failedCopies": 0, "totalCopies": 0}  # KServe counts the ready pods here
    controller.write("iris", {"modelStatus": {"transitionStatus": "UpToDate", "copies": copies}})
    assert backend.describe("iris").status == "Idle"


def test_a_spec_the_api_server_refuses_comes_back_as_one_line_naming_the_fields(
    backend: KServeBackend,
) -> None:
    # Offline validation passes (label values are not in the CRD schema); the server refuses.
    with pytest.raises(InvalidInputError) as refused:
        backend.apply(iris(labels={"team": "not a label value!"}))
    message = refused.value.message
    assert "\n" not in message
    assert message.startswith("InferenceService 'iris' refused by the API server: ")
    assert 'metadata.labels: Invalid value: "not a label value!"' in message
    # The CRD's own schema, as the API server enforces it: both fields named, one line.
    doc = json.loads(json.dumps({
        "apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "broken", "namespace": backend.namespace},
        "spec": {"predictor": {"minReplicas": "two", "model": {"storageUri": V1,
                                                               "modelFormat": {}}}},
    }))  # fmt: skip
    with pytest.raises(InvalidInputError) as schema:
        backend.kube.apply(doc)  # past the offline check, as a hand-made manifest would be
    assert "\n" not in schema.value.message
    assert 'spec.predictor.minReplicas: Invalid value: "string"' in schema.value.message
    assert "spec.predictor.model.modelFormat.name: Required value" in schema.value.message
    # A path on this machine never reaches the cluster.
    with pytest.raises(InvalidInputError, match=r"cannot read.*s3, gs, pvc, oci"):
        backend.apply(iris(storage_uri="/home/me/model.joblib"))
    with pytest.raises(UnsupportedError, match=r"traffic\.shadow"):
        backend.apply(iris(traffic={"variants": [{"name": "b", "storage_uri": V2}],
                                    "shadow": "b"}))  # fmt: skip
    assert backend.deployments() == []


def _steps(controller: FakeController, *steps: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        for states in steps:
            time.sleep(0.15)
            controller.conditions("iris", **states)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_watch_reports_each_stage_as_the_controller_writes_the_conditions(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(iris())
    thread = _steps(
        controller,
        {"PredictorConfigurationReady": "True"},
        {"PredictorConfigurationReady": "True", "PredictorRouteReady": "True",
         "PredictorReady": "True"},
        dict.fromkeys(("PredictorConfigurationReady", "PredictorRouteReady", "PredictorReady",
                       "IngressReady", "Ready"), "True"),
    )  # fmt: skip
    started = time.monotonic()
    stages = [step.stage for step in backend.watch("iris", timeout_s=20)]
    elapsed_s = time.monotonic() - started
    thread.join()
    assert stages == ["accepted", "scheduled", "loaded", "ready"]
    assert elapsed_s < 3  # three writes 0.15 s apart, each seen through the watch at once
    assert backend.describe("iris").status == "Ready"


def test_watch_ends_with_the_failing_conditions_reason_and_message(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(iris())
    thread = _steps(controller, {
        "PredictorConfigurationReady": "True",
        "PredictorReady": ("False", "ModelLoadFailed", "no such key: iris/1/model.joblib"),
        "Ready": ("False", "ModelLoadFailed", "no such key: iris/1/model.joblib")})  # fmt: skip
    steps = list(backend.watch("iris", timeout_s=20))
    thread.join()
    assert [step.stage for step in steps] == ["accepted", "failed"]
    assert steps[-1].reason == "ModelLoadFailed: no such key: iris/1/model.joblib"
    described = backend.describe("iris")
    assert (described.status, described.reason) == ("Failed", steps[-1].reason)


def test_watch_times_out_naming_the_stage_it_waited_for_and_the_last_conditions(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(iris())
    controller.conditions("iris", PredictorConfigurationReady="True",
                          PredictorReady=("Unknown", "RevisionMissing", "pulling"))  # fmt: skip
    started = time.monotonic()
    seen: list[str] = []
    with pytest.raises(UnavailableError) as timed_out:
        seen.extend(step.stage for step in backend.watch("iris", timeout_s=1.5))
    assert 1.4 < time.monotonic() - started < 5
    assert seen == ["accepted", "scheduled"]
    message = timed_out.value.message
    assert "not ready after 1.5 s: waited for the model to load (PredictorReady)" in message
    assert "PredictorReady=Unknown (RevisionMissing)" in message


def test_a_watch_from_an_expired_version_reads_the_object_again(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(iris())
    controller.ready("iris", "http://iris.example")
    # Resource version 1 is older than the API server's watch cache: it answers 410 Gone as an
    # ERROR event; the backend reads the object again instead of failing or spinning.
    started = time.monotonic()
    found, version = backend._next_change("iris", "1", remaining_s=10)
    assert time.monotonic() - started < 2
    assert found["status"]["url"] == "http://iris.example"
    assert version == controller.get("iris")["metadata"]["resourceVersion"]


def test_a_status_of_an_older_generation_is_not_taken_for_the_new_one(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(iris())
    controller.ready("iris", "http://iris.example")
    backend.apply(iris(max_replicas=2))  # generation 2: the Ready of generation 1 is stale
    described = backend.describe("iris")
    assert (described.revision, described.status) == (2, "Loading")
    with pytest.raises(UnavailableError, match="waited for the predictor to be scheduled"):
        list(backend.watch("iris", timeout_s=1))


def test_a_canary_keeps_its_stable_spec_and_promote_drops_it(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(iris())
    controller.ready("iris", "http://iris.example")
    canary = backend.apply(iris(storage_uri=V2, canary_traffic_percent=20))
    assert canary.stable is not None
    assert (canary.stable.revision, canary.stable.spec.storage_uri) == (1, V1)
    assert canary.stable.spec.canary_traffic_percent is None
    controller.ready("iris", "http://iris.example", canary_percent=20)
    traffic = backend.traffic("iris")
    assert traffic is not None
    assert [(arm.variant, arm.percent) for arm in traffic.split] == [("canary", 20), ("stable", 80)]
    # A new canary share keeps the same stable.
    assert backend.apply(iris(storage_uri=V2, canary_traffic_percent=50)).stable == canary.stable

    promoted = backend.apply(iris(storage_uri=V2))
    assert promoted.stable is None
    assert (promoted.spec.storage_uri, promoted.spec.canary_traffic_percent) == (V2, None)
    controller.ready("iris", "http://iris.example")
    traffic = backend.traffic("iris")
    assert traffic is not None
    assert [(arm.variant, arm.percent) for arm in traffic.split] == [("primary", 100)]
    annotations = controller.get("iris")["metadata"]["annotations"]
    assert STABLE_ANNOTATION not in annotations


def test_a_canary_rolls_back_to_the_stable_spec(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(iris())
    controller.ready("iris", "http://iris.example")
    stable = backend.apply(iris(storage_uri=V2, canary_traffic_percent=10)).stable
    assert stable is not None
    rolled_back = backend.apply(stable.spec)
    assert rolled_back.stable is None
    assert rolled_back.spec == iris(namespace=backend.namespace)
    predictor = controller.get("iris")["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == V1
    assert "canaryTrafficPercent" not in predictor


def test_delete_removes_the_inference_service(backend: KServeBackend) -> None:
    backend.apply(iris())
    backend.delete("iris")
    with pytest.raises(NotFoundError, match="no InferenceService 'iris' in namespace"):
        backend.describe("iris")
    with pytest.raises(NotFoundError):
        backend.delete("iris")
    assert backend.deployments() == []


def test_a_field_another_manager_set_is_a_conflict_naming_the_manager_and_field(
    backend: KServeBackend, kube_cluster: Cluster
) -> None:
    backend.apply(iris())
    # Someone scales it by hand (kubectl apply --server-side as field manager "ops").
    change = {"apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService",
              "metadata": {"name": "iris"}, "spec": {"predictor": {"maxReplicas": 5}}}  # fmt: skip
    with kube_cluster.http() as http:
        answer = http.patch(
            f"/apis/{GROUP}/v1beta1/namespaces/{backend.namespace}/inferenceservices/iris",
            params={"fieldManager": "ops", "force": "true"}, content=json.dumps(change),
            headers={"Content-Type": "application/apply-patch+yaml"})  # fmt: skip
        answer.raise_for_status()
    with pytest.raises(ConflictError) as conflict:
        backend.apply(iris(max_replicas=2))
    assert "spec.predictor.maxReplicas set by field manager 'ops'" in conflict.value.message
    assert backend.describe("iris").spec.max_replicas == 5  # nothing overwritten
    # if_revision: only onto the revision the caller saw.
    revision = backend.describe("iris").revision
    with pytest.raises(ConflictError, match=f"at revision {revision}, not {revision - 1}"):
        backend.apply(iris(min_replicas=2, max_replicas=5), if_revision=revision - 1)
    assert backend.apply(iris(min_replicas=2, max_replicas=5), if_revision=revision).revision == (
        revision + 1
    )


def test_a_file_with_one_bad_document_applies_nothing(
    backend: KServeBackend, kube_cluster: Cluster
) -> None:
    docs = list(yaml.safe_load_all(iris().replace(namespace=backend.namespace).to_kserve()))
    bad: dict[str, Any] = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "InferenceGraph",
           "metadata": {"name": "graph"},
           "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": [
               {"serviceName": "iris", "weight": 60}]}}}}  # fmt: skip
    with pytest.raises(InvalidInputError) as refused:
        backend.apply_manifests([*docs, bad])
    assert refused.value.message.startswith("document 3 (InferenceGraph/graph): ")
    assert "add up to 100, not 60" in refused.value.message
    assert refused.value.message.endswith("nothing was applied")
    with kube_cluster.http() as http:
        runtime = f"/apis/{GROUP}/v1alpha1/namespaces/{backend.namespace}/servingruntimes/nstarx"
        assert http.get(runtime).status_code == 404
    assert backend.deployments() == []
    bad["spec"]["nodes"]["root"]["steps"][0]["weight"] = 100
    assert backend.apply_manifests([*docs, bad]) == [
        "ServingRuntime/nstarx applied", "InferenceService/iris applied",
        "InferenceGraph/graph applied"]  # fmt: skip


def test_nstarx_apply_with_a_context_applies_the_file_on_the_cluster_all_or_none(
    backend: KServeBackend, kube_cluster: Cluster, tmp_path: Path
) -> None:
    """`nstarx apply -f FILE --context NAME -n NS`: the kubeconfig's context, KServe's target."""
    docs = list(yaml.safe_load_all(iris().replace(namespace=backend.namespace).to_kserve()))
    manifest = tmp_path / "isvc.yaml"
    manifest.write_text(yaml.safe_dump_all([*docs, {**docs[-1], "spec": {"predictor": {}}}]))
    command = [sys.executable, "-m", "nstarx_jupyter.cli", "apply", "-f", str(manifest),
               "--context", "nstarx-test", "-n", backend.namespace]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig)}
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                             check=False)  # fmt: skip
    assert refused.returncode == 2, refused.stdout
    assert "nothing was applied" in refused.stderr
    assert backend.deployments() == []
    manifest.write_text(yaml.safe_dump_all(docs))
    applied = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                             check=False)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == ["ServingRuntime/nstarx applied",
                                           "InferenceService/iris applied"]  # fmt: skip
    assert [d.name for d in backend.deployments()] == ["iris"]


def test_notes_and_events_read_oldest_first(backend: KServeBackend) -> None:
    backend.apply(iris())
    backend.note("iris", "canary at 10 %:\n p99 fine")
    time.sleep(1.1)  # Event timestamps have whole seconds
    backend.note("iris", "promoted")
    lines = backend.events("iris")
    assert [line.split(" ", 1)[1] for line in lines] == ["note: canary at 10 %: p99 fine",
                                                         "note: promoted"]  # fmt: skip
    with pytest.raises(NotFoundError):
        backend.note("nothing", "x")


def test_predictions_reach_the_model_through_the_endpoint_at_the_status_url(
    backend: KServeBackend,
    controller: FakeController,
    named_iris: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend.apply(iris())
    with pytest.raises(UnavailableError, match="'iris' is not routed yet"):
        backend.endpoint("iris")
    # The stand-in: nstarx serve with its control API on (--state-dir), whose admin token is the
    # one the cluster's ingress would take.
    server = start_server("--model", f"iris={named_iris}", "--state-dir", str(tmp_path / "state"))
    try:
        monkeypatch.setenv("NSTARX_KSERVE_TOKEN", admin_token(security_dir()))
        controller.ready("iris", server.url)
        endpoint = backend.endpoint("iris")
        assert endpoint.url == f"{server.url}/v1/models/iris"
        assert endpoint.token == admin_token(security_dir())
        assert endpoint.verify is True
        with InferenceClient(endpoint.url, endpoint.token) as client:
            answer = client.predict({"sepal_length": 5.1, "sepal_width": 3.5,
                                     "petal_length": 1.4, "petal_width": 0.2})  # fmt: skip
        assert answer["prediction"] == 0
        figures = backend.metrics("iris", window_s=60)
        assert isinstance(figures, DeploymentMetrics)  # one pod: its runtime's own answer
        assert figures.name == "iris"
        assert figures.requests >= 1
        assert backend.describe("iris").url == endpoint.url
    finally:
        server.stop()


def test_metrics_of_a_model_on_another_runtime_say_what_they_need(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(iris(runtime="kserve-sklearnserver"))
    controller.ready("iris", "http://iris.example")
    with pytest.raises(UnsupportedError, match=r"need the nstarx runtime .*Prometheus"):
        backend.metrics("iris")
