"""The component library as the editor's palette shows it, looked up by name.

Built-in components, entry points, then notebook registrations, in that order.

The built-in components (`pipelines.library`) import `component`, so they are loaded here, above
both, on first use rather than with `import nstarx_jupyter.pipelines`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from typing import Any

from nstarx_jupyter.errors import NotFoundError
from nstarx_jupyter.pipelines.component import (
    ENTRY_POINT_GROUP,
    Component,
    note_entry_point,
    register_component,
    registered,
)

__all__ = ["component_class", "components", "load_entry_points"]

log = logging.getLogger(__name__)

_BUILTINS_LOADED = False


def components() -> dict[str, type[Component[Any]]]:
    """The whole library: built-in components, entry points, then notebook registrations."""
    _load_builtins()
    return registered()


def component_class(name: str) -> type[Component[Any]]:
    """The component registered under `name`."""
    library = components()
    try:
        return library[name]
    except KeyError:
        raise NotFoundError(
            f"unknown component '{name}': not built in, not installed with an entry point "
            f"({ENTRY_POINT_GROUP}); a component defined in a notebook is shipped with its "
            "pipeline by Pipeline.deploy() (the server's owner only)"
        ) from None


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    importlib.import_module("nstarx_jupyter.pipelines.library")
    load_entry_points()


def load_entry_points() -> list[str]:
    """Register the components other packages declare (group `nstarx_jupyter.components`).

    Returns the names registered; a plug-in that fails to load is logged and skipped, so it
    cannot take the library down with it.
    """
    names = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
            note_entry_point(cls)
            if registered().get(getattr(cls, "name", None) or "") is not cls:
                register_component(cls)
            names.append(cls.name)
        except Exception:
            log.exception("component entry point %s failed to load", entry.value)
    return names
