"""Model names, and registry URIs (`models:/NAME/VERSION`, `models:/NAME@ALIAS`) as a tuple."""

from __future__ import annotations

import re

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.model_uri import REGISTRY_FORMS, ModelUri, is_registry_uri

__all__ = ["MODEL_NAME", "check_name", "parse_model_uri"]

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
"""Model names, in the registry and on the server alike: they appear in URLs and file names."""


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """Split `models:/name/3` or `models:/name@alias` into (name, version, alias).

    Raises:
        InvalidInputError: any other form (stages such as `models:/name/Production` included).
    """
    if not isinstance(uri, str) or not is_registry_uri(uri):
        raise InvalidInputError(f"'{uri}' is not a registry URI; use {REGISTRY_FORMS}")
    found = ModelUri.parse(uri)
    return found.name, found.version, found.alias


def check_name(name: str) -> None:
    """Refuse a name that cannot be a model's (`InvalidInputError`)."""
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise InvalidInputError(
            f"model name {name!r}: use letters, digits, '_', '.', '-' (128 at most)"
        )
