"""The lab extension's route table (`labextension/src/routes.ts`) is the server extension's.

`requestAPI` takes a call's path parameters, body and answer type from that table, so it must
hold every route and method `labapi.routes` serves, each body the model its handler reads, and
each answer the return type of the service method its handler calls. Read here from the code
(the handlers' bodies, the service methods' annotations), so the table cannot drift unnoticed.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nstarx_jupyter.labapi import handlers
from nstarx_jupyter.labapi.pipeline_document import PipelineService
from nstarx_jupyter.labapi.routes import ROUTES
from nstarx_jupyter.labapi.service import LabService

ROOT = Path(__file__).resolve().parents[3]
TABLE = ROOT / "labextension" / "src" / "routes.ts"
METHODS = ("get", "post", "put", "delete")
ENTRY = re.compile(
    r'^ {2}"(GET|POST|PUT|DELETE) ([^"]+)": \{ (?:body: (\w+); )?answer: ([^;]+) \};$'
)
SERVICES: dict[str, type] = {"service": LabService, "pipelines": PipelineService}
"""The objects a handler reaches through `self.service...`, by attribute name."""

Entry = tuple[str | None, str]  # (body model, answer type) as TypeScript names them


def _table(text: str | None = None) -> dict[tuple[str, str], Entry]:
    text = TABLE.read_text() if text is None else text
    block = text.split("export interface Routes {\n", 1)[1].split("\n}\n", 1)[0]
    table: dict[tuple[str, str], Entry] = {}
    for line in block.splitlines():
        found = ENTRY.match(line)
        assert found, f"routes.ts: a line this test cannot read: {line!r}"
        method, path, body, answer = found.groups()
        table[(method, path)] = (body, answer)
    return table


def _typescript(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "undefined"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        return f"{_typescript(args[0])}[]"
    if origin is dict and args == (str, Any):
        return "Record<string, unknown>"
    raise AssertionError(f"no TypeScript name for {annotation!r}")


def _chain(node: ast.expr) -> list[str]:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.insert(0, node.attr)
        node = node.value
    assert isinstance(node, ast.Name), ast.dump(node)
    assert node.id == "self", ast.dump(node)
    return names


def _served(handler: type, method: str) -> Entry:
    """The body model the handler method reads and its service call's return type."""
    function = vars(handler)[method]
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    body: str | None = None
    calls: list[list[str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if _chain(node.func) == ["body"]:
                assert isinstance(node.args[0], ast.Name)
                body = node.args[0].id
            elif _chain(node.func) == ["call"]:
                calls.append(_chain(node.args[0]))
    assert len(calls) == 1, f"{handler.__name__}.{method}: one service call, found {calls}"
    *owners, name = calls[0]
    service = SERVICES[owners[-1]]
    work: types.FunctionType = getattr(service, name)
    module = sys.modules[work.__module__]
    returned = eval(work.__annotations__["return"], vars(module))  # noqa: S307 - our own source
    return body, _typescript(returned)


def test_the_table_holds_every_route_and_method_the_server_extension_serves() -> None:
    table = _table()
    served = {(pattern, method) for pattern, handler in ROUTES for method in METHODS
              if method in vars(handler)}  # fmt: skip
    covered = set()
    for method, path in table:
        example = re.sub(r"\{\w+\}", "1", path)
        pattern, handler = next((p, h) for p, h in ROUTES if re.fullmatch(p, example))
        assert method.lower() in vars(handler), f"{method} {path}: {handler.__name__} has none"
        covered.add((pattern, method.lower()))
    assert covered == served


def _mismatches(table: dict[tuple[str, str], Entry]) -> list[str]:
    wrong = []
    for (method, path), entry in table.items():
        example = re.sub(r"\{\w+\}", "1", path)
        handler = next(h for p, h in ROUTES if re.fullmatch(p, example))
        if entry != (served := _served(handler, method.lower())):
            wrong.append(f"{method} {path}: {entry} in routes.ts, {served} served")
    return wrong


def test_each_routes_body_and_answer_are_what_its_handler_reads_and_sends() -> None:
    assert _mismatches(_table()) == []
    # What the checks read from the handlers, for a few routes:
    assert _served(handlers.DeploymentHandler, "delete") == (None, "undefined")  # 204
    assert _served(handlers.TrafficHandler, "put") == ("TrafficChange", "DeploymentInfo")
    assert _served(handlers.KeysHandler, "get") == (None, "KeyInfo[]")


def test_a_wrong_answer_or_body_in_the_table_is_caught() -> None:
    text = TABLE.read_text()
    line = '  "GET deployments/{name}": { answer: DeploymentInfo };'
    assert line in text
    wrong = text.replace(line, line.replace("DeploymentInfo", "DeploymentInfo[]"))
    assert _mismatches(_table(wrong)) == [
        "GET deployments/{name}: (None, 'DeploymentInfo[]') in routes.ts,"
        " (None, 'DeploymentInfo') served"
    ]
    line = '  "POST keys": { body: KeyCreate; answer: KeyCreated };'
    assert len(_mismatches(_table(text.replace(line, line.replace("KeyCreate;", "KeyInfo;"))))) == 1
