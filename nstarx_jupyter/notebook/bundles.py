"""The widgets' built JavaScript and CSS (npm run build:prod → notebook/static/)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC", "bundle"]

STATIC = Path(__file__).parent / "static"


def bundle(name: str) -> tuple[Path, Path]:
    """The ESM and CSS files of widget `name`, or `FileNotFoundError` saying how to build them."""
    esm = STATIC / f"{name}.js"
    if not esm.is_file():
        raise FileNotFoundError(
            f"{esm} is missing: `pip install` builds it (from the repository: "
            "`npm install && npm run build:prod`)"
        )
    return esm, STATIC / f"{name}.css"
