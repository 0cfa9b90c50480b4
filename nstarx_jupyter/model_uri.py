"""How a model is named: `ModelUri`, the one parser of every spelling a user may give.

- `models:/NAME/VERSION`, `models:/NAME@ALIAS`: a registry version (stages such as
  `models:/NAME/Production`, and `models:/NAME/latest`, are refused: a deployment names one
  version);
- `deployment:NAME`: a running deployment (a pipeline's model node calls it);
- `file:///PATH` or a plain path: a file or folder on this machine (a `file:` URL is
  percent-decoded, a plain path is taken as written);
- `SCHEME://...`: an artifact somewhere else; a cluster fetches the `REMOTE_SCHEMES` ones.

Every place that takes a model parses it here, then says which forms it accepts, so a spelling
means the same everywhere and a malformed one gets the same message (an `InvalidInputError` that
names the URI and what is wrong with it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from nstarx_jupyter.errors import InvalidInputError

__all__ = [
    "REGISTRY_FORMS",
    "REMOTE_SCHEMES",
    "ModelUri",
    "UriKind",
    "explained_deployment",
    "is_fetchable",
    "is_registry_uri",
    "registry_uri",
]

UriKind = Literal["registry", "deployment", "file", "remote"]
"""What a URI names: a registry version, a deployment, a local file or folder, remote storage."""

REMOTE_SCHEMES = ("s3", "gs", "pvc", "oci", "https", "http", "hdfs", "webhdfs", "hf", "azure")
"""The storage KServe's storage initializer (or a model car) fetches: what a cluster can read."""

REGISTRY_FORMS = "models:/NAME/VERSION or models:/NAME@ALIAS"
"""The registry spellings, as error messages name them."""

_REGISTRY = "models:/"
_DEPLOYMENT = "deployment:"
_FILE = "file://"
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
_DEPLOYMENT_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
"""A deployment's name: a DNS label, as `DeploymentSpec.name` (KServe's rule)."""
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


@dataclass(frozen=True, slots=True)
class ModelUri:
    """A parsed model reference; build it with `ModelUri.parse`."""

    text: str
    """The URI as it was given (what messages quote and what is stored)."""
    kind: UriKind
    name: str = ""
    """The registry model's or the deployment's name."""
    version: str | None = None
    """A registry version's number (None for an alias)."""
    alias: str | None = None
    """A registry alias (`champion` in `models:/fraud@champion`)."""
    path: str = ""
    """A local file's path: a `file:` URL's decoded path, or the plain path as written."""
    scheme: str = ""
    """`models`, `deployment`, `file`, a remote scheme as written (`s3`), or empty for a path."""

    @classmethod
    def parse(cls, text: str) -> ModelUri:
        """Read `text` as one of the module's forms.

        Raises:
            InvalidInputError: `text` is empty, or starts like a form but breaks its rules.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"{text!r} names no model")
        if text.startswith(_REGISTRY):
            return _registry(text)
        if text.startswith(_DEPLOYMENT):
            return _deployment(text)
        if text.startswith(_FILE):
            path = unquote(text.removeprefix(_FILE))
            if not path:
                raise InvalidInputError(f"'{text}' names no file: use file:///PATH")
            return cls(text, "file", path=path, scheme="file")
        scheme, sep, rest = text.partition("://")
        if sep:
            if not _SCHEME.match(scheme):
                raise InvalidInputError(f"'{text}': '{scheme}' is not a URI scheme")
            if not rest:
                raise InvalidInputError(f"'{text}' names nothing after {scheme}://")
            return cls(text, "remote", scheme=scheme)
        return cls(text, "file", path=text)

    @property
    def is_registry(self) -> bool:
        """A registry version or alias (`models:/...`)."""
        return self.kind == "registry"

    @property
    def is_deployment(self) -> bool:
        """A running deployment (`deployment:NAME`)."""
        return self.kind == "deployment"

    @property
    def is_local(self) -> bool:
        """A file or folder on this machine (`file://` or a plain path)."""
        return self.kind == "file"

    @property
    def is_file_url(self) -> bool:
        """A `file://` URL (a pipeline names its model files so: what KServe mounts)."""
        return self.kind == "file" and self.scheme == "file"

    @property
    def is_fetchable(self) -> bool:
        """Remote storage a cluster can fetch: a `REMOTE_SCHEMES` one, in lower case."""
        return self.kind == "remote" and self.scheme in REMOTE_SCHEMES

    def local_path(self) -> Path:
        """The file or folder a local URI names (`~` expanded).

        Raises:
            InvalidInputError: the URI is not a local one.
        """
        if not self.is_local:
            raise InvalidInputError(f"'{self.text}' is not a file or folder on this machine")
        return Path(self.path).expanduser()

    def pinned(self, version: str) -> str:
        """The registry URI of `version` of this URI's model (an alias pinned to its version)."""
        return registry_uri(self.name, version)


def is_registry_uri(text: str) -> bool:
    """Whether `text` is spelled as a registry URI (`models:/...`), well formed or not.

    For the places that route a registry URI one way and anything else another before parsing.
    """
    return text.startswith(_REGISTRY)


def registry_uri(name: str, version: str | int) -> str:
    """The registry URI of `version` of model `name` (`models:/NAME/VERSION`)."""
    return f"{_REGISTRY}{name}/{version}"


def explained_deployment(text: str) -> str:
    """The deployment `text` names for an explanation (`deployment:NAME`), or InvalidInputError.

    Explanations come from a deployment's server (its explainer and reference data), so a
    pipeline's explain step names one; a file or registry version is refused with the reason.
    """
    found = ModelUri.parse(text)
    if not found.is_deployment:
        raise InvalidInputError(f"'{text}' is not a deployment: deployments are explained")
    return found.name


def is_fetchable(text: str) -> bool:
    """Whether a cluster can fetch `text` (`ModelUri.is_fetchable`); False when malformed."""
    try:
        return ModelUri.parse(text).is_fetchable
    except InvalidInputError:
        return False


def _registry(text: str) -> ModelUri:
    match = _REGISTRY_URI.match(text)
    if match is None:
        raise InvalidInputError(f"'{text}' is not a registry URI; use {REGISTRY_FORMS}")
    return ModelUri(text, "registry", name=match["name"], version=match["version"],
                    alias=match["alias"], scheme="models")  # fmt: skip


def _deployment(text: str) -> ModelUri:
    name = text.removeprefix(_DEPLOYMENT)
    if len(name) > 63 or not _DEPLOYMENT_NAME.match(name):
        raise InvalidInputError(
            f"'{text}' is not a deployment URI; use deployment:NAME, where NAME is lowercase "
            "letters, digits and '-' (63 at most)"
        )
    return ModelUri(text, "deployment", name=name, scheme="deployment")
