"""Where a backend reads a model from: local files for the local server, remote storage for KServe.

The local server reads this machine's disk (a model file, a staged copy, the registry's store).
KServe pods cannot: they pull `s3://`, `gs://`, `pvc://`, `oci://` or `http(s)://` artifacts. A
registry version (a fitted model is registered first) whose artifacts are on this machine is
uploaded to the model store when one is set, under `STORE/NAME/VERSION/` (versions never change,
so deploying one again rewrites the same files); a model that would come from here otherwise is
refused before anything is applied.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.sources import storage_uri_of
from nstarx_jupyter.deployment.staging import stage_model
from nstarx_jupyter.deployment.uploads import STORE_VARIABLE, model_store, upload_folder
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.model_uri import ModelUri, is_fetchable
from nstarx_jupyter.registry import Registry
from nstarx_jupyter.registry.flavors import flavor_of

if TYPE_CHECKING:
    from nstarx_jupyter.deployment.backend import Target
    from nstarx_jupyter.registry import ModelVersion

__all__ = ["Source", "resolve_source"]

_HOW = (
    "KServe pods cannot read this machine's disk: name an s3://, gs://, pvc://, oci:// or "
    "http(s):// URI, or a registry version whose artifacts live there"
)
_SET_STORE = (
    "set a model store to upload it to (deploy(..., model_store='s3://BUCKET/prefix'), "
    f"`nstarx deploy --model-store s3://BUCKET/prefix`, or ${STORE_VARIABLE})"
)


@dataclass(frozen=True, slots=True)
class Source:
    """A model as a deployment will read it."""

    uri: str
    fitted: bool
    """A fitted model from this process (staged, or registered for a cluster)."""
    trusted: bool
    """Served as `trusted`: the owner named the file, or it was staged with joblib."""
    registered: ModelVersion | None = None
    """For a cluster: the registry version a fitted model became before it was deployed."""


def resolve_source(
    model_or_uri: Any,
    name: str,
    target: Target,
    *,
    version: str | int | None = None,
    storage_uri: str | None = None,
    register: dict[str, Any] | None = None,
    store: str | None = None,
) -> Source:
    """The URI `target` reads `model_or_uri` from; fitted models are staged (local) or registered.

    For a cluster a fitted model is registered, then read from `storage_uri` when given (where
    you put it), else uploaded to the model store (`store`, or `$NSTARX_MODEL_STORE`) under
    `NAME/VERSION`, else read from its registry artifact when that is remote. A registry
    version is read from `storage_uri`, else from its artifact when that is remote, else from
    its upload to the model store (the same `NAME/VERSION` prefix).

    Raises:
        InvalidInputError: on KServe, the model would come from this machine's disk (the
            message says how to name remote storage instead).
    """
    if target == "local":  # the server reads the model itself: `storage_uri` is KServe's
        if isinstance(model_or_uri, str | Path):
            return Source(storage_uri_of(model_or_uri, version), fitted=False, trusted=True)
        staged, trusted = stage_model(model_or_uri, name)
        return Source(str(staged), fitted=True, trusted=trusted)
    if storage_uri is not None:
        _check_remote(storage_uri, "storage_uri")
    if isinstance(model_or_uri, str | Path):
        return Source(storage_uri or _remote_uri(model_or_uri, version, store), fitted=False,
                      trusted=True)  # fmt: skip
    return _register_for_cluster(model_or_uri, name, storage_uri, register or {}, store)


def _remote_uri(source: str | Path, version: str | int | None, store: str | None) -> str:
    """A named model's URI as a cluster fetches it (a registry version: its remote artifact).

    A registry version whose artifacts are on this machine is uploaded to the model store.
    """
    text = str(source)
    named = ModelUri.parse(text)
    if isinstance(source, str) and named.is_fetchable:
        return text
    if named.is_file_url or (named.is_local and named.local_path().exists()):
        raise InvalidInputError(f"'{text}' is a file on this machine; {_HOW}")
    uri = storage_uri_of(source, version)  # models:/..., or a name with its version
    registry = Registry()
    found = registry.resolve(uri)  # an alias names a version: its number names the upload
    artifact = registry.artifact_uri(found.uri)
    if is_fetchable(artifact):
        return artifact
    bucket = model_store(store)  # only now: a store is not needed for a remote artifact
    if bucket is None:
        raise _on_this_machine(uri, artifact)
    return _upload(registry, found, bucket)


def _upload(registry: Registry, version: ModelVersion, bucket: str) -> str:
    """Copy a registry version's model folder to `bucket/NAME/VERSION`; its URI there."""
    with tempfile.TemporaryDirectory(prefix="nstarx-upload-") as tmp:
        folder = registry.download(version.name, version.version, Path(tmp) / "model",
                                   progress=False)  # fmt: skip
        return upload_folder(folder, f"{bucket}/{version.name}/{version.version}")


def _register_for_cluster(
    model: Any, name: str, storage_uri: str | None, register: dict[str, Any], store: str | None
) -> Source:
    """Register a fitted model; point the cluster at `storage_uri`, an upload, or its artifact."""
    flavor_of(model)  # refuses what the registry could not take, before MLflow starts
    bucket = model_store(store) if storage_uri is None else None  # a bad store: before MLflow
    registry = Registry()
    version = registry.register(model, name, **register)
    if bucket is not None:
        return Source(_upload(registry, version, bucket), fitted=True, trusted=False,
                      registered=version)  # fmt: skip
    uri = storage_uri or registry.artifact_uri(version.uri)
    if not is_fetchable(uri):
        raise _on_this_machine(f"the fitted model was registered as {version.uri}", uri)
    return Source(uri, fitted=True, trusted=False, registered=version)


def _on_this_machine(what: str, artifact: str) -> InvalidInputError:
    """The refusal of a registry version whose artifacts a cluster cannot fetch."""
    return InvalidInputError(
        f"{what}: its artifacts are at '{artifact}' on this machine, which KServe pods cannot "
        f"read: {_SET_STORE}, or upload it yourself and pass storage_uri='s3://...' (or gs://, "
        "pvc://, oci://), or set an MLflow artifact root on S3; nothing was applied"
    )


def _check_remote(uri: str, field: str) -> None:
    if not is_fetchable(uri):
        raise InvalidInputError(f"{field}: '{uri}' is not remote storage; {_HOW}")
