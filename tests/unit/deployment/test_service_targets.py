"""The deployment service's rules per target: where a cluster may read a model from, what only
the local server can do, and which backend a target names.

The KServe backend itself is tested against a real API server elsewhere; here a backend that
only records what it is asked to apply stands for it, since every rule under test must act
before anything is applied.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import TYPE_CHECKING

import pytest

from nstarx_jupyter.deployment.backend import (
    Backend,
    Description,
    Endpoint,
    Progress,
    Target,
    TrafficView,
)
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.service import DeploymentService, backend_for
from nstarx_jupyter.errors import InvalidInputError, NotFoundError, UnsupportedError
from nstarx_jupyter.protocol.control import DeploymentFigures, ResourceTotals

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

    from nstarx_jupyter.deployment.spec import DeploymentSpec

pytestmark = pytest.mark.xdist_group("mlflow")  # the fitted-model cases register in MLflow


class RecordingCluster:
    """A `Backend` with target `kserve` that keeps what it was asked to apply, and nothing else."""

    target: Target = "kserve"

    def __init__(self) -> None:
        self.applied: list[DeploymentSpec] = []

    def apply(self, spec: DeploymentSpec, *, if_revision: int | None = None) -> Description:
        self.applied.append(spec)
        return self.describe(spec.name)

    def describe(self, name: str) -> Description:
        specs = [spec for spec in self.applied if spec.name == name]
        if not specs:
            raise NotFoundError(f"no deployment '{name}'")
        return Description(name=name, target="kserve", namespace=specs[-1].namespace,
                           revision=len(specs), status="Ready", spec=specs[-1])  # fmt: skip

    def deployments(self) -> list[Description]:
        return [self.describe(name) for name in dict.fromkeys(s.name for s in self.applied)]

    def delete(self, name: str) -> None:
        self.applied = [spec for spec in self.applied if spec.name != name]

    def traffic(self, name: str) -> TrafficView | None:
        return None

    def events(self, name: str) -> list[str]:
        return []

    def note(self, name: str, text: str) -> None:
        return None

    def watch(self, name: str, *, timeout_s: float = 300.0) -> Iterator[Progress]:
        for stage in ("accepted", "scheduled", "loaded", "ready"):
            yield Progress(stage=stage, message=stage, at=time.time())

    def endpoint(self, name: str) -> Endpoint:
        return Endpoint(url=f"http://{name}.example/v1/models/{name}")

    def metrics(self, name: str, window_s: float = 60) -> DeploymentFigures:
        return DeploymentFigures(name=name, window_s=window_s, requests=0, rps=0.0, errors=0,
                                 error_rate=0.0, p50_ms=None, p95_ms=None, p99_ms=None,
                                 resources=ResourceTotals(cpu_s=0.0, rss_bytes=0))  # fmt: skip

    def close(self) -> None:
        return None


@pytest.fixture
def cluster() -> RecordingCluster:
    made = RecordingCluster()
    assert isinstance(made, Backend)
    return made


def test_a_local_file_is_refused_for_kserve_before_anything_is_applied(
    cluster: RecordingCluster, named_iris: Path
) -> None:
    service = DeploymentService(cluster)
    for source in (named_iris, str(named_iris), f"file://{named_iris}"):
        with pytest.raises(InvalidInputError, match="cannot read this machine's disk") as caught:
            service.deploy(source, "iris")
        assert "s3://" in caught.value.message
    assert cluster.applied == []


def test_remote_storage_goes_to_the_cluster_as_named(cluster: RecordingCluster) -> None:
    service = DeploymentService(cluster)
    applied = service.deploy("s3://models/iris", "iris", namespace="team-a")
    assert (applied.description.spec.storage_uri, applied.description.namespace) == (
        "s3://models/iris", "team-a")  # fmt: skip
    assert applied.registration is None
    service.deploy("models:/iris/1", "iris", storage_uri="gs://bucket/iris/1")  # no registry read
    assert [spec.storage_uri for spec in cluster.applied] == ["s3://models/iris",
                                                              "gs://bucket/iris/1"]  # fmt: skip
    with pytest.raises(InvalidInputError, match="storage_uri: '/srv/models/iris' is not remote"):
        service.deploy("s3://models/iris", "iris", storage_uri="/srv/models/iris")


def test_a_fitted_model_is_registered_and_refused_when_its_artifact_is_local(
    cluster: RecordingCluster, iris_model: LogisticRegression
) -> None:
    service = DeploymentService(cluster)
    with pytest.raises(InvalidInputError, match="nothing was applied") as caught:
        service.deploy(iris_model, "iris")
    assert "storage_uri=" in caught.value.message
    assert "models:/iris/1" in caught.value.message  # registered: the user can upload it
    assert cluster.applied == []
    # A registry version whose artifacts are on this machine is refused the same way without a
    # store, naming the store option; a store it cannot upload to is refused before any upload.
    with pytest.raises(InvalidInputError, match="on this machine") as caught:
        service.deploy("models:/iris/1", "iris")
    for option in ("model_store=", "--model-store", "$NSTARX_MODEL_STORE", "nothing was applied"):
        assert option in caught.value.message
    with pytest.raises(InvalidInputError, match=r"uploads to s3:// .* only"):
        service.deploy("models:/iris/1", "iris", model_store="gs://bucket/models")
    assert cluster.applied == []
    # Named remote storage (where the user uploaded it): registered, and deployed from there.
    applied = service.deploy(iris_model, "iris", storage_uri="s3://bucket/iris")
    assert applied.description.spec.storage_uri == "s3://bucket/iris"
    assert applied.registration is not None
    assert applied.registration.result(timeout=0).uri == "models:/iris/2"


def test_routing_only_the_local_server_has_is_refused_on_kserve_with_the_reason(
    cluster: RecordingCluster,
) -> None:
    service = DeploymentService(cluster)
    service.deploy("s3://models/iris", "iris")
    with pytest.raises(UnsupportedError, match="an InferenceGraph has no mirroring step"):
        service.shadow("iris", "s3://models/other")
    with pytest.raises(UnsupportedError, match="a Switch tests the request body, not its headers"):
        service.set_traffic("iris", {"primary": 100}, rules=[{"header": "x-user", "values": ["a"],
                                                                "variant": "primary"}])  # fmt: skip
    with pytest.raises(UnsupportedError, match="an InferenceGraph has no fallback step"):
        service.fallback("iris", "s3://models/other")
    for feature in ("keys", "variants", "ab_report", "drift"):
        with pytest.raises(UnsupportedError, match=f"{feature} on target 'kserve'"):
            service.local(feature)
    assert len(cluster.applied) == 1  # none of them changed the deployment


def test_canary_and_promote_reach_a_cluster_backend_as_canary_traffic_percent(
    cluster: RecordingCluster,
) -> None:
    service = DeploymentService(cluster)
    service.deploy("s3://models/iris", "iris")
    described, registration = service.canary("iris", "s3://models/iris-v2", 20)
    assert registration is None
    assert (described.spec.storage_uri, described.spec.canary_traffic_percent) == (
        "s3://models/iris-v2", 20)  # fmt: skip
    with pytest.raises(InvalidInputError, match="cannot read this machine's disk"):
        service.canary("iris", "file:///srv/models/iris.joblib", 20)


def test_wait_ready_reports_each_stage_in_order(cluster: RecordingCluster) -> None:
    service = DeploymentService(cluster)
    service.deploy("s3://models/iris", "iris")
    seen: list[str] = []
    done = service.wait_ready("iris", on_progress=lambda step: seen.append(step.stage))
    assert seen == ["accepted", "scheduled", "loaded", "ready"]
    assert done.status == "Ready"


def test_a_target_names_its_backend_and_an_unknown_one_lists_the_targets() -> None:
    local = backend_for("local")
    assert isinstance(local, LocalBackend)
    local.close()
    with pytest.raises(InvalidInputError, match="one of local, kserve"):
        backend_for("cloud")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="only for target 'kserve'"):
        backend_for("local", namespace="team-a")


@pytest.mark.skipif(
    importlib.util.find_spec("nstarx_jupyter.deployment.kserve_backend") is not None,
    reason="the KServe backend is installed: its own tests cover backend_for('kserve')",
)
def test_kserve_without_its_backend_module_says_so() -> None:
    with pytest.raises(UnsupportedError, match="no KServe backend"):
        backend_for("kserve", context="kind-dev", namespace="team-a")


def test_the_notebooks_deploy_on_kserve_mints_no_key_and_says_so_once(
    cluster: RecordingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    from nstarx_jupyter.notebook import api

    api._SAID_NO_CLUSTER_KEYS.clear()
    with caplog.at_level(logging.INFO, logger="nstarx_jupyter.notebook.api"):
        made = api.deploy("s3://models/iris", "iris", target="kserve", namespace="team-a",
                          backend=cluster)  # fmt: skip
        again = api.deploy("s3://models/iris-v2", "iris", target="kserve", backend=cluster)
    assert (made.api_key, again.api_key) == (None, None)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert "no nstarx API key is minted" in warned[0]
    stages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert stages[:4] == [f"iris: {stage}" for stage in ("accepted", "scheduled", "loaded",
                                                          "ready")]  # fmt: skip
    assert made.url == "http://iris.example/v1/models/iris"
    assert cluster.applied[0].namespace == "team-a"
    with pytest.raises(UnsupportedError, match="keys on target 'kserve'"):
        made.create_key()
    with pytest.raises(UnsupportedError, match="drift on target 'kserve': nstarx's server samples"):
        made.drift()
    with pytest.raises(UnsupportedError, match="explain on target 'kserve': nstarx's server"):
        made.explain([[5.1, 3.5, 1.4, 0.2]])
    with pytest.raises(UnsupportedError, match="explain on target 'kserve'"):
        made.feature_importance()
    with pytest.raises(InvalidInputError, match="the backend given is 'local'"):
        api.deploy("s3://models/iris", "iris", target="kserve", backend=LocalBackend())
