"""DeploymentSpec to KServe manifests and back, checked against the shipped CRD schemas."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nstarx_jupyter.deployment import DeploymentSpec
from nstarx_jupyter.deployment.kserve import MODE_ANNOTATION, to_manifests, validate_manifest
from nstarx_jupyter.deployment.spec import from_kserve
from nstarx_jupyter.errors import InvalidInputError

S3 = "s3://models/iris/1"


def _isvc(spec: DeploymentSpec, **kw: Any) -> dict[str, Any]:
    return to_manifests(spec, **kw)[-1]


def test_defaults_give_our_runtime_and_an_inference_service_with_the_mode() -> None:
    text = DeploymentSpec(name="iris", storage_uri=S3).to_kserve()
    runtime, isvc = list(yaml.safe_load_all(text))
    assert runtime["kind"] == "ServingRuntime"
    assert runtime["metadata"]["name"] == "nstarx"
    assert runtime["spec"]["containers"][0]["args"][:3] == [
        "serve", "--model_name={{.Name}}", "--model_dir=/mnt/models"]  # fmt: skip
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"][MODE_ANNOTATION] == "Standard"
    model = isvc["spec"]["predictor"]["model"]
    assert model == {"modelFormat": {"name": "sklearn"}, "storageUri": S3,
                     "protocolVersion": "v2", "runtime": "nstarx"}  # fmt: skip


def test_every_field_lands_where_kserve_expects_it() -> None:
    spec = DeploymentSpec.build(
        name="fraud", namespace="team-a", storage_uri=S3, model_format="xgboost",
        runtime="kserve-xgbserver", min_replicas=2, max_replicas=5, container_concurrency=4,
        timeout_s=30, batching={"max_batch_size": 16, "max_latency_ms": 20},
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2"}},
        canary_traffic_percent=10, labels={"team": "risk"},
        options={"feature_names": ["a", "b"]}, auth=True,
    )  # fmt: skip
    docs = to_manifests(spec)
    assert [d["kind"] for d in docs] == ["InferenceService"]  # a cluster runtime: no nstarx one
    isvc = docs[0]
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 2
    assert predictor["maxReplicas"] == 5
    assert predictor["containerConcurrency"] == 4
    assert predictor["timeout"] == 30
    assert predictor["batcher"] == {"maxBatchSize": 16, "maxLatency": 20}
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["runtime"] == "kserve-xgbserver"
    assert predictor["model"]["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert isvc["metadata"]["namespace"] == "team-a"
    assert isvc["metadata"]["labels"] == {"team": "risk"}
    assert "feature_names" in isvc["metadata"]["annotations"]["nstarx.io/options"]
    assert isvc["metadata"]["annotations"]["security.opendatahub.io/enable-auth"] == "true"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "Iris_Model"}, "'name'"),
        ({"name": "iris", "min_replicas": 3, "max_replicas": 2}, "min_replicas (3) is above"),
        ({"name": "iris", "canary_traffic_percent": 150}, "'canary_traffic_percent'"),
        ({"name": "iris", "resources": {"requests": {"cpu": "lots"}}}, "'resources.requests'"),
        ({"name": "iris", "batching": {"max_batch_size": 0}}, "'batching.max_batch_size'"),
        ({"name": "iris", "protocol_version": "v3"}, "'protocol_version'"),
        ({"name": "iris", "surprise": 1}, "'surprise'"),
    ],
)
def test_an_invalid_spec_names_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError, match=field.replace("(", r"\(").replace(")", r"\)")):
        DeploymentSpec.build(**fields)


def test_what_the_cluster_cannot_run_is_refused_by_field() -> None:
    local = DeploymentSpec(name="iris", storage_uri="/home/me/model.joblib")
    with pytest.raises(InvalidInputError, match=r"storage_uri: '/home/me/model\.joblib' is on"):
        to_manifests(local)
    assert to_manifests(local, storage_uri=S3)[-1]["spec"]["predictor"]["model"]["storageUri"] == S3
    with pytest.raises(InvalidInputError, match="storage_uri: KServe needs"):
        to_manifests(DeploymentSpec(name="iris"))
    zero = DeploymentSpec(name="iris", storage_uri=S3, min_replicas=0)
    with pytest.raises(InvalidInputError, match=r"minReplicas: scaling to zero needs Knative"):
        to_manifests(zero)
    knative = zero.replace(deployment_mode="Knative")
    assert _isvc(knative)["spec"]["predictor"]["minReplicas"] == 0


def test_schema_and_webhook_errors_carry_the_path() -> None:
    isvc = _isvc(DeploymentSpec(name="iris", storage_uri=S3))
    isvc["spec"]["predictor"]["minReplica"] = 1  # a typo kubectl --validate=strict refuses
    with pytest.raises(InvalidInputError, match=r"InferenceService spec\.predictor: .*minReplica"):
        validate_manifest(isvc)
    del isvc["spec"]["predictor"]["minReplica"]
    isvc["spec"]["predictor"]["sklearn"] = {"storageUri": S3}
    with pytest.raises(InvalidInputError, match="exactly one predictor implementation"):
        validate_manifest(isvc)
    del isvc["spec"]["predictor"]["sklearn"]
    isvc["metadata"]["name"] = "9lives"
    with pytest.raises(InvalidInputError, match=r"metadata\.name"):
        validate_manifest(isvc)
    isvc["metadata"]["name"] = "iris"
    isvc["spec"]["predictor"]["scaleMetric"] = "cpu"
    isvc["metadata"]["annotations"][MODE_ANNOTATION] = "Knative"
    with pytest.raises(InvalidInputError, match="scaleMetric: 'cpu' needs the HPA"):
        validate_manifest(isvc)
    with pytest.raises(InvalidInputError, match="kind: 'Pod'"):
        validate_manifest({"kind": "Pod"})


def test_kubectl_style_yaml_reads_back() -> None:
    legacy = yaml.safe_load(f"""
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: sklearn-iris
  annotations:
    serving.kserve.io/deploymentMode: RawDeployment
