"""A traffic split on `KServeBackend`: one deployment, an InferenceGraph over a service per variant.

Against a real etcd + kube-apiserver with KServe's v0.20 CRDs; `FakeController` writes the status
KServe's controller would (the services' conditions, the graph's `Ready` and URL). Every claim
about what is stored is read back from the API server.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import kubernetes
import pytest

from nstarx_jupyter.deployment.kserve_backend import KServeBackend
from nstarx_jupyter.deployment.kserve_graphs import REVISION_ANNOTATION, SPEC_ANNOTATION
from nstarx_jupyter.deployment.kserve_status import CONTINUES_ANNOTATION
from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
    UnsupportedError,
)
from tests.support.kube import GROUP, Cluster, FakeController

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.xdist_group("k8s")]

V1 = "s3://models/iris/1"
V2 = "s3://models/iris/2"
ALL_TRUE = dict.fromkeys(("PredictorConfigurationReady", "PredictorRouteReady", "PredictorReady",
                          "IngressReady", "Ready"), "True")  # fmt: skip


def iris(**fields: Any) -> DeploymentSpec:
    return DeploymentSpec.build(**{"name": "iris", "storage_uri": V1, "auth": False, **fields})


def split(primary: int, b: int, **fields: Any) -> DeploymentSpec:
    traffic = {
        "variants": [{"name": "b", "storage_uri": V2}],
        "split": {"primary": primary, "b": b},
    }
    return iris(traffic=traffic, **fields)


@pytest.fixture
def backend(kube_cluster: Cluster, kube_namespace: str) -> Iterator[KServeBackend]:
    made = KServeBackend(namespace=kube_namespace, kubeconfig=kube_cluster.kubeconfig)
    yield made
    made.close()


@pytest.fixture
def controller(kube_cluster: Cluster, kube_namespace: str) -> FakeController:
    return FakeController(kube_cluster, kube_namespace)


def stored(cluster: Cluster, namespace: str) -> dict[str, list[str]]:
    """The names of the KServe objects in the namespace, by plural, as the API server lists them."""
    found = {}
    with cluster.http() as http:
        for version, plural in (("v1beta1", "inferenceservices"), ("v1alpha1", "inferencegraphs")):
            answer = http.get(f"/apis/{GROUP}/{version}/namespaces/{namespace}/{plural}")
            answer.raise_for_status()
            found[plural] = sorted(item["metadata"]["name"] for item in answer.json()["items"])
    return found


def all_ready(controller: FakeController, url: str = "http://iris.example") -> None:
    for service in ("iris-primary", "iris-b"):
        controller.ready(service, f"http://{service}.example")
    controller.graph("iris", url, Ready="True")


def test_a_split_is_applied_described_changed_listed_and_deleted_as_one_deployment(
    backend: KServeBackend, controller: FakeController, kube_cluster: Cluster
) -> None:
    namespace = backend.namespace
    applied = backend.apply(split(70, 30))
    assert (applied.name, applied.revision, applied.status) == ("iris", 1, "Unknown")
    assert applied.spec == split(70, 30, namespace=namespace)
    assert stored(kube_cluster, namespace) == {
        "inferenceservices": ["iris-b", "iris-primary"], "inferencegraphs": ["iris"]}  # fmt: skip
    graph = controller.get("iris", "inferencegraphs")
    assert graph["metadata"]["annotations"][REVISION_ANNOTATION] == "1"
    assert SPEC_ANNOTATION in graph["metadata"]["annotations"]
    assert {entry["manager"] for entry in graph["metadata"]["managedFields"]} == {"nstarx"}
    steps = graph["spec"]["nodes"]["root"]["steps"]
    assert [(s["serviceName"], s["weight"]) for s in steps] == [
        ("iris-primary", 70),
        ("iris-b", 30),
    ]
    for service, uri in (("iris-primary", V1), ("iris-b", V2)):
        isvc = controller.get(service)
        assert isvc["metadata"]["labels"]["nstarx.io/deployment"] == "iris"
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == uri

    all_ready(controller)
    described = backend.describe("iris")
    assert (described.status, described.stage, described.reason) == ("Ready", "ready", None)
    assert described.url == "http://iris.example/v1/models/iris"
    assert backend.endpoint("iris").url == described.url
    assert described.traffic is not None
    assert [(a.variant, a.version, a.percent) for a in described.traffic.split] == [
        ("primary", "iris-primary-predictor-00001", 70),
        ("b", "iris-b-predictor-00001", 30),
    ]

    changed = backend.apply(split(50, 50), if_revision=described.revision)
    assert changed.revision == 2
    # The graph's new generation is not reconciled yet: not Ready, though every service is.
    assert (changed.status, changed.stage) == ("Loading", "loaded")
    assert changed.reason == ("InferenceGraph 'iris': the controller has not reconciled this "
                              "revision yet")  # fmt: skip
    controller.graph("iris", "http://iris.example", Ready="True")
    traffic = backend.traffic("iris")
    assert traffic is not None
    assert [(arm.variant, arm.percent) for arm in traffic.split] == [("primary", 50), ("b", 50)]
    assert backend.describe("iris").status == "Ready"
    assert [d.name for d in backend.deployments()] == ["iris"]  # the variants are not listed
    with pytest.raises(ConflictError, match="at revision 2, not 1"):
        backend.apply(split(60, 40), if_revision=1)
    backend.note("iris", "50/50 from now on")
    assert backend.events("iris")[-1].endswith("note: 50/50 from now on")

    backend.delete("iris")
    assert stored(kube_cluster, namespace) == {"inferenceservices": [], "inferencegraphs": []}
    assert backend.deployments() == []
    with pytest.raises(NotFoundError, match="no InferenceService 'iris'"):
        backend.describe("iris")


def test_a_splits_figures_need_the_nstarx_runtime_in_every_variant(
    backend: KServeBackend, controller: FakeController
) -> None:
    """Figures come from each variant's pod; a variant on another runtime has none to give."""
    backend.apply(iris(traffic={"variants": [{"name": "b", "storage_uri": V2,
                                              "runtime": "kserve-sklearnserver"}],
                                "split": {"primary": 70, "b": 30}}))  # fmt: skip
    with pytest.raises(UnsupportedError, match=r"^metrics: variant 'b' of 'iris' \(Inference"
                       r"Service 'iris-b'\) runs on runtime 'kserve-sklearnserver'"):  # fmt: skip
        backend.metrics("iris")
    backend.delete("iris")


