"""The part of GJSON that KServe's InferenceGraph conditions use, evaluated as KServe's router does.

KServe's router takes a `Switch` step (or goes on with a `Sequence` step) when
`gjson.GetBytes(body, condition).Exists()`. This module reads the subset of GJSON's path syntax
(github.com/tidwall/gjson, SYNTAX.md) that KServe's samples and nstarx's own compiler write:

- keys, dot-separated, a backslash escaping a special character; a number indexes an array;
- `#` (an array's length, or with a path after it, that path for every element);
- queries `#(path op value)` (the first element that matches) and `#(...)#` (every element),
  with `==`, `!=`, `<`, `<=`, `>`, `>=`, `%` and `!%` (`*` and `?` patterns), or no operator
  (the path exists); the value is a JSON string, or bare text compared as GJSON compares it;
- `@this` and `@flatten`, multipaths `[path,path]`, and `|` pipes.

Anything else (wildcard keys, other modifiers, object multipaths, nested queries, `~` values,
JSON literals) raises `InvalidInputError` naming the expression, when the condition is
compiled: a graph with such a condition is refused before it is served, never half-evaluated.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Condition", "compile_condition"]

_MISSING = object()
_MODIFIER = re.compile(r"@([A-Za-z]*)(:?)")
_OPERATORS = ("==", "!=", "<=", ">=", "!%", "%", "=", "<", ">")


@dataclass(frozen=True, slots=True)
class _Key:
    name: str


@dataclass(frozen=True, slots=True)
class _Modifier:
    name: str  # "this" or "flatten"


@dataclass(frozen=True, slots=True)
class _Count:
    """`#`: the length, or with more path after a dot, that path for each element."""


@dataclass(frozen=True, slots=True)
class _Query:
    path: tuple[tuple[str, Any], ...]
    op: str
    value: str
    every: bool


@dataclass(frozen=True, slots=True)
class _Multi:
    paths: tuple[tuple[tuple[str, Any], ...], ...]


Path = tuple[tuple[str, Any], ...]
"""(separator, component) pairs; the separator is '', '.' or '|'."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled GJSON condition: `exists(body)` says whether KServe would take the step."""

    text: str
    path: Path

    def exists(self, body: Any) -> bool:
        """Whether the path resolves in `body` (already parsed JSON), as `Result.Exists()`."""
        return _evaluate(self.path, body) is not _MISSING


def compile_condition(text: str) -> Condition:
    """Parse a condition, refusing (naming it) what this subset of GJSON does not evaluate."""
    if not text:
        raise InvalidInputError("an empty condition never matches in KServe's router")
    try:
        return Condition(text, _Parser(text).path(end=""))
    except _UnsupportedError as exc:
        raise InvalidInputError(f"condition '{text}': {exc}") from None


class _UnsupportedError(Exception):
    """A part of GJSON outside the subset."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def path(self, end: str) -> Path:
        """Components up to the end of the text or a character of `end` (not consumed)."""
        parts: list[tuple[str, Any]] = []
        separator = ""
        while True:
            parts.append((separator, self.component(end)))
            char = self.peek()
            if char in (".", "|"):
                separator = char
                self.i += 1
                continue
            if char == "" or char in end:
                return tuple(parts)
            raise _UnsupportedError(f"unexpected '{char}' at position {self.i}")

    def component(self, end: str) -> Any:
        char = self.peek()
        if char == "@":
            return self.modifier()
        if char == "[":
            return self.multipath()
        if char == "#":
            self.i += 1
            return self.query() if self.peek() == "(" else _Count()
        if char in ("{", "!", "~", ".", "|") or char == "":
            raise _UnsupportedError(f"'{char or 'end'}' at position {self.i} is not supported here")
        return self.key(end)

    def modifier(self) -> _Modifier:
        match = _MODIFIER.match(self.text, self.i)
        name = match.group(1) if match else ""
        if match is None or name not in ("this", "flatten") or match.group(2):
            raise _UnsupportedError(f"modifier '@{name}' is not supported (@this, @flatten only)")
        self.i = match.end()
        return _Modifier(name)

    def multipath(self) -> _Multi:
        self.i += 1
        paths = [self.path(end=",]")]
        while self.peek() == ",":
            self.i += 1
            paths.append(self.path(end=",]"))
        if self.peek() != "]":
            raise _UnsupportedError("a multipath '[...]' is not closed")
        self.i += 1
        return _Multi(tuple(paths))

    def key(self, end: str) -> _Key:
        name: list[str] = []
        while (char := self.peek()) and char not in ".|" and char not in end:
            if char == "\\":
                self.i += 1
                char = self.peek()
                if not char:
                    raise _UnsupportedError("the condition ends in an escape")
            elif char in "*?":
                raise _UnsupportedError(f"wildcard '{char}' in a key is not supported")
            elif char in "()[]{}#@":
                raise _UnsupportedError(f"'{char}' at position {self.i} is not supported here")
            name.append(char)
            self.i += 1
        return _Key("".join(name))

    def query(self) -> _Query:
        """`#(path op value)` or `#(...)#`; the `#` is read already."""
        start = self.i + 1
        depth, quoted, i = 0, False, start
        while i < len(self.text):
            char = self.text[i]
            if quoted:
                if char == "\\":
                    i += 1
                elif char == '"':
                    quoted = False
            elif char == '"':
                quoted = True
            elif char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            i += 1
        else:
            raise _UnsupportedError("a query '#(' is not closed")
        inner = self.text[start:i]
        self.i = i + 1
        every = self.peek() == "#"
        if every:
            self.i += 1
        return self.query_parts(inner, every)

    def query_parts(self, inner: str, every: bool) -> _Query:
        if "#(" in inner:
            raise _UnsupportedError("nested queries are not supported")
        position, op = _operator(inner)
        if op == "":
            left, value = inner.strip(), ""
        else:
            left, value = inner[:position].strip(), inner[position + len(op) :].strip()
        if value.startswith("~"):
            raise _UnsupportedError("'~' truthiness values are not supported")
        if value.startswith('"'):
            try:
                decoded = json.loads(value)
            except ValueError:
                raise _UnsupportedError(f"query value {value} is not a JSON string") from None
            if not isinstance(decoded, str):
                raise _UnsupportedError(f"query value {value} is not a JSON string")
            value = decoded
        path = _Parser(left).path(end="") if left else ()
        return _Query(path, "=" if op == "==" else op, value, every)


def _operator(inner: str) -> tuple[int, str]:
    """Where the query's operator is (outside quotes) and which; ('', no operator)."""
    quoted = False
    i = 0
    while i < len(inner):
        char = inner[i]
        if quoted:
            if char == "\\":
                i += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "\\":
            i += 1
        else:
            for op in _OPERATORS:
                if inner.startswith(op, i):
                    return i, op
        i += 1
    return len(inner), ""


