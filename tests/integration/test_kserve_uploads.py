"""A model on this machine deployed to KServe: uploaded to the model store, served from there.

A fitted model is registered first; a registry version whose artifacts MLflow keeps on this
machine is uploaded the same way, to the same `STORE/NAME/VERSION/` prefix.

The object store is a real S3-compatible server (tests/support/s3.py), the cluster a real
etcd + kube-apiserver where `StandIn` downloads the model from that store as KServe's storage
initializer would, and serves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sklearn.tree import DecisionTreeClassifier

from nstarx_jupyter import deploy
from nstarx_jupyter.cli import main
from nstarx_jupyter.deployment.uploads import STORE_VARIABLE
from nstarx_jupyter.errors import InvalidInputError, UnavailableError
from nstarx_jupyter.registry import Registry
from tests.support.kserve_stand_in import StandIn
from tests.support.kube import GROUP, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from tests.support.kube import Cluster
    from tests.support.s3 import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.xdist_group("k8s")]
ROW = [[5.1, 3.5, 1.4, 0.2]]  # one row (the fitted model names no features)


@pytest.fixture
def cluster_env(
    kube_cluster: Cluster,
    kube_namespace: str,
    s3_server: S3Server,
    nstarx_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, StandIn]]:
    """The cluster's kubeconfig and the store's credentials in the environment; the store."""
    del nstarx_home  # its own registry, so versions start at 1
    for key, value in s3_server.environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    store = f"{s3_server.bucket('models')}/{kube_namespace}"
    with StandIn(kube_cluster, kube_namespace, s3_server, tmp_path / "pod") as stand_in:
        yield store, stand_in
        assert stand_in.errors == []


def test_a_fitted_model_is_registered_uploaded_and_served_from_the_store(
    cluster_env: tuple[str, StandIn], iris_model: LogisticRegression, s3_server: S3Server
) -> None:
    store, stand_in = cluster_env
    made = deploy(iris_model, "iris", target="kserve", namespace=stand_in.namespace,
                  model_store=store, auth=False)  # fmt: skip
    assert made.status == "Ready"
    assert made.describe().spec.storage_uri == f"{store}/iris/1"
    assert made.registration is not None
    assert made.registration.result(timeout=0).uri == "models:/iris/1"
    bucket, _, prefix = store.removeprefix("s3://").partition("/")
    keys = {item.object_name for item in s3_server.client().list_objects(
        bucket, prefix=f"{prefix}/iris/1/", recursive=True)}  # fmt: skip
    assert f"{prefix}/iris/1/MLmodel" in keys  # the registry's model folder, as MLflow wrote it
    assert made.predict(ROW)[0]["prediction"] == 0
    made.delete()


def test_the_default_store_takes_a_canarys_fitted_model_too(
    cluster_env: tuple[str, StandIn],
    iris_model: LogisticRegression,
    iris_data: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, stand_in = cluster_env
    stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(*iris_data)
    monkeypatch.setenv(STORE_VARIABLE, store)
    made = deploy(iris_model, "iris", target="kserve", namespace=stand_in.namespace, auth=False)
    made.canary(stump, 40)
    assert made.describe().spec.storage_uri == f"{store}/iris/2"
    assert list(Registry().versions("iris")["version"]) == ["2", "1"]
    made.delete()


def stored_keys(s3_server: S3Server, store: str, prefix: str) -> dict[str, int]:
    """The object store's keys under `store/prefix/`, each with its size, as it lists them."""
    bucket, _, root = store.removeprefix("s3://").partition("/")
    listed = s3_server.client().list_objects(bucket, prefix=f"{root}/{prefix}/", recursive=True)
    return {item.object_name.removeprefix(f"{root}/"): item.size for item in listed}


