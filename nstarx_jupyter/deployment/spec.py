"""`DeploymentSpec`: one deployment, field for field a KServe InferenceService predictor.

Its fields and checks are `SpecFields` (`spec_fields.py`), below `deployment.kserve`, which
renders them; this module adds the round trip: `DeploymentSpec.to_kserve` renders the manifests
and `from_kserve` reads the InferenceService a user would `kubectl apply`.
"""

from __future__ import annotations

import json
from typing import Any

from nstarx_jupyter.deployment.kserve import (
    AUTH_ANNOTATION,
    DEFAULT_IMAGE,
    LEGACY_FORMATS,
    MODE_ANNOTATION,
    OPTIONS_ANNOTATION,
    OUTPUT_NAMES_ANNOTATION,
    SINKS_ANNOTATION,
    to_manifests,
    to_yaml,
    validate_manifest,
)
from nstarx_jupyter.deployment.spec_fields import (
    NAME,
    PRIMARY,
    Batching,
    DeploymentMode,
    HeaderRule,
    Resources,
    SpecFields,
    Traffic,
    Variant,
)
from nstarx_jupyter.errors import InvalidInputError

__all__ = ["NAME", "PRIMARY", "Batching", "DeploymentMode", "DeploymentSpec", "HeaderRule",
           "Resources", "Traffic", "Variant", "from_kserve"]  # fmt: skip


class DeploymentSpec(SpecFields):
    """A model deployment: what `deploy()` builds, `nstarx apply -f` reads, and KServe runs.

    Every field maps onto one InferenceService field (`to_kserve` in `deployment.kserve`), except
    `options`, which only the nstarx runtime reads (feature names, trusted skops types...).
    """

    def to_kserve(
        self,
        *,
        storage_uri: str | None = None,
        image: str | None = None,
        variant_uris: dict[str, str] | None = None,
    ) -> str:
        """The KServe YAML (ServingRuntime when needed, then the InferenceService), validated.

        `storage_uri` overrides where the cluster fetches the model (a local path or a registry
        on this machine is out of the cluster's reach); `variant_uris` does the same for the
        variants of a traffic split, which becomes an InferenceGraph with a Splitter.
        """
        docs = to_manifests(self, storage_uri=storage_uri, variant_uris=variant_uris,
                            image=image or DEFAULT_IMAGE)  # fmt: skip
        return to_yaml(docs)


def from_kserve(doc: Any) -> DeploymentSpec:
    """Read an InferenceService (the dict of a YAML file) into a `DeploymentSpec`.

    Scheduling fields (node selectors, tolerations, autoscaler metrics...) are accepted and left
    to the cluster; parts the local server cannot run (transformers, explainers, custom
    containers) are refused by name.

    Raises:
        InvalidInputError: not a valid InferenceService, or one with parts nstarx cannot run.
    """
    validate_manifest(doc)
    if doc["kind"] != "InferenceService":
        raise InvalidInputError(f"kind: expected InferenceService, got {doc['kind']}")
    spec = doc["spec"]
    for part in ("transformer", "explainer"):
        if part in spec:
            raise InvalidInputError(f"spec.{part}: not supported by nstarx yet")
    predictor = spec["predictor"]
    if predictor.get("containers"):
        raise InvalidInputError("spec.predictor.containers: custom containers cannot run here")
    if "model" in predictor:
        model = predictor["model"]
        fmt = model["modelFormat"]["name"]
        fmt_version = model["modelFormat"].get("version")
    else:
        fmt = next(key for key in LEGACY_FORMATS if key in predictor)
        model = predictor[fmt]
        fmt_version = None
    meta = doc["metadata"]
    annotations = dict(meta.get("annotations", {}))
    mode = annotations.pop(MODE_ANNOTATION, "Standard")
    options = json.loads(annotations.pop(OPTIONS_ANNOTATION, "{}"))
    output_names = json.loads(annotations.pop(OUTPUT_NAMES_ANNOTATION, "{}"))
    auth = str(annotations.pop(AUTH_ANNOTATION, "false")).lower() == "true"
    sinks = _read_sinks(predictor, annotations.pop(SINKS_ANNOTATION, "[]"))
    batcher = predictor.get("batcher")
    fields: dict[str, Any] = {
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "storage_uri": model.get("storageUri"),
        "model_format": fmt,
        "model_format_version": fmt_version,
        "runtime": model.get("runtime"),
        "protocol_version": model.get("protocolVersion", "v1") if "model" in predictor else "v1",
        "deployment_mode": {"RawDeployment": "Standard", "Serverless": "Knative"}.get(mode, mode),
        "min_replicas": predictor.get("minReplicas", 1),
        "max_replicas": predictor.get("maxReplicas", 0),
        "container_concurrency": predictor.get("containerConcurrency"),
        "timeout_s": predictor.get("timeout"),
        "canary_traffic_percent": predictor.get("canaryTrafficPercent"),
        "labels": dict(meta.get("labels", {})),
        "annotations": annotations,
        "options": options,
        "output_names": output_names,
        "auth": auth,
        "sinks": sinks,
    }
    if batcher is not None:
        fields["batching"] = {
            "max_batch_size": batcher.get("maxBatchSize", 32),
            "max_latency_ms": batcher.get("maxLatency", 5),
            "timeout_s": batcher.get("timeout"),
        }
    if model.get("resources"):
        resources = model["resources"]
        fields["resources"] = {
            key: resources[key] for key in ("requests", "limits") if key in resources
        }
    if fields["protocol_version"] not in ("v1", "v2"):
        fields["protocol_version"] = "v2"  # grpc-v2 and friends: the local server speaks all
    return DeploymentSpec.build(**fields)


def _read_sinks(predictor: dict[str, Any], annotation: str) -> list[Any]:
    """KServe's `logger` as a CloudEvents webhook sink, then the annotation's sinks."""
    try:
        kept = json.loads(annotation)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"metadata.annotations.{SINKS_ANNOTATION}: {exc}") from None
    if not isinstance(kept, list):
        raise InvalidInputError(f"metadata.annotations.{SINKS_ANNOTATION}: a JSON list of sinks")
    logger = predictor.get("logger")
    if logger is None:
        return kept
    if not logger.get("url"):
        raise InvalidInputError(
            "spec.predictor.logger.url: the local server sends the logger's events to a URL "
            "(KServe's default broker is in the cluster); give one"
        )
    mode = logger.get("mode", "all")
    if mode not in ("all", "request", "response"):
        raise InvalidInputError(f"spec.predictor.logger.mode: '{mode}' is not all, request "
                                "or response")  # fmt: skip
    sink = {"kind": "webhook", "format": "cloudevents", "url": logger["url"], "mode": mode}
    return [sink, *kept]
