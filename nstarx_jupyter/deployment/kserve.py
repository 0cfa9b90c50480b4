"""A deployment spec as KServe manifests, validated like the API server and webhooks would.

`to_manifests` emits an InferenceService (plus the nstarx ServingRuntime when the deployment runs
on our server in the cluster, the default, so the product endpoint and the runtime behave as on the
laptop). Every manifest passes the CRD schemas shipped in `deployment/schemas/` and the webhook
rules those schemas cannot express. It renders `SpecFields` (`spec_fields.py`, below it);
`DeploymentSpec.to_kserve` and `from_kserve`, which reads the InferenceService a user would
`kubectl apply` (`spec.py`, above it), call it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from nstarx_jupyter import __version__
from nstarx_jupyter.deployment.spec_fields import NAME, PRIMARY, SpecFields
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.model_uri import is_fetchable, is_registry_uri
from nstarx_jupyter.pipelines.sinks import WebhookSink
from nstarx_jupyter.registry import Registry

__all__ = [
    "AUTH_ANNOTATION",
    "DEFAULT_IMAGE",
    "LEGACY_FORMATS",
    "MODE_ANNOTATION",
    "NSTARX_RUNTIME",
    "OPTIONS_ANNOTATION",
    "OUTPUT_NAMES_ANNOTATION",
    "SERVE_ARGS",
    "SINKS_ANNOTATION",
    "cluster_serving_runtime",
    "to_manifests",
    "to_yaml",
    "validate_manifest",
]

GROUP = "serving.kserve.io"
MODE_ANNOTATION = f"{GROUP}/deploymentMode"
OPTIONS_ANNOTATION = "nstarx.io/options"
SINKS_ANNOTATION = "nstarx.io/sinks"
OUTPUT_NAMES_ANNOTATION = "nstarx.io/output-names"
"""Sinks KServe's `logger` cannot express (files, batched webhooks), kept for the round trip."""
AUTH_ANNOTATION = "security.opendatahub.io/enable-auth"
"""Token auth in front of an InferenceService (Open Data Hub's KServe with Authorino)."""
NSTARX_RUNTIME = "nstarx"
"""The ServingRuntime that runs `nstarx serve` in the cluster."""
DEFAULT_IMAGE = f"ghcr.io/nstarx/nstarx-jupyter:{__version__}"
FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "tensorflow", "mlflow")
SERVE_ARGS = ["serve", "--model_name={{.Name}}", "--model_dir=/mnt/models",
              "--host=0.0.0.0", "--http_port=8080", "--grpc_port=8081", "--no-auth"]  # fmt: skip
"""The runtime container's arguments (its entrypoint is `nstarx`), in KServe's model-server
contract: the InferenceService's name, the folder KServe's storage initializer fills from
`storageUri`, HTTP on 8080 and gRPC on 8081. In the pod the server listens beyond loopback
(KServe's ingress reaches it from outside) and checks no key: callers are authenticated in front
of it (the `enable-auth` annotation), as for KServe's own runtimes, and a key minted on the
laptop does not exist in the pod."""
_SCHEMAS = {
    "InferenceService": "inferenceservice-v1beta1.json",
    "ServingRuntime": "servingruntime-v1alpha1.json",
    "ClusterServingRuntime": "clusterservingruntime-v1alpha1.json",
    "InferenceGraph": "inferencegraph-v1alpha1.json",
}
LEGACY_FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "tensorflow", "triton",
                  "pmml", "paddle", "huggingface")  # fmt: skip
"""Framework-specific predictor keys of the old InferenceService form (`predictor: {sklearn:}`)."""