def test_a_local_registry_version_is_uploaded_to_the_store_and_served_from_there(
    cluster_env: tuple[str, StandIn],
    iris_model: LogisticRegression,
    iris_data: tuple[np.ndarray, np.ndarray],
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, stand_in = cluster_env
    registry = Registry()
    registry.register(iris_model, "iris")
    stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(*iris_data)
    registry.register(stump, "iris")
    assert not registry.artifact_uri("models:/iris/2").startswith("s3://")  # MLflow's are here
    made = deploy("models:/iris/2", "flowers", target="kserve", namespace=stand_in.namespace,
                  model_store=store, auth=False)  # fmt: skip
    assert made.status == "Ready"
    assert made.describe().spec.storage_uri == f"{store}/iris/2"  # the version's own prefix
    first = stored_keys(s3_server, store, "iris/2")
    assert "iris/2/MLmodel" in first
    assert made.predict(ROW)[0]["prediction"] == 0
    # The same version again (by its alias): the same files rewritten, nothing added.
    registry.set_alias("iris", "champion", 2)
    again = deploy("models:/iris@champion", "flowers", target="kserve",
                   namespace=stand_in.namespace, model_store=store, auth=False)  # fmt: skip
    assert again.describe().spec.storage_uri == f"{store}/iris/2"
    assert stored_keys(s3_server, store, "iris/2") == first
    # A canary from a registry version goes to the default store.
    monkeypatch.setenv(STORE_VARIABLE, store)
    again.canary("models:/iris/1", 30)
    assert again.describe().spec.storage_uri == f"{store}/iris/1"
    assert "iris/1/MLmodel" in stored_keys(s3_server, store, "iris/1")
    again.delete()
    # The CLI: `nstarx deploy --target kserve` with the store named on its command line.
    monkeypatch.delenv(STORE_VARIABLE)
    assert main(["deploy", "cli-iris", "models:/iris/1", "--target", "kserve", "--namespace",
                 stand_in.namespace, "--model-store", store, "--no-auth"]) == 0  # fmt: skip
    assert "deployed cli-iris revision 1 (Ready)" in capsys.readouterr().out
    path = f"/apis/{GROUP}/v1beta1/namespaces/{stand_in.namespace}/inferenceservices/cli-iris"
    with stand_in.cluster.http() as http:
        stored = http.get(path).json()
    assert stored["spec"]["predictor"]["model"]["storageUri"] == f"{store}/iris/1"


def test_a_local_registry_version_without_a_store_is_refused_naming_the_store_option(
    cluster_env: tuple[str, StandIn], iris_model: LogisticRegression
) -> None:
    _, stand_in = cluster_env
    Registry().register(iris_model, "iris")
    with pytest.raises(InvalidInputError, match="on this machine") as caught:
        deploy("models:/iris/1", "iris", target="kserve", namespace=stand_in.namespace,
               auth=False)  # fmt: skip
    assert f"${STORE_VARIABLE}" in caught.value.message
    assert "model_store=" in caught.value.message
    path = f"/apis/{GROUP}/v1beta1/namespaces/{stand_in.namespace}/inferenceservices/iris"
    with stand_in.cluster.http() as http:
        assert http.get(path).status_code == 404  # nothing reached the cluster


def test_a_missing_bucket_or_store_is_refused_before_anything_is_applied(
    cluster_env: tuple[str, StandIn],
    iris_model: LogisticRegression,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, stand_in = cluster_env
    with pytest.raises(InvalidInputError, match="the bucket 'no-such-bucket' does not exist"):
        deploy(iris_model, "iris", target="kserve", namespace=stand_in.namespace,
               model_store="s3://no-such-bucket/models", auth=False)  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"uploads to s3:// .* only"):
        deploy(iris_model, "iris", target="kserve", namespace=stand_in.namespace,
               model_store="gs://bucket/models", auth=False)  # fmt: skip
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UnavailableError, match="cannot reach the object store"):
        deploy(iris_model, "iris", target="kserve", namespace=stand_in.namespace,
               model_store="s3://models/x", auth=False)  # fmt: skip
    path = f"/apis/{GROUP}/v1beta1/namespaces/{stand_in.namespace}/inferenceservices/iris"
    with stand_in.cluster.http() as http:
        assert http.get(path).status_code == 404  # nothing reached the cluster
