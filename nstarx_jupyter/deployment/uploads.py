"""Upload a model folder to the object store a KServe cluster reads (`s3://` and S3-compatible).

A fitted model deployed to KServe is registered in MLflow (the catalog) and its model folder
(MLmodel and artifacts, what `nstarx serve` loads) is copied to `MODEL_STORE/NAME/VERSION/`;
the InferenceService's `storageUri` names that prefix, which KServe's storage initializer
downloads into the pod. A registry version whose artifacts MLflow keeps on this machine is
copied the same way (`artifacts.py`). The client is MinIO's (`minio`, the `kserve` extra): it
speaks S3 to AWS, MinIO, Ceph, R2 or any S3-compatible server, and (unlike boto3, whose
botocore pins `python-dateutil<3`) installs next to the `kubernetes` client.

Where to: `NSTARX_MODEL_STORE` (`s3://bucket/prefix`), or `deploy(..., model_store=...)`.
How: the variables KServe's S3 secrets and the AWS SDKs use: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), `AWS_DEFAULT_REGION`, and for a server other
than AWS `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` / `S3_ENDPOINT` (`S3_USE_HTTPS=0` for
plain http when the endpoint has no scheme).

Nothing is applied until every file is uploaded, so a failed upload leaves no InferenceService
reading half a model; the prefix is written under the registry's version number, so an upload
made again (after a failure) replaces the same files.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nstarx_jupyter.errors import InvalidInputError, UnavailableError, require

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["STORE_VARIABLE", "model_store", "upload_folder"]

STORE_VARIABLE = "NSTARX_MODEL_STORE"
"""The environment variable naming the default store (`s3://bucket/prefix`)."""
_UPLOADABLE = ("s3://",)
_CONNECT_S, _READ_S = 10.0, 120.0
"""Per request: a store that does not answer fails the deploy instead of hanging it."""


def model_store(given: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The store a fitted model is uploaded to: `given`, else `$NSTARX_MODEL_STORE`, else none.

    Raises:
        InvalidInputError: the store is not one this machine can upload to (the message says
            what to do for `gs://`, `pvc://` and `oci://`).
    """
    store = given or (environ if environ is not None else os.environ).get(STORE_VARIABLE) or None
    if store is None:
        return None
    if not store.startswith(_UPLOADABLE):
        raise InvalidInputError(
            f"model store '{store}': nstarx uploads to s3:// (and S3-compatible servers) only; "
            "for gs://, pvc:// or oci:// copy the model there yourself and pass storage_uri="
        )
    bucket, _ = _split(store)
    if not bucket:
        raise InvalidInputError(f"model store '{store}' names no bucket (s3://BUCKET/prefix)")
    return store.rstrip("/")


def upload_folder(folder: Path, destination: str, environ: Mapping[str, str] | None = None) -> str:
    """Copy every file under `folder` to `destination` (`s3://bucket/prefix`); returns it.

    Raises:
        InvalidInputError: the bucket does not exist, or the credentials were refused.
        UnavailableError: the object store could not be reached.
    """
    env = environ if environ is not None else os.environ
    bucket, prefix = _split(destination)
    client = _client(env)
    errors = require("minio.error", "kserve")
    import urllib3  # minio's own HTTP client: installed with it

    files = sorted(path for path in folder.rglob("*") if path.is_file())
    try:
        if not client.bucket_exists(bucket):
            raise InvalidInputError(
                f"{destination}: the bucket '{bucket}' does not exist at {_where(env)}; create it "
                f"or set {STORE_VARIABLE} to one that does"
            )
        for path in files:
            key = f"{prefix}/{path.relative_to(folder).as_posix()}".lstrip("/")
            client.fput_object(bucket, key, str(path))
    except errors.S3Error as exc:
        if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise InvalidInputError(
                f"{destination}: the object store refused the upload ({exc.code}: {exc.message}); "
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            ) from exc
        raise UnavailableError(f"{destination}: upload failed: {exc.code}: {exc.message}") from exc
    except (OSError, errors.MinioException, urllib3.exceptions.HTTPError) as exc:  # refused, DNS
        raise UnavailableError(
            f"{destination}: cannot reach the object store at {_where(env)}: {exc}"
        ) from exc
    return destination


def _split(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.strip("/")


def _endpoint(env: Mapping[str, str]) -> str | None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT"):
        if env.get(name):
            return env[name]
    return None


def _where(env: Mapping[str, str]) -> str:
    return _endpoint(env) or "s3.amazonaws.com"


def _client(env: Mapping[str, str]) -> Any:
    minio = require("minio", "kserve")
    import urllib3

    endpoint = _endpoint(env)
    secure = True
    if endpoint is None:
        host = "s3.amazonaws.com"
    elif "://" in endpoint:
        parts = urlsplit(endpoint)
        host, secure = parts.netloc, parts.scheme == "https"
    else:  # KServe's form: a host:port, with S3_USE_HTTPS saying which
        host, secure = endpoint, env.get("S3_USE_HTTPS", "1") != "0"
    return minio.Minio(
        host,
        access_key=env.get("AWS_ACCESS_KEY_ID"),
        secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
        session_token=env.get("AWS_SESSION_TOKEN"),
        region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION"),
        secure=secure,
        http_client=urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=_CONNECT_S, read=_READ_S),
            maxsize=4,
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503)),
        ),
    )
