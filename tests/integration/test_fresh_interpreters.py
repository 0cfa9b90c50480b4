"""What a fresh interpreter imports, and the fd limit it raises: each test runs Python in a child
process, since the test runner's own has long imported everything (moved from tests/unit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nstarx_jupyter.runtimes import RUNTIMES
from tests.unit.runtimes.test_runtime_contract import write_foreign_files

HEAVY = ["numpy", "sklearn", "starlette", "uvicorn", "grpc", "pydantic", "torch", "tensorflow",
         "xgboost", "lightgbm", "onnxruntime"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]  # the package is importable from the repository root


def test_import_loads_no_framework() -> None:
    code = "import sys, nstarx_jupyter; print(','.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)  # fmt: skip
    loaded = {name.split(".")[0] for name in done.stdout.strip().split(",")}
    assert not loaded & set(HEAVY)


def test_nstarx_reexports_the_client_and_imports_lightly() -> None:
    code = ("import sys; from nstarx import InferenceClient, AsyncInferenceClient; "
            "print(InferenceClient); print(','.join(sorted(sys.modules)))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)  # fmt: skip
    first, modules = done.stdout.splitlines()
    assert "nstarx_jupyter.client.inference.InferenceClient" in first
    assert not {name.split(".")[0] for name in modules.split(",")} & {"numpy", "sklearn", "pandas"}


def test_importing_the_package_does_not_load_the_card() -> None:
    code = (
        "import sys, nstarx_jupyter; "
        "print('anywidget' in sys.modules, 'nstarx_jupyter.notebook.card' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_runtimes_import_no_framework_until_load(tmp_path: Path) -> None:
    paths = [str(path) for path in write_foreign_files(tmp_path)]
    script = (
        "import sys; from pathlib import Path\n"
        "from nstarx_jupyter.runtimes.loader import RUNTIMES, runtime_class\n"
        f"for path in {paths!r}:\n"
        "    for name in RUNTIMES: runtime_class(name).can_load(Path(path))\n"
        "heavy = {'xgboost', 'lightgbm', 'onnxruntime', 'torch', 'tensorflow', 'keras'}"
        " & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
    assert set(RUNTIMES) == {"sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "tensorflow",
                             "keras"}  # fmt: skip


def test_the_soft_fd_limit_is_raised_to_the_hard_one() -> None:
    script = (
        "import resource\n"
        "from nstarx_jupyter.serving.edge import raise_fd_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))\n"
        "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert done.stdout.split() == ["1024", "1024"]
