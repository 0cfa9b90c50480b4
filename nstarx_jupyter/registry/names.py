"""Model names and registry URIs (`models:/NAME/VERSION`, `models:/NAME@ALIAS`): their one check."""

from __future__ import annotations

import re

from nstarx_jupyter.errors import InvalidInputError

__all__ = ["MODEL_NAME", "check_name", "parse_model_uri"]

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
"""Model names, in the registry and on the server alike: they appear in URLs and file names."""


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """Split `models:/name/3` or `models:/name@alias` into (name, version, alias).

    Raises:
        InvalidInputError: any other form (stages such as `models:/name/Production` included).
    """
    match = _URI.match(uri)
    if match is None:
        raise InvalidInputError(
            f"'{uri}' is not a registry URI; use models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    return match["name"], match["version"], match["alias"]


def check_name(name: str) -> None:
    """Refuse a name that cannot be a model's (`InvalidInputError`)."""
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise InvalidInputError(
            f"model name {name!r}: use letters, digits, '_', '.', '-' (128 at most)"
        )