def test_a_failing_variant_fails_the_split_naming_the_variant(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(split(70, 30))
    controller.ready("iris-primary", "http://iris-primary.example")
    controller.graph("iris", "http://iris.example", Ready="True")
    assert backend.describe("iris").status == "Unknown"  # iris-b has no status yet
    controller.conditions("iris-b", PredictorConfigurationReady="True",
                          PredictorReady=("False", "ModelLoadFailed", "no such key"),
                          Ready=("False", "ModelLoadFailed", "no such key"))  # fmt: skip
    described = backend.describe("iris")
    assert (described.status, described.stage) == ("Failed", "failed")
    assert described.reason == "InferenceService 'iris-b': ModelLoadFailed: no such key"
    steps = list(backend.watch("iris", timeout_s=10))
    assert [step.stage for step in steps] == ["accepted", "failed"]
    assert steps[-1].reason == described.reason


def test_watch_follows_every_variant_then_the_graph_to_ready(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(split(70, 30))

    def run() -> None:
        for service in ("iris-primary", "iris-b"):
            time.sleep(0.15)
            controller.conditions(service, PredictorConfigurationReady="True")
        for service in ("iris-primary", "iris-b"):
            time.sleep(0.15)
            controller.ready(service, f"http://{service}.example")
        time.sleep(0.15)
        controller.graph("iris", "http://iris.example", Ready="True")

    thread = threading.Thread(target=run)
    thread.start()
    stages = [step.stage for step in backend.watch("iris", timeout_s=30)]
    thread.join()
    assert stages == ["accepted", "scheduled", "loaded", "ready"]
    assert backend.describe("iris").status == "Ready"


def test_a_split_watch_times_out_naming_what_it_waited_for(
    backend: KServeBackend, controller: FakeController
) -> None:
    backend.apply(split(70, 30))
    for service in ("iris-primary", "iris-b"):
        controller.ready(service, f"http://{service}.example")
    with pytest.raises(UnavailableError, match="waited for the InferenceGraph and every") as info:
        list(backend.watch("iris", timeout_s=1))
    assert "InferenceGraph 'iris': none" in str(info.value)


def test_one_model_becomes_a_split_and_back(
    backend: KServeBackend, controller: FakeController, kube_cluster: Cluster
) -> None:
    namespace = backend.namespace
    backend.apply(iris())
    controller.ready("iris", "http://iris.example")
    before = backend.describe("iris")
    assert before.revision == 1
    made = backend.apply(split(70, 30), if_revision=before.revision)
    assert made.revision == 2  # the deployment's revisions go on across the change of shape
    assert stored(kube_cluster, namespace) == {
        "inferenceservices": ["iris-b", "iris-primary"], "inferencegraphs": ["iris"]}  # fmt: skip
    # Back to one model: the plain InferenceService again, the split's parts gone.
    all_ready(controller)
    back = backend.apply(iris(storage_uri=V2), if_revision=2)
    assert back.spec == iris(storage_uri=V2, namespace=namespace)
    assert back.traffic is None
    assert stored(kube_cluster, namespace) == {"inferenceservices": ["iris"], "inferencegraphs": []}
    # A new object (generation 1) that continues the split's revision, as stored.
    plain = controller.get("iris")
    assert plain["metadata"]["generation"] == 1
    assert plain["metadata"]["annotations"][CONTINUES_ANNOTATION] == "2"
    assert back.revision == backend.describe("iris").revision == 3
    # Its own changes count on from there, and keep the annotation (a canary, its stable).
    controller.ready("iris", "http://iris.example")
    with pytest.raises(ConflictError, match="at revision 3, not 1"):
        backend.apply(iris(storage_uri=V1), if_revision=1)
    canary = backend.apply(iris(storage_uri=V1, canary_traffic_percent=20), if_revision=3)
    assert canary.revision == 4
    assert canary.stable is not None
    assert canary.stable.revision == 3
    assert controller.get("iris")["metadata"]["annotations"][CONTINUES_ANNOTATION] == "2"
    assert backend.describe("iris").spec.annotations == {}  # ours: not part of the spec
    promoted = backend.apply(iris(storage_uri=V1), if_revision=4)
    assert promoted.revision == 5
    # Split again, then one model again: the revision still only grows.
    assert backend.apply(split(70, 30), if_revision=5).revision == 6
    all_ready(controller)
    again = backend.apply(iris(storage_uri=V2), if_revision=6)
    assert again.revision == 7
    assert controller.get("iris")["metadata"]["annotations"][CONTINUES_ANNOTATION] == "6"
    # A split that drops a variant deletes its service.
    backend.apply(iris(traffic={"variants": [{"name": "b", "storage_uri": V2},
                                             {"name": "c", "storage_uri": V1}],
                                "split": {"primary": 50, "b": 25, "c": 25}}))  # fmt: skip
    assert stored(kube_cluster, namespace)["inferenceservices"] == [
        "iris-b", "iris-c", "iris-primary"]  # fmt: skip
    backend.apply(split(50, 50))
    assert stored(kube_cluster, namespace)["inferenceservices"] == ["iris-b", "iris-primary"]


def test_a_split_the_api_server_refuses_names_what_was_applied_before(
    backend: KServeBackend, kube_cluster: Cluster
) -> None:
    # Offline validation passes (label values are not in the CRD schema); the server refuses.
    with pytest.raises(InvalidInputError) as refused:
        backend.apply(split(70, 30, labels={"team": "not a label value!"}))
    message = refused.value.message
    assert message.startswith("InferenceService 'iris-primary' refused by the API server: ")
    assert message.endswith("; applied before it: ServingRuntime/nstarx")
    assert stored(kube_cluster, backend.namespace) == {"inferenceservices": [],
                                                       "inferencegraphs": []}  # fmt: skip
    # What KServe cannot express is refused before anything is applied, with the reason.
    with pytest.raises(
        UnsupportedError, match=r"traffic\.sticky_header: a Splitter picks at random"
    ):
        backend.apply(iris(traffic={"variants": [{"name": "b", "storage_uri": V2}],
                                    "split": {"primary": 50, "b": 50},
                                    "sticky_header": "x-user"}))  # fmt: skip
    with pytest.raises(InvalidInputError, match="promote or roll back the canary before splitting"):
        backend.apply(split(50, 50, canary_traffic_percent=10))


def test_a_user_who_may_not_read_graphs_still_deploys_one_model(
    kube_cluster: Cluster, kube_namespace: str
) -> None:
    """RBAC that grants InferenceServices but not InferenceGraphs: no split, the rest works."""
    rbac = "rbac.authorization.k8s.io"
    role = {"apiVersion": f"{rbac}/v1", "kind": "Role",
            "metadata": {"name": "services-only", "namespace": kube_namespace},
            "rules": [{"apiGroups": [GROUP], "resources": ["inferenceservices", "servingruntimes"],
                       "verbs": ["*"]},
                      {"apiGroups": [""], "resources": ["events"], "verbs": ["*"]}]}  # fmt: skip
    binding = {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding",
               "metadata": {"name": "limited", "namespace": kube_namespace},
               "subjects": [{"kind": "User", "name": "limited", "apiGroup": rbac}],
               "roleRef": {"kind": "Role", "name": "services-only", "apiGroup": rbac}}  # fmt: skip
    with kube_cluster.http() as http:
        for doc, plural in ((role, "roles"), (binding, "rolebindings")):
            http.post(f"/apis/{rbac}/v1/namespaces/{kube_namespace}/{plural}",
                      json=doc).raise_for_status()  # fmt: skip
    configuration = kubernetes.client.Configuration()
    configuration.host = kube_cluster.url
    configuration.ssl_ca_cert = str(kube_cluster.ca_file)
    configuration.api_key = {"authorization": f"Bearer {kube_cluster.user_token}"}
    backend = KServeBackend(namespace=kube_namespace,
                            api_client=kubernetes.client.ApiClient(configuration))  # fmt: skip
    try:
        assert backend.apply(iris()).name == "iris"
        assert [d.name for d in backend.deployments()] == ["iris"]
        assert backend.describe("iris").status == "Unknown"
        with pytest.raises(ForbiddenError) as refused:
            backend.apply(split(70, 30))
        assert refused.value.message.endswith(
            "applied before it: ServingRuntime/nstarx, InferenceService/iris-primary, "
            "InferenceService/iris-b"
        )
        backend.delete("iris")
    finally:
        backend.api_client.close()
