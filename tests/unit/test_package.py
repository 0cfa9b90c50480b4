"""The package surface: public names and the missing-extra message (its light import: a child
process, in tests/integration/test_fresh_interpreters.py)."""

from __future__ import annotations

import pytest

import nstarx_jupyter
from nstarx_jupyter.errors import MissingExtraError, require


def test_every_public_name_resolves() -> None:
    for name in nstarx_jupyter.__all__:
        assert getattr(nstarx_jupyter, name) is not None
    with pytest.raises(AttributeError):
        _ = nstarx_jupyter.NoSuchThing


def test_missing_framework_names_the_pip_line() -> None:
    with pytest.raises(MissingExtraError) as caught:
        require("surely_not_installed_fw", "xgboost")
    assert caught.value.message == (
        "surely_not_installed_fw is not installed; install it with: "
        "pip install 'nstarx-jupyter[xgboost]'"
    )
    assert isinstance(caught.value, ImportError)
