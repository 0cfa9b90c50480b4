"""Per-model serving settings with KServe's meanings, read from flags and settings files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.model_uri import is_registry_uri
from nstarx_jupyter.registry import Registry
from nstarx_jupyter.registry.names import MODEL_NAME, parse_model_uri
from nstarx_jupyter.runtimes.loader import runtime_class

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "SETTINGS_FILE",
    "ModelSettings",
    "file_settings",
    "parse_model_arg",
    "registry_models",
    "settings_from_repository",
]

SETTINGS_FILE = "model-settings.json"
"""Optional file beside a model artifact (MLServer's name) holding its `ModelSettings` fields."""


class ModelSettings(BaseModel):
    """How one model version is served; field names follow KServe's where KServe has one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Model name used in every URL."""
    version: str = "1"
    """Version reported in metadata and accepted in `/versions/{version}` URLs."""
    path: Path | None = None
    """Artifact file or folder; None for a registry model or a custom runtime that needs none."""
    storage_uri: str | None = None
    """KServe's `storageUri`: a registry version, `models:/NAME/VERSION` (`@ALIAS` is pinned to
    its version when the settings are made), downloaded when the model loads."""
    runtime: str | None = None
    """Built-in runtime name or a `Runtime` import path; inferred from the artifact when None."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Runtime options, e.g. `feature_names` for models fitted without them."""
    output_names: dict[str, str] = Field(default_factory=dict)
    """New names for the product endpoint's answer fields (`DeploymentSpec.output_names`)."""
    min_replicas: int = Field(default=1, ge=0, le=1)
    """0 unloads the model after `idle_timeout_s` without requests (KServe's scale to zero)."""
    idle_timeout_s: float = Field(default=60.0, gt=0)
    """Idle time before a `min_replicas=0` model is unloaded."""
    container_concurrency: int = Field(default=0, ge=0)
    """Requests predicted at once for this model; 0 means no limit (KServe's default)."""
    max_queue: int = Field(default=256, ge=0)
    """Requests allowed to wait for a concurrency slot; with `container_concurrency` 0, requests
    in flight at once. Beyond it the answer is 503 with `Retry-After`."""
    timeout_s: float | None = Field(default=None, gt=0)
    """Deadline for one request, queueing included (None: 60 s); at it the answer is 504, whether
    or not the model has returned."""
    max_batch_size: int | None = Field(default=None, ge=0)
    """Adaptive batching: rows per batch; 0 turns batching off. None (the default) lets the
    runtime decide: models whose rows are independent (`Runtime.rows_independent`) get no-wait
    batching of up to `AUTO_BATCH_ROWS` rows, which adds no latency; others are not batched."""
    max_latency_ms: float = Field(default=5.0, ge=0)
    """Adaptive batching: longest wait for a batch to fill; 0 never waits (a batch holds what
    arrived in the same event-loop turn)."""
    trusted: bool = True
    """Whether the artifact may be in a format that runs code on load (pickle, joblib,
    TorchScript, SavedModel). True for models named in code or on the command line (their
    owner's word); the control API sets it from the deployment's `trusted`, which only the admin
    may set. A `model-settings.json` cannot set it."""
    isolation: Literal["thread", "process"] = "thread"
    """Where `predict` runs: "thread", in the server (library models that are known to be fast
    on its event loop, the rest in threads); "process", in a worker process of the model's own,
    restarted when it dies, overruns its deadline or passes `max_rss_mb`."""
    max_rss_mb: int | None = Field(default=None, gt=0)
    """Process isolation: restart the worker when its resident memory passes this (Linux)."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not MODEL_NAME.match(value):
            raise ValueError("model names use letters, digits, '_', '.', '-' (128 at most)")
        return value

    @field_validator("storage_uri")
    @classmethod
    def _check_uri(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_model_uri(value)
            except InvalidInputError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ModelSettings:
        if self.path is not None and self.storage_uri is not None:
            raise ValueError("give a path or a storage_uri, not both")
        return self

    @classmethod
    def build(cls, **fields: Any) -> ModelSettings:
        """Validate `fields`, raising `InvalidInputError` that names the offending field."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "settings"
            raise InvalidInputError(f"model setting '{where}': {first['msg']}") from None


def registry_models(uris: Iterable[str | None]) -> list[str]:
    """The registry models named by the `models:/NAME/...` URIs among `uris`, once each.

    Raises:
        InvalidInputError: a `models:/` URI of another form.
    """
    names = [parse_model_uri(uri)[0] for uri in uris if uri and is_registry_uri(uri)]
    return list(dict.fromkeys(names))


def parse_model_arg(value: str, defaults: dict[str, Any] | None = None) -> ModelSettings:
    """Parse `NAME[:VERSION]=[RUNTIME:]PATH` from the command line.

    PATH may also be a registry URI (`models:/iris/3`, `models:/iris@champion`). RUNTIME is a
    built-in runtime name or a dotted import path of a `Runtime` subclass; PATH may be empty
    for a custom runtime that needs no artifact. A `model-settings.json` beside the artifact's
    folder (when PATH is a folder) supplies further fields.
    """
    name, sep, target = value.partition("=")
    if not sep or not name:
        raise InvalidInputError(f"--model expects NAME=PATH, got '{value}'")
    name, _, version = name.partition(":")
    runtime, path_text = _split_runtime(target)
    if is_registry_uri(path_text):
        return _registry_settings(name, version, runtime, path_text, defaults)
    path = Path(path_text).expanduser() if path_text else None
    fields: dict[str, Any] = {**(defaults or {}), **file_settings(path)}
    fields.update(name=name, path=path)
    if version:
        fields["version"] = version
    if runtime:
        fields["runtime"] = runtime
    settings = ModelSettings.build(**fields)
    # Typos are usage errors, reported before anything starts.
    if path is not None and not path.exists():
        raise InvalidInputError(f"model path {path} does not exist")
    if runtime:
        runtime_class(runtime)
    return settings


def _registry_settings(
    name: str, version: str, runtime: str | None, uri: str, defaults: dict[str, Any] | None
) -> ModelSettings:
    """Settings for a registry version; an alias is pinned to the version it names now."""
    found = Registry().resolve(uri)
    fields: dict[str, Any] = {**(defaults or {}), "name": name,
                              "storage_uri": found.uri,
                              "version": version or found.version}  # fmt: skip
    if runtime:
        runtime_class(runtime)
        fields["runtime"] = runtime
    return ModelSettings.build(**fields)


def settings_from_repository(
    root: Path, defaults: dict[str, Any] | None = None
) -> list[ModelSettings]:
    """Read a model repository: every sub-folder is a model named after the folder."""
    if not root.is_dir():
        raise InvalidInputError(f"model repository {root} is not a folder")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        fields = {**(defaults or {}), "name": folder.name, "path": folder, **file_settings(folder)}
        found.append(ModelSettings.build(**fields))
    return found


def _split_runtime(target: str) -> tuple[str | None, str]:
    if is_registry_uri(target):
        return None, target
    head, sep, rest = target.partition(":")
    # Only a runtime name or a dotted import path counts as a prefix, so plain paths stay paths.
    if sep and re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", head):
        return head, rest
    return None, target


def file_settings(path: Path | None) -> dict[str, Any]:
    """The fields of `path/model-settings.json` when `path` is a folder holding one."""
    if path is None or not path.is_dir():
        return {}
    file = path / SETTINGS_FILE
    if not file.is_file():
        return {}
    try:
        fields = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{file}: {exc}") from exc
    if not isinstance(fields, dict):
        raise InvalidInputError(f"{file}: expected a JSON object")
    fields.pop("name", None)
    fields.pop("path", None)
    fields.pop("trusted", None)  # a file does not vouch for itself
    return fields