# -- evaluation ---------------------------------------------------------------------------------


def _evaluate(path: Path, value: Any) -> Any:
    """The value at `path`, or `_MISSING`."""
    if not path:
        return value
    (_, component), rest = path[0], path[1:]
    mapped = (
        rest
        and rest[0][0] == "."
        and (isinstance(component, _Count) or (isinstance(component, _Query) and component.every))
    )
    found = _step(component, value, counting=not rest)
    if found is _MISSING:
        return _MISSING
    if mapped:  # `friends.#.name`, `friends.#(age>40)#.name`: the rest for each element
        items = value if isinstance(component, _Count) else found
        results = [_evaluate(rest, item) for item in items]
        return [r for r in results if r is not _MISSING]
    return _evaluate(rest, found)


def _step(component: Any, value: Any, *, counting: bool) -> Any:
    if isinstance(component, _Key):
        if isinstance(value, dict):
            return value.get(component.name, _MISSING)
        if isinstance(value, list) and component.name.isdigit():
            index = int(component.name)
            return value[index] if index < len(value) else _MISSING
        return _MISSING
    if isinstance(component, _Modifier):
        if component.name == "flatten" and isinstance(value, list):
            return [x for item in value for x in (item if isinstance(item, list) else [item])]
        return value
    if isinstance(component, _Multi):
        results = [_evaluate(path, value) for path in component.paths]
        return [r for r in results if r is not _MISSING]
    if not isinstance(value, list):
        return _MISSING
    if isinstance(component, _Count):
        return len(value) if counting else value
    matches = [item for item in value if _matches(component, item)]
    if component.every:
        return matches
    return matches[0] if matches else _MISSING


def _matches(query: _Query, item: Any) -> bool:
    """GJSON's `queryMatches`: compare by the JSON type of the element's value."""
    found = _evaluate(query.path, item)
    if found is _MISSING:
        return False
    if query.op == "":
        return True
    op, wanted = query.op, query.value
    if isinstance(found, bool):
        return _compare_bool(op, found, wanted)
    if isinstance(found, (int, float)):
        try:
            number = float(wanted)
        except ValueError:
            number = 0.0  # Go's ParseFloat error leaves 0
        return _ORDER.get(op, _never)(float(found), number)
    if isinstance(found, str):
        if op in ("%", "!%"):
            return (_pattern(wanted).fullmatch(found) is not None) == (op == "%")
        return _ORDER.get(op, _never)(found, wanted)
    return False


def _never(a: Any, b: Any) -> bool:
    return False


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare_bool(op: str, found: bool, wanted: str) -> bool:
    """GJSON's rules for true and false values."""
    if found:
        return {"=": wanted == "true", "!=": wanted != "true", ">": wanted == "false",
                ">=": True}.get(op, False)  # fmt: skip
    return {"=": wanted == "false", "!=": wanted != "false", "<": wanted == "true",
            "<=": True}.get(op, False)  # fmt: skip


def _pattern(pattern: str) -> re.Pattern[str]:
    """tidwall/match: `*` any run, `?` one character, a backslash escapes the next one."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)
