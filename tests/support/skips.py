"""CI fails on a skip it did not expect: a pytest plugin (tests/conftest.py loads it).

Under `NSTARX_REQUIRE_UI=1`, `NSTARX_REQUIRE_K8S=1` or `NSTARX_REQUIRE_S3=1` (.ci/run sets
them), or `NSTARX_REQUIRE_GPU=1` (a runner with a GPU: its skips are then unexpected too),
every skip must be in `EXPECTED`, else the run fails and names it: a test that quietly
skips (a schema file not found, a tool missing) is a test CI never ran. Entries are the file and
the skip's reason, not its line, so editing the file does not break them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REQUIRE_FLAGS = ("NSTARX_REQUIRE_UI", "NSTARX_REQUIRE_K8S", "NSTARX_REQUIRE_S3",
                 "NSTARX_REQUIRE_GPU")  # fmt: skip
GPU_SKIPS: tuple[tuple[str, str], ...] = (
    # the GPU path on a machine without one (CI's runners): the device selection is tested
    # there against the frameworks' real device queries; a GPU runner sets NSTARX_REQUIRE_GPU=1
    ("tests/unit/runtimes/test_devices.py", "no CUDA device"),
)
EXPECTED: tuple[tuple[str, str], ...] = (
    # backend_for("kserve") without the KServe backend: where it is installed, its tests cover it
    ("tests/unit/deployment/test_service_targets.py", "the KServe backend is installed"),
    # the echo runtime of the runtime contract takes any array, so nothing is rejected
    ("tests/unit/runtimes/test_runtime_contract.py", "the echo runtime accepts any array"),
    *(GPU_SKIPS if os.environ.get("NSTARX_REQUIRE_GPU") != "1" else ()),
)


def strict() -> bool:
    """Whether this run must not skip unexpectedly (CI's `NSTARX_REQUIRE_*=1`)."""
    return any(os.environ.get(flag) == "1" for flag in REQUIRE_FLAGS)


def unexpected(
    skips: list[tuple[str, int, str]], root: Path, expected: tuple[tuple[str, str], ...] = EXPECTED
) -> list[str]:
    """`path:line: reason` of each skip (pytest's `longrepr`) that `expected` does not name."""
    found = []
    for path, line, reason in skips:
        where = Path(path)
        shown = where.relative_to(root).as_posix() if where.is_relative_to(root) else path
        if not any(shown == file and text in reason for file, text in expected):
            found.append(f"{shown}:{line}: {reason}")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run on an unexpected skip (the controller's, under xdist: it has every report)."""
    config = session.config
    if not strict() or hasattr(config, "workerinput"):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    reports = reporter.stats.get("skipped", []) if reporter is not None else []
    skips = [report.longrepr for report in reports if isinstance(report.longrepr, tuple)]
    found = unexpected(skips, config.rootpath)
    if not found:
        return
    if reporter is not None:
        reporter.ensure_newline()
        flags = "/".join(REQUIRE_FLAGS)
        heading = f"unexpected skips under {flags}=1 (tests/support/skips.py lists the expected):"
        reporter.write_line(heading, red=True)
        for line in found:
            reporter.write_line(f"  {line}", red=True)
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
