"""Module sizes: none of the package's modules exceeds 500 lines (issue 21)."""

from __future__ import annotations

import statistics
from pathlib import Path

import nstarx_jupyter

LIMIT = 500
PACKAGE = Path(nstarx_jupyter.__file__).parent


def test_no_module_exceeds_the_limit() -> None:
    sizes = {path.relative_to(PACKAGE.parent).as_posix(): len(path.read_text().splitlines())
             for path in sorted(PACKAGE.rglob("*.py"))}  # fmt: skip
    median = statistics.median(sizes.values())
    print(f"{len(sizes)} modules, median {median:g} lines, largest {max(sizes.values())}")
    over = {name: lines for name, lines in sizes.items() if lines > LIMIT}
    assert not over, f"modules over {LIMIT} lines (median {median:g}): {over}"
