"""The `nstarx` command line: argument parsing only; the work happens in the packages."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from nstarx_jupyter.cli.demo import run_demo_command
from nstarx_jupyter.cli.parser import build_parser
from nstarx_jupyter.cli.serve import run_serve, run_tls_cert
from nstarx_jupyter.errors import NstarxError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `nstarx` command; user mistakes print one line, not a traceback."""
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "warning")
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return run_serve(args)
        if args.command == "demo":
            return run_demo_command(args)
        if args.command == "tls-cert":
            return run_tls_cert(args)
        if args.command == "export":
            from nstarx_jupyter.deployment.export.model import run_export

            return run_export(args.name, args.out, args.quantize, args.sample)
        from nstarx_jupyter.deployment.commands import run_command

        return run_command(args)
    except NstarxError as exc:
        print(f"nstarx {args.command}: {exc.message}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 130
