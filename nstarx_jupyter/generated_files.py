"""Generated files kept in the repository (JSON Schemas for the front ends' TypeScript types).

Each generator (`pipelines.schema`, `labapi.schema`, `serving.control_schema`) renders its texts;
this module writes the stale ones atomically, or with `--check` (as `make lint` runs it) names
them and fails, so a model changed without regenerating is caught before review.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["generator_main", "sync"]


def sync(texts: dict[Path, str], *, check: bool, command: str) -> int:
    """Write each stale file (0), or with `check` report the stale ones (1 if any)."""
    stale = [path for path, text in texts.items()
             if not (path.exists() and path.read_text() == text)]  # fmt: skip
    if check:
        if stale:
            names = ", ".join(str(path) for path in stale)
            sys.stderr.write(f"{names} stale: run python -m {command}\n")
            return 1
        return 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(texts[path])
        temporary.replace(path)  # never a half-written file for the TypeScript build to read
    return 0


def generator_main(
    argv: list[str] | None,
    *,
    doc: str | None,
    command: str,
    option: str,
    default: Path,
    texts: Callable[[Path], dict[Path, str]],
) -> int:
    """A generator's command line: `option` (a file or folder, `default`) and `--check`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument(option, type=type(default), default=default, dest="where")
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    return sync(texts(args.where), check=args.check, command=command)
