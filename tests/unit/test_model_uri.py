"""`ModelUri.parse`: each spelling of a model, and each malformed one with its message."""

from __future__ import annotations

from pathlib import Path

import pytest

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.model_uri import (
    ModelUri,
    explained_deployment,
    is_fetchable,
    is_registry_uri,
    registry_uri,
)
from nstarx_jupyter.registry import parse_model_uri


def test_registry_version_and_alias() -> None:
    version = ModelUri.parse("models:/fraud/3")
    assert (version.kind, version.name, version.version, version.alias) == (
        "registry",
        "fraud",
        "3",
        None,
    )
    alias = ModelUri.parse("models:/fraud.v2@champion-1")
    assert (alias.kind, alias.name, alias.version, alias.alias) == (
        "registry",
        "fraud.v2",
        None,
        "champion-1",
    )
    assert alias.pinned("7") == "models:/fraud.v2/7"
    assert version.is_registry
    assert not version.is_local
    assert not version.is_fetchable


def test_deployment() -> None:
    found = ModelUri.parse("deployment:fraud-live")
    assert (found.kind, found.name, found.scheme) == ("deployment", "fraud-live", "deployment")
    assert found.is_deployment
    assert not found.is_registry


def test_file_url_is_percent_decoded_and_a_plain_path_is_not() -> None:
    url = ModelUri.parse("file:///srv/my%20models/iris.joblib")
    assert (url.kind, url.path, url.scheme) == ("file", "/srv/my models/iris.joblib", "file")
    assert url.is_local
    assert url.is_file_url
    plain = ModelUri.parse("models/my%20iris")
    assert (plain.kind, plain.path, plain.scheme) == ("file", "models/my%20iris", "")
    assert plain.is_local
    assert not plain.is_file_url
    assert ModelUri.parse("~/iris.joblib").local_path() == Path.home() / "iris.joblib"


@pytest.mark.parametrize(
    "text",
    [
        "iris.joblib",
        "/srv/iris",
        "models/iris/1",
        "models:iris/1",
        "C:\\models\\iris.onnx",
        "deployment-notes/iris",
    ],
)
def test_anything_without_a_prefix_or_a_scheme_is_a_path(text: str) -> None:
    found = ModelUri.parse(text)
    assert (found.kind, found.path, found.text) == ("file", text, text)


@pytest.mark.parametrize(
    ("text", "scheme", "fetchable"),
    [
        ("s3://bucket/iris/3", "s3", True),
        ("gs://b/m", "gs", True),
        ("pvc://claim/m", "pvc", True),
        ("oci://registry/image:tag", "oci", True),
        ("https://example.com/m.joblib", "https", True),
        ("hf://org/model", "hf", True),
        ("ftp://host/m", "ftp", False),
        ("S3://b/m", "S3", False),
    ],
)
def test_remote_storage(text: str, scheme: str, fetchable: bool) -> None:
    found = ModelUri.parse(text)
    assert (found.kind, found.scheme, found.is_fetchable) == ("remote", scheme, fetchable)
    assert not found.is_local
    assert is_fetchable(text) is fetchable


@pytest.mark.parametrize(
    "text", ["models:/iris/1", "deployment:iris", "/srv/iris", "file:///x", "s3://", ""]
)
def test_what_a_cluster_cannot_fetch(text: str) -> None:
    assert not is_fetchable(text)  # a malformed URI included: never fetchable, never raises


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models:/fraud/Production",
            r"^'models:/fraud/Production' is not a registry URI; use "
            r"models:/NAME/VERSION or models:/NAME@ALIAS$",
        ),
        ("models:/fraud/latest", "'models:/fraud/latest' is not a registry URI"),
        ("models:/fraud", "'models:/fraud' is not a registry URI"),
        ("models:/", "'models:/' is not a registry URI"),
        ("models:/fraud/3/extra", "'models:/fraud/3/extra' is not a registry URI"),
        ("models:/fraud@", "'models:/fraud@' is not a registry URI"),
        ("models:/fraud@champ ion", "'models:/fraud@champ ion' is not a registry URI"),
        ("deployment:", "'deployment:' is not a deployment URI; use deployment:NAME"),
        ("deployment:Fraud_V2", "'deployment:Fraud_V2' is not a deployment URI"),
        ("deployment:fraud-", "'deployment:fraud-' is not a deployment URI"),
        ("deployment:" + "a" * 64, "is not a deployment URI.*63 at most"),
        ("file://", r"^'file://' names no file: use file:///PATH$"),
        ("s3://", r"^'s3://' names nothing after s3://$"),
        ("1x://bucket/m", r"^'1x://bucket/m': '1x' is not a URI scheme$"),
        ("/srv/a://b", r"'/srv/a' is not a URI scheme"),
        ("", r"^'' names no model$"),
        ("   ", r"^'   ' names no model$"),
    ],
)
def test_a_malformed_uri_is_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ModelUri.parse(text)


def test_local_path_refuses_what_is_not_local() -> None:
    with pytest.raises(InvalidInputError, match="'s3://b/m' is not a file or folder on this"):
        ModelUri.parse("s3://b/m").local_path()


def test_the_registry_tuple_reads_the_same_parser() -> None:
    assert parse_model_uri("models:/iris@champion") == ("iris", None, "champion")
    assert is_registry_uri("models:/anything")
    assert not is_registry_uri("deployment:iris")
    for other in ("deployment:iris", "/srv/iris", "s3://b/iris"):
        with pytest.raises(InvalidInputError, match=f"'{other}' is not a registry URI"):
            parse_model_uri(other)


def test_a_built_registry_uri_parses_back() -> None:
    built = registry_uri("fraud", 3)
    assert built == "models:/fraud/3"
    assert (ModelUri.parse(built).name, ModelUri.parse(built).version) == ("fraud", "3")


def test_only_a_deployment_is_explained() -> None:
    assert explained_deployment("deployment:fraud") == "fraud"
    for other in ("models:/fraud/1", "models/model.joblib", "s3://bucket/fraud"):
        with pytest.raises(InvalidInputError, match="deployments are explained"):
            explained_deployment(other)
