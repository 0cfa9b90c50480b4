"""`make lab` / `make demo` install what the notebooks need, once; `make install` everything.

Read from `make -n` (what make would run) against a venv folder in tmp_path: nothing installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = "dev,xgboost,lightgbm,onnx,torch,tensorflow,mlflow,notebook,kserve,parquet,explain,export"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def _plan(venv: Path, *targets: str) -> str:
    done = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", *targets],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return done.stdout


def test_lab_and_demo_install_the_notebook_extras_only_when_pyproject_changed(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    first = _plan(venv, "lab")
    assert '-e ".[notebook,mlflow]"' in first
    assert "torch" not in first
    assert "tensorflow" not in first
    assert "moto" not in first  # the upload tests' S3 server is for `make check`
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    stamp = venv / ".installed-notebook-mlflow"
    stamp.touch()
    for target in ("lab", "demo"):
        assert "pip install" not in _plan(venv, target)  # installed, pyproject unchanged
    old = (ROOT / "pyproject.toml").stat().st_mtime - 10
    os.utime(stamp, (old, old))  # pyproject.toml is newer than the last install
    assert '-e ".[notebook,mlflow]"' in _plan(venv, "demo")


def test_install_still_installs_every_extra(tmp_path: Path) -> None:
    plan = _plan(tmp_path / "venv", "install", f"S3_VENV={tmp_path / 's3'}")
    assert "torch==" in plan
    assert (
        "dev,xgboost,lightgbm,onnx,torch,tensorflow,mlflow,notebook,kserve,parquet,explain,export"
        in plan
    )


def test_install_runs_pip_again_only_when_an_input_changed(tmp_path: Path) -> None:
    venv, s3 = tmp_path / "venv", tmp_path / "s3"
    for tool in (venv / "bin" / "python", s3 / "bin" / "moto_server"):
        tool.parent.mkdir(parents=True)
        tool.touch()
    extras = (
        "dev,xgboost,lightgbm,onnx,torch,tensorflow,mlflow,notebook,kserve,parquet,explain,export"
    )
    stamp = venv / f".installed-{extras.replace(',', '-')}"
    stamp.touch()
    assert "pip install" not in _plan(venv, "install", f"S3_VENV={s3}")  # nothing changed
    old = (ROOT / "hatch_build.py").stat().st_mtime - 10
    os.utime(stamp, (old, old))  # the build hook is newer than the last install
    assert f'-e ".[{extras}]"' in _plan(venv, "install", f"S3_VENV={s3}")
