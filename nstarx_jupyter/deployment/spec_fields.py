"""A deployment spec's fields and their checks, below the KServe manifests rendered from them.

`SpecFields` is what `deployment.kserve` renders into an InferenceService; `DeploymentSpec`
(`deployment.spec`) is the same with its KServe round trip (`to_kserve`, `from_kserve`), so the
renderer reads the fields without importing the class that calls it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.sinks import Sink, sink_label

__all__ = ["NAME", "PRIMARY", "Batching", "DeploymentMode", "HeaderRule", "Resources",
           "SpecFields", "Traffic", "Variant"]  # fmt: skip

NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
"""KServe's rule for InferenceService names (a DNS-1123 label starting with a letter)."""
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")

DeploymentMode = Literal["Standard", "Knative"]
"""KServe's `serving.kserve.io/deploymentMode` (RawDeployment and Serverless are the old names)."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Batching(_Strict):
    """KServe's predictor `batcher`: a batch leaves when full or after `max_latency_ms`."""

    max_batch_size: int = Field(default=32, ge=1)
    max_latency_ms: int = Field(default=5, ge=1)
    """Whole milliseconds: KServe's `maxLatency` is an integer."""
    timeout_s: int | None = Field(default=None, ge=1)


class Resources(_Strict):
    """Kubernetes requests and limits (`cpu`, `memory`, `nvidia.com/gpu`): kept for the cluster."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, value: dict[str, str]) -> dict[str, str]:
        for key, amount in value.items():
            if not _QUANTITY.match(str(amount)):
                raise ValueError(f"{key}: '{amount}' is not a Kubernetes quantity (e.g. 500m, 1Gi)")
        return value


PRIMARY = "primary"
"""The variant name of a deployment's own model (its `storage_uri`) in `Traffic`."""


class Variant(_Strict):
    """Another model a deployment can send traffic to (an A/B arm, a shadow, a fallback...)."""

    name: str
    """A DNS label (it becomes an InferenceService name in a cluster); not `primary`."""
    storage_uri: str
    runtime: str | None = None
    model_format: str = "sklearn"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _label(cls, value: str) -> str:
        if value == PRIMARY or len(value) > 40 or not NAME.match(value):
            raise ValueError(
                f"'{value}' is not a variant name: lower-case letters, digits and '-', starting "
                f"with a letter (40 at most), and not '{PRIMARY}'"
            )
        return value


