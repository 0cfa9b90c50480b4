"""The installed package brings both halves of the lab extension, enabled, with no extra step."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration]


def _jupyter(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "jupyter", *args], capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    # Both commands print their lists to stderr; colours only when a terminal asks.
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


def test_the_prebuilt_lab_extension_is_installed_and_enabled() -> None:
    listed = _jupyter("labextension", "list")
    assert re.search(r"nstarx-jupyter v\S+ enabled\s+OK", listed), listed


def test_the_server_extension_is_enabled_and_loads() -> None:
    listed = _jupyter("server", "extension", "list")
    assert re.search(r"nstarx_jupyter\.labapi enabled", listed), listed
    assert re.search(r"nstarx_jupyter\.labapi\s+OK", listed), listed
