"""Every function-level import in the package has a reason: an optional dependency or start-up time.

An import inside a function hides a dependency from a reader; it must not hide an import cycle
(tests/unit/test_import_cycles.py counts these imports too). The allow-list is keyed on the module
imported, not on lines, so moving code between modules keeps it valid.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "nstarx_jupyter"

Reason = Literal["optional dependency", "start-up time", "pending split"]
OPTIONAL: Reason = "optional dependency"
STARTUP: Reason = "start-up time"
PENDING: Reason = "pending split"
"""In a module another branch is splitting (issue 21); to be hoisted once that lands."""

ALLOWED: dict[str, Reason] = {
    # extras (pyproject's optional-dependencies) and what they bring
    "IPython": OPTIONAL, "IPython.display": OPTIONAL, "ipywidgets": OPTIONAL, "onnx": OPTIONAL,
    "pandas": OPTIONAL, "plotly": OPTIONAL, "plotly.graph_objects": OPTIONAL,
    "plotly.subplots": OPTIONAL, "pyarrow": OPTIONAL, "pyarrow.parquet": OPTIONAL,
    "tqdm.auto": OPTIONAL, "urllib3": OPTIONAL,
    # core dependencies that cost tens of milliseconds where most callers never need them
    "cryptography": STARTUP, "cryptography.hazmat.primitives": STARTUP,
    "cryptography.hazmat.primitives.asymmetric": STARTUP, "cryptography.x509.oid": STARTUP,
    "httpx": STARTUP, "joblib": STARTUP, "jsonschema": STARTUP, "jsonschema.exceptions": STARTUP,
    "numpy": STARTUP, "scipy": STARTUP, "scipy.spatial.distance": STARTUP, "scipy.stats": STARTUP,
    "sklearn.datasets": STARTUP, "sklearn.ensemble": STARTUP, "sklearn.linear_model": STARTUP,
    "skops.io": STARTUP, "websockets.asyncio.client": STARTUP, "websockets.exceptions": STARTUP,
    "websockets.sync.client": STARTUP, "yaml": STARTUP,
    "cloudpickle": STARTUP,  # only a notebook that ships its own components pickles them
    # our own heavy modules: the CLI, `%load_ext`, the demo and a server without a state
    # directory start without the server, the control plane, gRPC, OpenAPI or KServe
    "nstarx_jupyter.client": STARTUP, "nstarx_jupyter.deployment.commands": STARTUP,
    "nstarx_jupyter.deployment.graph": STARTUP, "nstarx_jupyter.deployment.kserve_backend": STARTUP,
    "nstarx_jupyter.deployment.local": STARTUP, "nstarx_jupyter.labapi.app": STARTUP,
    "nstarx_jupyter.notebook.api": STARTUP, "nstarx_jupyter.notebook.card": STARTUP,
    "nstarx_jupyter.pipelines": STARTUP, "nstarx_jupyter.pipelines.library.outputs": STARTUP,
    "nstarx_jupyter.registry.stats": STARTUP, "nstarx_jupyter.security.tls": STARTUP,
    "nstarx_jupyter.serving.app": STARTUP, "nstarx_jupyter.serving.control": STARTUP,
    "nstarx_jupyter.serving.control_api": STARTUP,
    "nstarx_jupyter.serving.grpc": STARTUP, "nstarx_jupyter.serving.loading": STARTUP,
    "nstarx_jupyter.serving.openapi": STARTUP,
    "nstarx_jupyter.serving.server": STARTUP, "nstarx_jupyter.serving.settings": STARTUP,
    "nstarx_jupyter.pipelines.library": STARTUP,  # importlib: the built-in components on use
    "nstarx_jupyter.notebook.magics": STARTUP,  # `%load_ext`, not `import nstarx_jupyter`
    "nstarx_jupyter.notebook.examples": STARTUP,  # `%load_ext` reads it on `%deploy` only
    "nstarx_jupyter.pipelines.shipping": STARTUP,  # cloudpickle and inspect, on deploy only
    "nstarx_jupyter.deployment.export.model": STARTUP,  # the converters' glue, on export only
}  # fmt: skip


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def function_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of each import inside a function, outside `if TYPE_CHECKING:`.

    `importlib.import_module("literal")` counts as an import of that module.
    """
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if in_function and isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name) for alias in child.names)
            elif in_function and isinstance(child, ast.ImportFrom) and child.level == 0:
                found.append((child.lineno, child.module or ""))
            elif (isinstance(child, ast.Call) and ast.unparse(child.func).endswith("import_module")
                  and child.args and isinstance(child.args[0], ast.Constant)):  # fmt: skip
                found.append((child.lineno, str(child.args[0].value)))
            visit(child, inner)

    visit(tree, False)
    return found


def _all_function_imports() -> list[tuple[str, int, str]]:
    rows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rows += [
            (str(path.relative_to(ROOT)), line, module) for line, module in function_imports(tree)
        ]
    return rows


def test_every_function_level_import_has_a_reason() -> None:
    unlisted = [f"{path}:{line}: {module}" for path, line, module in _all_function_imports()
                if module not in ALLOWED]  # fmt: skip
    assert not unlisted, (
        "function-level imports without a reason (import at module level, or add the module "
        "to ALLOWED as an optional dependency or for start-up time):\n" + "\n".join(unlisted)
    )


def test_the_allow_list_names_only_imports_that_exist() -> None:
    used = {module for _, _, module in _all_function_imports()}
    assert sorted(set(ALLOWED) - used) == []


def test_optional_dependencies_are_not_core_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower().replace("_", "-")
            for spec in project["dependencies"]}  # fmt: skip
    distributions = importlib.metadata.packages_distributions()
    for module, reason in ALLOWED.items():
        if reason == OPTIONAL:
            names = {d.lower() for d in distributions.get(module.split(".")[0], [])}
            assert not names & core, f"{module} comes with a core dependency: not optional"


def test_the_walk_sees_imports_in_functions_only() -> None:
    tree = ast.parse(
        "import a\nif TYPE_CHECKING:\n    import b\n"
        "def f():\n    import c\n    from d.e import g\n    if TYPE_CHECKING:\n        import h\n"
        "    importlib.import_module('i')\n"
    )
    assert [module for _, module in function_imports(tree)] == ["c", "d.e", "i"]