spec:
  predictor:
    nodeSelector: {{gpu: "false"}}
    sklearn:
      storageUri: {S3}
""")
    spec = from_kserve(legacy)
    assert (spec.name, spec.model_format, spec.storage_uri) == ("sklearn-iris", "sklearn", S3)
    assert spec.deployment_mode == "Standard"
    assert spec.protocol_version == "v1"
    legacy["spec"]["transformer"] = {"containers": [{"name": "t", "image": "x"}]}
    with pytest.raises(InvalidInputError, match=r"spec\.transformer"):
        from_kserve(legacy)


names = st.from_regex(r"[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,5})?", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(
    name=names,
    fmt=st.sampled_from(["sklearn", "xgboost", "lightgbm", "onnx", "mlflow"]),
    replicas=st.tuples(st.integers(1, 3), st.integers(0, 5)).filter(
        lambda r: r[1] == 0 or r[0] <= r[1]
    ),
    concurrency=st.none() | st.integers(0, 64),
    timeout=st.none() | st.integers(1, 600),
    batching=st.none()
    | st.fixed_dictionaries(
        {"max_batch_size": st.integers(1, 256), "max_latency_ms": st.integers(1, 500)}
    ),
    canary=st.none() | st.integers(0, 100),
    runtime=st.sampled_from([None, "kserve-mlserver"]),
    auth=st.booleans(),
)
def test_any_spec_round_trips_through_kserve(**fields: Any) -> None:
    low, high = fields.pop("replicas")
    spec = DeploymentSpec.build(
        name=fields["name"], storage_uri=S3, model_format=fields["fmt"], runtime=fields["runtime"],
        min_replicas=low, max_replicas=high, container_concurrency=fields["concurrency"],
        timeout_s=fields["timeout"], batching=fields["batching"],
        canary_traffic_percent=fields["canary"], auth=fields["auth"],
    )  # fmt: skip
    back = from_kserve(yaml.safe_load(yaml.safe_dump(_isvc(spec))))
    assert back == spec.replace(runtime=spec.runtime or "nstarx")


def _ab(**traffic: Any) -> DeploymentSpec:
    return DeploymentSpec.build(
        name="iris", storage_uri="s3://models/iris/1", auth=True,
        traffic={"variants": [{"name": "challenger", "storage_uri": "s3://models/iris/2",
                               "model_format": "xgboost"}],
                 "split": {"primary": 70, "challenger": 30}, **traffic},
    )  # fmt: skip


def test_a_split_becomes_an_inference_graph_splitter_over_one_service_per_variant() -> None:
    docs = list(yaml.safe_load_all(_ab().to_kserve()))
    kinds = [(doc["kind"], doc["metadata"]["name"]) for doc in docs]
    assert kinds == [
        ("ServingRuntime", "nstarx"),
        ("InferenceService", "iris-primary"),
        ("InferenceService", "iris-challenger"),
        ("InferenceGraph", "iris"),
    ]
    graph = docs[-1]
    assert graph["spec"]["nodes"]["root"] == {"routerType": "Splitter", "steps": [
        {"name": "primary", "serviceName": "iris-primary", "weight": 70},
        {"name": "challenger", "serviceName": "iris-challenger", "weight": 30},
    ]}  # fmt: skip
    challenger = docs[2]["spec"]["predictor"]["model"]
    assert (challenger["storageUri"], challenger["modelFormat"]["name"]) == (
        "s3://models/iris/2", "xgboost")  # fmt: skip
    assert graph["metadata"]["annotations"] == {"security.opendatahub.io/enable-auth": "true"}
    for doc in docs:
        validate_manifest(doc)


def test_a_local_variant_needs_a_remote_uri_for_the_cluster() -> None:
    traffic = _ab().model_dump()["traffic"]
    traffic["variants"] = [{"name": "challenger", "storage_uri": "/srv/models/m"}]
    spec = _ab().replace(traffic=traffic)
    with pytest.raises(InvalidInputError, match="cluster cannot read it"):
        spec.to_kserve()
    assert "s3://elsewhere/m" in spec.to_kserve(variant_uris={"challenger": "s3://elsewhere/m"})


@pytest.mark.parametrize(
    ("traffic", "reason"),
    [
        ({"sticky_header": "x-user-id"}, "picks at random"),
        (
            {"rules": [{"header": "x-tier", "values": ["gold"], "variant": "challenger"}]},
            "not its headers",
        ),
        ({"shadow": "challenger", "split": {"primary": 100}}, "no mirroring"),
        ({"fallback": "challenger"}, "no fallback step"),
    ],
)
def test_what_kserve_cannot_route_is_refused_with_the_reason(
    traffic: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        _ab(**traffic).to_kserve()


def test_a_splitter_must_add_up_to_100() -> None:
    splitter = {"routerType": "Splitter", "steps": [{"serviceName": "a", "weight": 60}]}
    graph: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "g"},
        "spec": {"nodes": {"root": splitter}},
    }
    with pytest.raises(InvalidInputError, match="add up to 100, not 60"):
        validate_manifest(graph)
    graph["spec"]["nodes"] = {"start": {"routerType": "Sequence", "steps": []}}
    with pytest.raises(InvalidInputError, match="named 'root'"):
        validate_manifest(graph)
