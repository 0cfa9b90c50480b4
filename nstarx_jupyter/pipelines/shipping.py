"""Custom components shipped with a pipeline: a notebook's classes, as code the server runs.

A component registered in a notebook (`register_component`) exists only in that kernel; the
server knows the built-in library and the entry points of the packages installed where it runs.
`Pipeline.deploy()` ships the others with the pipeline: each class is serialised by value with
cloudpickle (its methods and the helpers they use; modules it imports are imported by name on
the server) and described by its SHA-256 and, where Python can find it, its source.

Loading such a payload runs its code, so the server takes it only under the trust rule of model
files: the admin's credentials and an explicit `trusted: true`, audited with who sent it and
the digests. A key with `manage` scope is refused; it packages the component instead (an entry
point in `nstarx_jupyter.components`, installed where the server runs).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import linecache
import pickle
import sys
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import ConflictError, InvalidInputError
from nstarx_jupyter.pipelines.component import (
    ENTRY_POINT_GROUP,
    Component,
    is_packaged,
    register_component,
)
from nstarx_jupyter.pipelines.palette import components

if TYPE_CHECKING:
    from nstarx_jupyter.pipelines.spec import PipelineSpec

__all__ = ["HOW_TO_PACKAGE", "custom_components", "pack_components", "unpack_components"]

HOW_TO_PACKAGE = (
    "package the component instead: declare it as an entry point in the group "
    f"'{ENTRY_POINT_GROUP}' of a package installed where the server runs"
)
"""What to do instead of shipping code (said whenever shipping is refused)."""


def custom_components(spec: PipelineSpec) -> list[type[Component[Any]]]:
    """The classes `spec` uses that are neither built in nor from an installed entry point."""
    library = components()
    found: dict[str, type[Component[Any]]] = {}
    for node in spec.nodes:
        cls = library.get(node.component)
        if cls is not None and not is_packaged(cls):
            found[cls.name] = cls
    return list(found.values())


def pack_components(classes: list[type[Component[Any]]]) -> list[dict[str, Any]]:
    """Each class as `{name, qualname, sha256, pickle, source}` for the control API.

    Raises:
        InvalidInputError: a class cannot be serialised (it holds a lock, a file, a socket...).
    """
    import cloudpickle  # type: ignore[import-untyped]

    packed = []
    for cls in classes:
        module = sys.modules.get(cls.__module__)
        by_value = module is not None and cls.__module__ != "__main__"
        if by_value:  # a notebook's own module file is not importable where the server runs
            cloudpickle.register_pickle_by_value(module)
        try:
            data = cloudpickle.dumps(cls)
        except Exception as exc:
            raise InvalidInputError(
                f"component '{cls.name}' cannot be shipped with the pipeline ({exc}); "
                f"{HOW_TO_PACKAGE}"
            ) from exc
        finally:
            if by_value:
                cloudpickle.unregister_pickle_by_value(module)
        digest = hashlib.sha256(data).hexdigest()
        packed.append({"name": cls.name, "qualname": f"{cls.__module__}.{cls.__qualname__}",
                       "sha256": digest, "pickle": base64.b64encode(data).decode(),
                       "source": _source(cls)})  # fmt: skip
    return packed


def unpack_components(packed: Any) -> list[type[Component[Any]]]:
    """Load and register shipped classes (this runs their code: the caller checked trust).

    A shipped class replaces an earlier shipped one of its name, never a built-in or packaged
    component.

    Raises:
        InvalidInputError: the payload is malformed, altered (digest), or not a component.
        ConflictError: a built-in or packaged component has the name.
    """
    import cloudpickle  # noqa: F401 - classes pickled by value need it to rebuild

    entries = _entries(packed)
    library = components()
    loaded = []
    for entry, data in entries:
        known = library.get(entry["name"])
        if known is not None and is_packaged(known):
            raise ConflictError(
                f"components[{entry['name']}]: a built-in or installed component has this name; "
                "rename the notebook's component"
            )
        cls = pickle.loads(data)
        if not (isinstance(cls, type) and issubclass(cls, Component)):
            raise InvalidInputError(f"components[{entry['name']}] is not a Component subclass")
        if cls.name != entry["name"]:
            raise InvalidInputError(f"components[{entry['name']}] holds component '{cls.name}'")
        loaded.append(cls)
    for cls in loaded:
        register_component(cls, replace=True)
    return loaded


def _entries(packed: Any) -> list[tuple[dict[str, Any], bytes]]:
    """Check the payload's shape and digests before anything is unpickled."""
    if not isinstance(packed, list):
        raise InvalidInputError("components: a list of packed components")
    entries = []
    for i, entry in enumerate(packed):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("pickle"), str)
                and isinstance(entry.get("sha256"), str)):  # fmt: skip
            raise InvalidInputError(f"components[{i}]: needs name, pickle and sha256")
        try:
            data = base64.b64decode(entry["pickle"], validate=True)
        except ValueError:
            raise InvalidInputError(f"components[{i}].pickle: not base64") from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise InvalidInputError(f"components[{i}]: the payload does not match its sha256")
        entries.append((entry, data))
    return entries


def _source(cls: type) -> str:
    """The class's source where Python can find it (a notebook cell's too), else ''."""
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        pass
    for value in vars(cls).values():  # a cell's class: its methods know the cell's file
        code = getattr(value, "__code__", None)
        if code is not None:
            lines = linecache.getlines(code.co_filename)
            start = next((i for i, line in enumerate(lines)
                          if line.lstrip().startswith(f"class {cls.__name__}")), None)  # fmt: skip
            if start is not None:
                return "".join(inspect.getblock(lines[start:]))
    return ""
