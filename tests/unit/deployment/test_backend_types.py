"""No `Any` crosses the control API: every public method of the backends is typed end to end.

The backends are the clients' one way into the control API (the notebook, the lab extension and
the CLI call only them): a method whose answer or parameter is `dict[str, Any]` (or `Any`)
would let an untyped answer through again. Each method's annotations are resolved
(`typing.get_type_hints`) and walked; an exception is listed below with its reason.
"""

from __future__ import annotations

import collections.abc
import inspect
import pathlib
import typing
from typing import Any

import pytest
from pydantic import JsonValue

from nstarx_jupyter.deployment import backend as backend_module
from nstarx_jupyter.deployment import spec as spec_module
from nstarx_jupyter.deployment.backend import Backend
from nstarx_jupyter.deployment.kserve_backend import KServeBackend
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.protocol import analysis, control

EXCEPTIONS = {
    ("KServeBackend", "__init__", "api_client"):
        "a `kubernetes.client.ApiClient`: an optional dependency without type information",
    ("KServeBackend", "apply_manifests", "docs"):
        "Kubernetes manifests, any kind of object: the API server validates them, not nstarx",
}  # fmt: skip
"""(class, method, parameter or `return`) -> why it may hold `Any`."""

NAMES = {
    **vars(analysis), **vars(control), **vars(backend_module), **vars(spec_module),
    "Iterator": collections.abc.Iterator, "Path": pathlib.Path,
}  # fmt: skip
"""What the backends' modules import only for the type checker, for `get_type_hints`."""


def _methods(cls: type[Any]) -> list[str]:
    """The public methods `cls` defines, and its own `__init__` (not a Protocol's)."""
    return sorted(name for name, member in vars(cls).items()
                  if inspect.isfunction(member) and member.__qualname__.startswith(cls.__name__)
                  and (not name.startswith("_") or name == "__init__"))  # fmt: skip


def _holds_any(hint: object, seen: frozenset[int] = frozenset()) -> bool:
    """Whether `hint` is `Any` or has it inside (`dict[str, Any]`, `list[Any] | None`).

    A type alias (`pydantic.JsonValue`) is walked through its value, once (it may recur).
    """
    if hint is Any:
        return True
    if id(hint) in seen:
        return False
    seen = seen | {id(hint)}
    value = getattr(hint, "__value__", None)
    if value is not None:
        return _holds_any(value, seen)
    return any(_holds_any(arg, seen) for arg in typing.get_args(hint))


CASES = [(cls, name) for cls in (Backend, LocalBackend, KServeBackend) for name in _methods(cls)]


@pytest.mark.parametrize(("cls", "name"), CASES, ids=[f"{c.__name__}.{n}" for c, n in CASES])
def test_no_public_method_of_a_backend_takes_or_answers_any(cls: type[Any], name: str) -> None:
    function = vars(cls)[name]
    hints = typing.get_type_hints(function, localns=NAMES)
    untyped = [param for param in inspect.signature(function).parameters
               if param not in ("self", "return") and param not in hints]  # fmt: skip
    assert not untyped, f"{cls.__name__}.{name}: {untyped} without an annotation"
    loose = [param for param, hint in hints.items()
             if _holds_any(hint) and (cls.__name__, name, param) not in EXCEPTIONS]  # fmt: skip
    assert not loose, f"{cls.__name__}.{name}: Any in {loose}: {[hints[p] for p in loose]}"


def test_the_exceptions_are_still_needed() -> None:
    for cls_name, name, param in EXCEPTIONS:
        cls = {"LocalBackend": LocalBackend, "KServeBackend": KServeBackend}[cls_name]
        hints = typing.get_type_hints(vars(cls)[name], localns=NAMES)
        assert _holds_any(hints[param]), f"{cls_name}.{name}({param}) is typed now: unlist it"


def test_the_walk_finds_any_where_it_hides() -> None:
    assert _holds_any(dict[str, Any])
    assert _holds_any(list[dict[str, Any]] | None)
    assert not _holds_any(dict[str, control.DriftView] | None)
    assert not _holds_any(dict[str, JsonValue])  # JSON, recursively: no Any in it
