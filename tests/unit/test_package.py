"""The package surface: public names, a light import, and the missing-extra message."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nstarx_jupyter
from nstarx_jupyter.errors import MissingExtraError, require
from tests.integration.server import ROOT

HEAVY = ["numpy", "sklearn", "starlette", "uvicorn", "grpc", "pydantic", "torch", "tensorflow",
         "xgboost", "lightgbm", "onnxruntime"]  # fmt: skip


def test_every_public_name_resolves() -> None:
    for name in nstarx_jupyter.__all__:
        assert getattr(nstarx_jupyter, name) is not None
    with pytest.raises(AttributeError):
        _ = nstarx_jupyter.NoSuchThing


def test_import_loads_no_framework() -> None:
    code = "import sys, nstarx_jupyter; print(','.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)  # fmt: skip
    loaded = {name.split(".")[0] for name in done.stdout.strip().split(",")}
    assert not loaded & set(HEAVY)


def test_missing_framework_names_the_pip_line() -> None:
    with pytest.raises(MissingExtraError) as caught:
        require("surely_not_installed_fw", "xgboost")
    assert caught.value.message == (
        "surely_not_installed_fw is not installed; install it with: "
        "pip install 'nstarx-jupyter[xgboost]'"
    )
    assert isinstance(caught.value, ImportError)
