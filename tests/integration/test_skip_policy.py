"""CI fails on a skip nobody expected (tests/support/skips.py), and lets the expected ones by."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.skips import EXPECTED, REQUIRE_FLAGS, unexpected

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import pytest

def test_runs():
    pass

@pytest.mark.skipif(True, reason="a tool is missing")
def test_skipped():
    pass
"""


def _pytest(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on `folder` alone (no project config), with the plugin, in a clean environment."""
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRE_FLAGS}
    clean["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # none needed, and each costs seconds
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), clean.get("PYTHONPATH", "")])
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "tests.support.skips",
        "-p",
        "no:cacheprovider",
        "-c",
        os.devnull,
        "--rootdir",
        str(folder),
        str(folder),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**clean, **env}, check=False)  # fmt: skip


def test_an_unexpected_skip_fails_only_a_run_that_requires_everything(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    assert _pytest(tmp_path).returncode == 0  # a laptop without the tool: a skip is fine
    for flag in REQUIRE_FLAGS:
        strict = _pytest(tmp_path, **{flag: "1"})
        assert strict.returncode == 1, strict.stdout
        assert "test_probe.py:7: Skipped: a tool is missing" in strict.stdout
    assert _pytest(tmp_path, NSTARX_REQUIRE_UI="0").returncode == 0


def test_the_expected_skips_are_named_by_file_and_reason_not_line(tmp_path: Path) -> None:
    skips = [(str(ROOT / file), 999, f"Skipped: {reason} (a longer text)")
             for file, reason in EXPECTED]  # fmt: skip
    assert unexpected(skips, ROOT) == []
    other = [
        (str(ROOT / "tests/unit/deployment/test_pipeline_kserve.py"), 322, "Skipped: no schemas")
    ]
    assert unexpected(other, ROOT) == [
        "tests/unit/deployment/test_pipeline_kserve.py:322: Skipped: no schemas"
    ]
    moved = [(str(ROOT / EXPECTED[0][0]), 190, "Skipped: something else")]
    assert len(unexpected(moved, ROOT)) == 1  # the file alone does not excuse a skip


def test_gpu_skips_are_expected_only_where_no_gpu_is_required() -> None:
    script = ("from tests.support.skips import EXPECTED, GPU_SKIPS\n"
              "print(all(entry in EXPECTED for entry in GPU_SKIPS))")  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRE_FLAGS}
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), clean.get("PYTHONPATH", "")])
    for flag, expected in (("0", "True"), ("1", "False")):
        env = {**clean, "NSTARX_REQUIRE_GPU": flag}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, check=True, cwd=ROOT)  # fmt: skip
        assert done.stdout.strip() == expected