def to_manifests(
    spec: SpecFields,
    *,
    storage_uri: str | None = None,
    image: str = DEFAULT_IMAGE,
    variant_uris: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The InferenceService (and the ServingRuntime it needs), validated.

    `storage_uri` says where the cluster finds the model when the spec's own URI is local (a path
    or a registry on this machine): KServe pulls artifacts, it cannot read the laptop's disk.
    A traffic split between variants becomes an InferenceGraph named after the deployment, whose
    root Splitter sends each variant's share to its own InferenceService (`NAME-primary`,
    `NAME-VARIANT`; `variant_uris` gives their remote URIs). A canary stays KServe's own
    `canaryTrafficPercent` on the InferenceService.

    Raises:
        InvalidInputError: the spec cannot run on KServe as it is; the message names the field.
    """
    if spec.traffic is not None and (spec.traffic.split or _unsupported(spec)):
        return _graph(spec, storage_uri, image, variant_uris or {})
    uri = storage_uri or spec.storage_uri
    if uri is not None and is_registry_uri(uri):
        uri = Registry().artifact_uri(uri)  # the store's own URI: s3://... on a shared registry
    if uri is None:
        raise InvalidInputError("storage_uri: KServe needs to know where the model artifact is")
    if not is_fetchable(uri):
        raise InvalidInputError(
            f"storage_uri: '{uri}' is on this machine and a cluster cannot read it; upload the "
            "model (or the registry's artifact) and pass storage_uri='s3://...', 'gs://...' or "
            "'pvc://...'"
        )
    runtime = NSTARX_RUNTIME if spec.runtime is None else spec.runtime
    predictor = _predictor(spec, uri, runtime)
    logger, _ = _split_sinks(spec)
    if logger is not None:
        predictor["logger"] = logger  # KServe's agent sends the CloudEvents in the cluster
    isvc = {"apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService",
            "metadata": _metadata(spec), "spec": {"predictor": predictor}}  # fmt: skip
    docs = [isvc]
    if runtime == NSTARX_RUNTIME:
        docs.insert(0, _nstarx_runtime(spec.namespace, image))
    for doc in docs:
        validate_manifest(doc)
    return docs


_NO_KSERVE_FIELD = {
    "sticky_header": "a Splitter picks at random per request",
    "rules": "a Switch tests the request body, not its headers",
    "regions": "a Switch tests the request body, not the caller's region",
    "shadow": "an InferenceGraph has no mirroring step",
    "fallback": "an InferenceGraph has no fallback step",
}
"""Traffic fields an InferenceGraph cannot express, and why."""


def _unsupported(spec: SpecFields) -> list[str]:
    traffic = spec.traffic
    if traffic is None:
        return []
    return [name for name in _NO_KSERVE_FIELD if getattr(traffic, name)]


def _graph(
    spec: SpecFields, storage_uri: str | None, image: str, variant_uris: dict[str, str]
) -> list[dict[str, Any]]:
    """An InferenceGraph whose root Splitter spreads traffic over one InferenceService each."""
    traffic = spec.traffic
    assert traffic is not None  # noqa: S101 - the caller checked
    missing = _unsupported(spec)
    if missing:
        reasons = "; ".join(f"traffic.{name}: {_NO_KSERVE_FIELD[name]}" for name in missing)
        raise InvalidInputError(
            f"{reasons}. KServe cannot route this way, so this policy runs on nstarx's server "
            "only; leave these out (a plain split renders as a Splitter graph)"
        )
    if spec.canary_traffic_percent is not None:
        raise InvalidInputError(
            "canary_traffic_percent with a traffic split: KServe's canary shares one "
            "InferenceService between its revisions, a split is an InferenceGraph over one per "
            "variant; promote or roll back the canary before splitting, or give a variant the "
            "new model in the split (set_traffic) instead of a canary"
        )
    docs: list[dict[str, Any]] = []
    steps = []
    for variant, weight in traffic.split.items():
        if not weight:
            continue
        service = f"{spec.name}-{variant}"
        if variant == PRIMARY:
            part = spec.replace(name=service, traffic=None)
            uri = storage_uri
        else:
            chosen = traffic.variant(variant)
            part = spec.replace(
                name=service, storage_uri=chosen.storage_uri, runtime=chosen.runtime,
                model_format=chosen.model_format, options=chosen.options, traffic=None,
            )  # fmt: skip
            uri = variant_uris.get(variant)
        for doc in to_manifests(part, storage_uri=uri, image=image):
            if doc not in docs:  # the shared ServingRuntime once
                docs.append(doc)
        steps.append({"name": variant, "serviceName": service, "weight": weight})
    metadata: dict[str, Any] = {"name": spec.name}
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    if spec.auth:
        metadata["annotations"] = {AUTH_ANNOTATION: "true"}
    graph = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "InferenceGraph", "metadata": metadata,
             "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": steps}}}}  # fmt: skip
    validate_manifest(graph)
    return [*docs, graph]


def _metadata(spec: SpecFields) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": spec.name, "annotations": {
        **spec.annotations, MODE_ANNOTATION: spec.deployment_mode}}  # fmt: skip
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    if spec.labels:
        metadata["labels"] = dict(spec.labels)
    if spec.auth:
        metadata["annotations"][AUTH_ANNOTATION] = "true"
    if spec.options:
        metadata["annotations"][OPTIONS_ANNOTATION] = json.dumps(spec.options, sort_keys=True)
    if spec.output_names:
        metadata["annotations"][OUTPUT_NAMES_ANNOTATION] = json.dumps(spec.output_names)
    _, others = _split_sinks(spec)
    if others:
        metadata["annotations"][SINKS_ANNOTATION] = json.dumps(
            [
                {"kind": sink.kind, **sink.model_dump(mode="json", exclude_defaults=True)}
                for sink in others
            ],
            sort_keys=True,
        )
    return metadata


def _split_sinks(spec: SpecFields) -> tuple[dict[str, str] | None, list[Any]]:
    """KServe's `logger` (the first unnamed CloudEvents webhook) and the sinks it cannot hold.

    Raises:
        InvalidInputError: a sink with headers: they are secrets, and a manifest is not.
    """
    logger: dict[str, str] | None = None
    others = []
    for i, sink in enumerate(spec.sinks):
        if sink.kind == "webhook" and sink.headers:
            raise InvalidInputError(
                f"sinks[{i}].headers: secrets do not go into a manifest; on KServe, send the "
                "logger's events to a receiver inside the cluster (the logger sends no headers)"
            )
        expressible = isinstance(sink, WebhookSink) and sink.format == "cloudevents"
        if logger is None and isinstance(sink, WebhookSink) and expressible and not sink.name:
            logger = {"url": sink.url, "mode": sink.mode}
        else:
            others.append(sink)
    return logger, others


def to_yaml(docs: list[dict[str, Any]]) -> str:
    """Manifests as one multi-document YAML string, ready for `kubectl apply -f -`."""
    import yaml

    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)


def _predictor(spec: SpecFields, uri: str, runtime: str) -> dict[str, Any]:
    model_format: dict[str, Any] = {"name": spec.model_format}
    if spec.model_format_version:
        model_format["version"] = spec.model_format_version
    model: dict[str, Any] = {"modelFormat": model_format, "storageUri": uri,
                             "protocolVersion": spec.protocol_version}  # fmt: skip
    if runtime:
        model["runtime"] = runtime
    if spec.resources is not None:
        model["resources"] = spec.resources.model_dump(exclude_defaults=True)
    predictor: dict[str, Any] = {"model": model, "minReplicas": spec.min_replicas}
    if spec.max_replicas:
        predictor["maxReplicas"] = spec.max_replicas
    if spec.container_concurrency is not None:
        predictor["containerConcurrency"] = spec.container_concurrency
    if spec.timeout_s is not None:
        predictor["timeout"] = spec.timeout_s
    if spec.batching is not None:
        batcher = {"maxBatchSize": spec.batching.max_batch_size,
                   "maxLatency": spec.batching.max_latency_ms}  # fmt: skip
        if spec.batching.timeout_s is not None:
            batcher["timeout"] = spec.batching.timeout_s
        predictor["batcher"] = batcher
    if spec.canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = spec.canary_traffic_percent
    return predictor


def _nstarx_runtime(namespace: str | None, image: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": NSTARX_RUNTIME}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": metadata,
        "spec": {
            "supportedModelFormats": [{"name": name, "autoSelect": False} for name in FORMATS],
            "protocolVersions": ["v1", "v2", "grpc-v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image,
                    "args": SERVE_ARGS,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "512Mi"},
                        "limits": {"cpu": "1", "memory": "2Gi"},
                    },
                }
            ],
        },
    }


def cluster_serving_runtime(image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """The nstarx runtime for every namespace (deploy/kserve/clusterservingruntime.yaml), validated.

    The same container as the namespaced ServingRuntime `to_manifests` emits; install it once
    (`kubectl apply -f`) and InferenceServices name `runtime: nstarx` without shipping their own.
    """
    runtime = _nstarx_runtime(None, image)
    doc = {**runtime, "kind": "ClusterServingRuntime"}
    validate_manifest(doc)
    return doc


# -- validation --------------------------------------------------------------------------------


@functools.cache
def _validator(kind: str) -> Any:
    import jsonschema

    schema = json.loads((Path(__file__).parent / "schemas" / _SCHEMAS[kind]).read_text())
    return jsonschema.Draft7Validator(schema)


def validate_manifest(doc: Any) -> None:
    """Check a manifest against its CRD schema and KServe's webhook rules.

    Raises:
        InvalidInputError: the first problem, with the path of the field it is in.
    """
    if not isinstance(doc, dict):
        raise InvalidInputError("a manifest must be a mapping")
    kind = doc.get("kind")
    if kind not in _SCHEMAS:
        raise InvalidInputError(f"kind: '{kind}' is not one of {', '.join(_SCHEMAS)}")
    errors = sorted(_validator(kind).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise InvalidInputError(f"{kind} {where}: {first.message}")
    if kind == "InferenceService":
        _webhook_rules(doc)
    elif kind == "InferenceGraph":
        _graph_rules(doc)


def _webhook_rules(doc: dict[str, Any]) -> None:
    name = doc["metadata"].get("name", "")
    if name and (len(name) > 63 or not NAME.match(name)):
        raise InvalidInputError(
            f"metadata.name: '{name}' must match [a-z]([-a-z0-9]*[a-z0-9])? (KServe's rule)"
        )
    predictor = doc["spec"]["predictor"]
    implementations = [key for key in (*LEGACY_FORMATS, "model") if key in predictor]
    if predictor.get("containers"):
        implementations.append("containers")
    if len(implementations) != 1:
        raise InvalidInputError(
            "spec.predictor: exactly one predictor implementation is allowed, found "
            f"{', '.join(implementations) or 'none'}"
        )
    mode = doc["metadata"].get("annotations", {}).get(MODE_ANNOTATION, "Standard")
    if mode not in ("Standard", "Knative", "RawDeployment", "Serverless"):
        raise InvalidInputError(f"metadata.annotations.{MODE_ANNOTATION}: unknown mode '{mode}'")
    metric = predictor.get("scaleMetric")
    knative = mode in ("Knative", "Serverless")
    if metric is not None and knative and metric in ("cpu", "memory"):
        raise InvalidInputError(
            f"spec.predictor.scaleMetric: '{metric}' needs the HPA (Standard mode); Knative "
            "scales on concurrency or rps"
        )
    if predictor.get("minReplicas") == 0 and not knative:
        raise InvalidInputError(
            "spec.predictor.minReplicas: scaling to zero needs Knative mode "
            f"({MODE_ANNOTATION}: Knative)"
        )


def _graph_rules(doc: dict[str, Any]) -> None:
    """KServe's InferenceGraph webhook: a root node, one target per step, Splitter weights."""
    nodes = doc["spec"]["nodes"]
    if "root" not in nodes:
        raise InvalidInputError("spec.nodes: the entry node must be named 'root'")
    for node_name, node in nodes.items():
        steps = node.get("steps", [])
        names = [step["name"] for step in steps if "name" in step]
        if len(names) != len(set(names)):
            raise InvalidInputError(f"spec.nodes.{node_name}: step names must be unique")
        for i, step in enumerate(steps):
            targets = [key for key in ("serviceName", "serviceUrl", "nodeName") if step.get(key)]
            if len(targets) != 1:
                raise InvalidInputError(
                    f"spec.nodes.{node_name}.steps.{i}: exactly one of serviceName, serviceUrl, "
                    "nodeName"
                )
            if step.get("nodeName") and step["nodeName"] not in nodes:
                raise InvalidInputError(
                    f"spec.nodes.{node_name}.steps.{i}.nodeName: no node '{step['nodeName']}'"
                )
        if node["routerType"] == "Splitter":
            total = sum(int(step.get("weight", 0)) for step in steps)
            if total != 100:
                raise InvalidInputError(
                    f"spec.nodes.{node_name}: a Splitter's weights add up to 100, not {total}"
                )
