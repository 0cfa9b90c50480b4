"""Import an optional framework on first use, or say exactly which extra installs it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from nstarx_jupyter.errors import MissingExtraError

if TYPE_CHECKING:
    from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise `MissingExtraError` carrying the `pip install` line."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the framework is there but one of its own dependencies is broken
        raise MissingExtraError(module.split(".")[0], extra) from exc