class HeaderRule(_Strict):
    """Requests whose `header` holds one of `values` go to `variant` (first matching rule wins)."""

    header: str
    values: list[str] = Field(min_length=1)
    variant: str

    @field_validator("header")
    @classmethod
    def _lower(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError(f"'{value}' is not an HTTP header name")
        return value.lower()


class Traffic(_Strict):
    """How requests to a deployment are spread over its variants.

    Order of decision for a request without an explicit version: header `rules`, then its region
    (the `region_header`, else the client's address looked up in `networks`) in `regions`, then
    the weighted `split` (sticky per caller when `sticky_header` is sent). The deployment's own
    model is the variant `primary`; during a canary its share is divided between the last
    rolled-out revision and the new one by `canary_traffic_percent`.
    """

    variants: list[Variant] = Field(default_factory=list)
    split: dict[str, int] = Field(default_factory=dict)
    """Percent per variant, summing to 100; empty sends everything to `primary`."""
    sticky_header: str | None = None
    """A header naming the caller (e.g. `X-User-Id`): one caller always sees one variant."""
    rules: list[HeaderRule] = Field(default_factory=list)
    regions: dict[str, str] = Field(default_factory=dict)
    """Region name to variant."""
    networks: dict[str, str] = Field(default_factory=dict)
    """Client network (CIDR) to region name, for callers that send no region header."""
    region_header: str = "x-region"
    shadow: str | None = None
    """Gets a copy of every routed request; its answers are compared, never returned."""
    fallback: str | None = None
    """Answers when the chosen variant fails, times out or is unavailable."""
    fallback_timeout_ms: int | None = Field(default=None, ge=1)
    """How long the chosen variant may take before the fallback answers instead."""

    @field_validator("sticky_header", "region_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError(f"'{value}' is not an HTTP header name")
        return value.lower() if value is not None else None

    @field_validator("networks")
    @classmethod
    def _cidrs(cls, value: dict[str, str]) -> dict[str, str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"'{cidr}' is not a network (e.g. 10.1.0.0/16)") from None
        return value

    @model_validator(mode="after")
    def _references(self) -> Traffic:
        known = {PRIMARY, *(variant.name for variant in self.variants)}
        if len(known) != len(self.variants) + 1:
            raise ValueError("variants: each name may appear once")
        used = [*self.split, *(rule.variant for rule in self.rules), *self.regions.values(),
                *filter(None, (self.shadow, self.fallback))]  # fmt: skip
        for name in used:
            if name not in known:
                raise ValueError(f"'{name}' is not a variant; known: {', '.join(sorted(known))}")
        if self.split:
            if any(weight < 0 for weight in self.split.values()):
                raise ValueError("split: percentages cannot be negative")
            if sum(self.split.values()) != 100:
                raise ValueError(
                    f"split: percentages add up to {sum(self.split.values())}, not 100"
                )
        for region in self.networks.values():
            if region not in self.regions:
                raise ValueError(f"networks: region '{region}' has no variant in regions")
        if self.shadow is not None and self.shadow == self.fallback:
            raise ValueError("shadow and fallback must be different variants")
        return self

    def variant(self, name: str) -> Variant:
        """The named variant (not `primary`)."""
        return next(variant for variant in self.variants if variant.name == name)


class SpecFields(_Strict):
    """A model deployment's fields (`DeploymentSpec` is the class to use: it adds `to_kserve`).

    Every field maps onto one InferenceService field (`to_manifests` in `deployment.kserve`),
    except `options`, which only the nstarx runtime reads (feature names, trusted skops types...).
    """

    name: str
    """The InferenceService name (a DNS-1123 label: lower case, digits, '-')."""
    namespace: str | None = None
    storage_uri: str | None = None
    """`models:/NAME/VERSION` from the registry, a local path (local backend only) or a remote
    URI (`s3://`, `gs://`, `pvc://`, `https://`) for the cluster."""
    model_format: str = "sklearn"
    """KServe's `modelFormat.name`: sklearn, xgboost, lightgbm, onnx, pytorch, tensorflow..."""
    model_format_version: str | None = None
    runtime: str | None = None
    """A ServingRuntime name in the cluster; locally, a built-in runtime or a `Runtime` import
    path (None: chosen from the model format or the artifact)."""
    protocol_version: Literal["v1", "v2"] = "v2"
    deployment_mode: DeploymentMode = "Standard"
    min_replicas: int = Field(default=1, ge=0)
    """0 scales to zero when idle (Knative mode in a cluster; idle unload locally)."""
    max_replicas: int = Field(default=1, ge=0)
    """0 leaves the maximum to the autoscaler's default (KServe's meaning)."""
    container_concurrency: int | None = Field(default=None, ge=0)
    timeout_s: int | None = Field(default=None, ge=1)
    batching: Batching | None = None
    resources: Resources | None = None
    canary_traffic_percent: int | None = Field(default=None, ge=0, le=100)
    """KServe's meaning: the share of the new revision while the last rolled-out one keeps the
    rest; None rolls the new revision out to all traffic."""
    traffic: Traffic | None = None
    """Other variants and how requests are spread over them (A/B, shadow, fallback, regions)."""
    auth: bool = True
    """Callers need an API key (`Authorization: Bearer KEY`), as every route of the local server
    does; False opens the deployment's inference and metadata to anyone, as KServe does. In a
    cluster this is the `security.opendatahub.io/enable-auth` annotation (Authorino)."""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    output_names: dict[str, str] = Field(default_factory=dict)
    """Renames the product endpoint's answer fields (`/predict`): `{"prediction": "sentiment",
    "confidence": "score"}`. Keys are the fields it answers (`prediction`, `confidence` (the top
    class probability, also called `probability` here), `probabilities`, or another output's
    name); V1, V2 and gRPC answers keep the model's own output names."""
    sinks: list[Sink] = Field(default_factory=list, max_length=8)
    """Where each answered request is sent besides the caller: webhooks and files
    (`serving.sinks`). KServe's `logger` is a `cloudevents` webhook here; other sinks run on
    nstarx's server only (kept in the `nstarx.io/sinks` annotation of a manifest)."""
    trusted: bool = False
    """The model's files may run code when they load (pickle, joblib, TorchScript, SavedModel):
    the server's owner vouches for them. Only the admin may set it; the local server alone reads
    it (it is not part of the KServe manifest)."""

    @field_validator("name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if len(value) > 63 or not NAME.match(value):
            raise ValueError(
                f"'{value}' is not a valid deployment name: use lower-case letters, digits and "
                "'-', starting with a letter and ending with a letter or digit (63 at most)"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _dns_namespace(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not _NAMESPACE.match(value)):
            raise ValueError(f"'{value}' is not a valid namespace")
        return value

    @field_validator("output_names")
    @classmethod
    def _renames(cls, value: dict[str, str]) -> dict[str, str]:
        for key, name in value.items():
            if not key or not isinstance(name, str) or not name.strip():
                raise ValueError(f"'{key}': give each answer field a non-empty new name")
        if len(set(value.values())) != len(value):
            raise ValueError("two answer fields cannot take the same name")
        keys = set(value)
        if {"confidence", "probability"} <= keys:
            raise ValueError("'probability' and 'confidence' name the same field: give one")
        return value

    @model_validator(mode="after")
    def _sink_names(self) -> Self:
        taken: set[str] = set()
        for i, sink in enumerate(self.sinks):
            label = sink_label(sink, i, taken)
            if label in taken:
                raise ValueError(f"sinks: the name '{label}' is used twice")
            taken.add(label)
        return self

    @model_validator(mode="after")
    def _replicas(self) -> Self:
        if self.max_replicas and self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        return self

    @classmethod
    def build(cls, **fields: Any) -> Self:
        """Validate `fields`; an invalid one raises `InvalidInputError` naming it."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise _named(exc) from None

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` applied and validated."""
        return self.build(**{**self.model_dump(), **changes})


def _named(exc: ValidationError) -> InvalidInputError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if not where:
        return InvalidInputError(f"deployment spec: {message}")
    return InvalidInputError(f"deployment spec field '{where}': {message}")
