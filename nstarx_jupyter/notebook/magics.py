"""`%load_ext nstarx_jupyter`: `%%deploy`, `%predict` and `%nstarx` in a notebook.

A mistake in what the user typed shows as one line (IPython's UsageError), never a traceback.
"""

from __future__ import annotations

import argparse
import ast
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
        # The cell runs as written, but its last expression (the model) is evaluated, not shown:
        # the card is the cell's one output.
        split = _split_last_expression(shell.transform_cell(cell))  # type: ignore[no-untyped-call]
        if split is None:
            result = shell.run_cell(cell)  # type: ignore[no-untyped-call]
            if not result.success:
                return None  # IPython already showed the cell's own error
            raise UsageError("%%deploy: the cell's last line must be the model (an expression)")
        before, expression = split
        if before.strip() and not shell.run_cell(before).success:  # type: ignore[no-untyped-call]
            return None
        try:
            model = shell.ev(expression)  # type: ignore[no-untyped-call]
        except Exception:  # noqa: BLE001 - the user's code: IPython shows it as a cell error
            shell.showtraceback()
            return None
        if model is None:
            raise UsageError("%%deploy: the cell's last line must be the model (an expression)")
        batching = None
        if args.max_batch_size:
            batching = {"max_batch_size": args.max_batch_size,
                        "max_latency_ms": args.max_latency_ms}  # fmt: skip
        from nstarx_jupyter.notebook.api import deploy

        made = _user_errors("%%deploy", lambda: deploy(
            model, args.name, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
            container_concurrency=args.container_concurrency, timeout_s=args.timeout_s,
            batching=batching,
        ))  # fmt: skip
        training = _training_means(shell.user_ns, model)
        if training is not None:  # the card's form starts from typical values, not zeros
            made._example = training
        return made

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


def _split_last_expression(source: str) -> tuple[str, str] | None:
    """The cell as (the statements before, its last expression); None when it ends otherwise."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None  # IPython runs it and shows the error
    last = tree.body[-1] if tree.body else None
    if not isinstance(last, ast.Expr):
        return None
    expression = ast.get_source_segment(source, last)
    if expression is None:
        return None
    lines = source.splitlines(keepends=True)
    before = "".join(lines[: last.lineno - 1]) + lines[last.lineno - 1][: last.col_offset]
    return before, expression


def _training_means(namespace: dict[str, Any], model: Any) -> dict[str, Any] | None:
    """The means of the notebook's frame the model was fitted on, or None when there is none.

    That frame is the DataFrame whose columns are the model's features (the largest, if several).
    """
    from nstarx_jupyter.notebook.examples import mean_record

    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None
    frames = [value for key, value in namespace.items() if not key.startswith("_")
              and getattr(value, "columns", None) is not None
              and list(value.columns) == list(names)]  # fmt: skip
    if not frames:
        return None
    return mean_record(max(frames, key=len), names)


def _user_errors(prog: str, call: Any) -> Any:
    try:
        return call()
    except NstarxError as exc:
        raise UsageError(f"{prog}: {exc.message}") from None


def register(shell: InteractiveShell) -> None:
    """Register the magics on an IPython shell."""
    shell.register_magics(NstarxMagics)
