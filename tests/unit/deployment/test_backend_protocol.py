"""Every backend implements the `Backend` protocol, method for method, signature for signature."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from nstarx_jupyter.deployment.backend import Backend
from nstarx_jupyter.deployment.kserve_backend import KServeBackend
from nstarx_jupyter.deployment.local import LocalBackend


def _backends() -> list[type[Any]]:
    """The implementations to check: the local one, and the KServe one."""
    return [LocalBackend, KServeBackend]


PROTOCOL_METHODS = sorted(
    name for name, member in vars(Backend).items()
    if inspect.isfunction(member) and not name.startswith("_")
)  # fmt: skip


def test_the_protocol_lists_what_the_service_needs() -> None:
    assert PROTOCOL_METHODS == ["apply", "close", "delete", "deployments", "describe",
                                "endpoint", "events", "metrics", "note", "traffic",
                                "watch"]  # fmt: skip


def test_a_local_backend_is_a_backend() -> None:
    backend = LocalBackend()
    try:
        assert isinstance(backend, Backend)
        assert backend.target == "local"
    finally:
        backend.close()


@pytest.mark.parametrize("backend", _backends(), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("method", PROTOCOL_METHODS)
def test_every_protocol_method_has_the_protocols_signature(backend: type[Any], method: str) -> None:
    assert callable(getattr(backend, method, None)), f"{backend.__name__} has no {method}"
    wanted = inspect.signature(getattr(Backend, method))
    got = inspect.signature(getattr(backend, method))
    assert got == wanted, f"{backend.__name__}.{method}{got} is not {method}{wanted}"
