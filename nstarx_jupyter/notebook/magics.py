"""`%load_ext nstarx_jupyter`: `%%deploy`, `%predict` and `%nstarx` in a notebook.

A mistake in what the user typed shows as one line (IPython's UsageError), never a traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from nstarx_jupyter.errors import NstarxError

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["NstarxMagics", "register"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the kernel
        raise UsageError(f"{self.prog}: {message}")


def _deploy_parser() -> _Parser:
    parser = _Parser(prog="%%deploy", add_help=False)
    parser.add_argument("name")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--max-replicas", type=int, default=1)
    parser.add_argument("--container-concurrency", type=int)
    parser.add_argument("--timeout-s", type=int)
    parser.add_argument("--max-batch-size", type=int)
    parser.add_argument("--max-latency-ms", type=int, default=5)
    return parser


@magics_class
class NstarxMagics(Magics):
    """The nstarx magics."""

    @cell_magic
    def deploy(self, line: str, cell: str) -> Any:
        """Run the cell and deploy its last expression under NAME.

        %%deploy NAME [--min-replicas N] [--container-concurrency N] [--timeout-s N]
        [--max-batch-size N] [--max-latency-ms N]
        """
        args = _deploy_parser().parse_args(shlex.split(line))
        shell = self.shell
        assert shell is not None  # noqa: S101 - set by IPython for a registered magic
        result = shell.run_cell(cell)  # type: ignore[no-untyped-call]
        if not result.success:
            return None  # IPython already showed the cell's own error
        model = result.result
        if model is None:
            raise UsageError("%%deploy: the cell's last line must be the model (an expression)")
        batching = None
        if args.max_batch_size:
            batching = {"max_batch_size": args.max_batch_size,
                        "max_latency_ms": args.max_latency_ms}  # fmt: skip
        from nstarx_jupyter.notebook.api import deploy

        return _user_errors("%%deploy", lambda: deploy(
            model, args.name, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
            container_concurrency=args.container_concurrency, timeout_s=args.timeout_s,
            batching=batching,
        ))  # fmt: skip

    @line_magic
    def predict(self, line: str) -> Any:
        """%predict NAME DATA: DATA is JSON or a variable (a dict, DataFrame, array...)."""
        name, _, text = line.strip().partition(" ")
        if not name or not text.strip():
            raise UsageError("%predict NAME DATA (JSON, or the name of a variable)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            shell = self.shell
            assert shell is not None  # noqa: S101 - set by IPython for a registered magic
            try:
                data = shell.ev(text)  # type: ignore[no-untyped-call]
            except Exception as exc:  # noqa: BLE001 - whatever the user's expression raised
                message = f"%predict: '{text}' is neither JSON nor a variable: {exc}"
                raise UsageError(message) from None
        from nstarx_jupyter.notebook.api import Deployment

        deployment = Deployment(name)
        try:
            return _user_errors("%predict", lambda: deployment.predict(data))
        finally:
            deployment.close()

    @line_magic
    def nstarx(self, line: str) -> None:
        """%nstarx status | stop: the local server and its deployments."""
        command = line.strip() or "status"
        if command not in ("status", "stop"):
            raise UsageError("%nstarx status | stop")
        from nstarx_jupyter.deployment.commands import run_command

        out = io.StringIO()
        _user_errors("%nstarx", lambda: run_command(argparse.Namespace(command=command), out))
        print(out.getvalue(), end="")  # noqa: T201 - a magic's output


def _user_errors(prog: str, call: Any) -> Any:
    try:
        return call()
    except NstarxError as exc:
        raise UsageError(f"{prog}: {exc.message}") from None


def register(shell: InteractiveShell) -> None:
    """Register the magics on an IPython shell."""
    shell.register_magics(NstarxMagics)
