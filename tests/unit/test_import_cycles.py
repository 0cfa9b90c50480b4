"""No import cycles between the modules of any package, counting every kind of import.

import-linter's `acyclic_siblings` contract (pyproject) sees function-level imports but, like the
layers contract, not `if TYPE_CHECKING:` ones; this test counts those too, and the
`importlib.import_module("literal")` calls grimp cannot see.
"""

from __future__ import annotations

import ast

import grimp

from tests.unit.test_function_imports import PACKAGE, ROOT, function_imports

KNOWN: set[tuple[str, str]] = set()
"""Cycles still to break (none since stop 28; one found again fails the test above)."""


def _graph() -> grimp.ImportGraph:
    graph = grimp.build_graph("nstarx_jupyter", exclude_type_checking_imports=False, cache_dir=None)
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        importer = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for _, module in function_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module.startswith("nstarx_jupyter") and module in graph.modules:
                graph.add_import(importer=importer, imported=module)
    return graph


def cycle_breakers(graph: grimp.ImportGraph, package: str) -> set[tuple[str, str]]:
    """Imports whose removal leaves no cycle between the children of `package`, at any depth."""
    found: set[tuple[str, str]] = set()
    children = graph.find_children(package)
    if len(children) >= 2:
        found |= graph.nominate_cycle_breakers(package)
    for child in children:
        found |= cycle_breakers(graph, child)
    return found


def test_no_package_has_an_import_cycle() -> None:
    breakers = cycle_breakers(_graph(), "nstarx_jupyter")
    assert sorted(breakers - KNOWN) == []


def test_the_known_cycles_are_still_there() -> None:
    """A cycle broken comes off KNOWN, so it cannot come back unnoticed."""
    breakers = cycle_breakers(_graph(), "nstarx_jupyter")
    assert sorted(KNOWN - breakers) == []


def test_a_cycle_through_a_function_level_import_is_found() -> None:
    graph = _graph()
    graph.add_import(importer="nstarx_jupyter.errors", imported="nstarx_jupyter.client.core")
    assert cycle_breakers(graph, "nstarx_jupyter") - KNOWN
