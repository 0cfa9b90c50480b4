"""`nstarx demo`: the quickstart headless, in a home of its own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from nstarx_jupyter.config import nstarx_home
from nstarx_jupyter.notebook.demo import run_demo

if TYPE_CHECKING:
    import argparse

__all__ = ["DEMO_HOME_ENV", "demo_home", "run_demo_command"]

DEMO_HOME_ENV = "NSTARX_DEMO_HOME"
"""Where `nstarx demo` keeps its registry, server and keys (default `$NSTARX_HOME/demo`)."""


def demo_home(given: Path | None = None) -> Path:
    """The demo's home: `given`, else `$NSTARX_DEMO_HOME`, else `$NSTARX_HOME/demo`."""
    chosen = given or os.environ.get(DEMO_HOME_ENV) or nstarx_home() / "demo"
    return Path(chosen).expanduser().resolve()


def run_demo_command(args: argparse.Namespace) -> int:
    """`nstarx demo` with its own `$NSTARX_HOME` and registry."""
    home = demo_home(args.home)
    # Its own home and registry: the demo's `iris` versions do not land on the user's `iris`.
    os.environ["NSTARX_HOME"] = str(home)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)
    return run_demo(rps=args.rps, duration_s=args.duration_s, cleanup=args.cleanup, home=home)
