"""The JSON Schema of the control API's answers, generated for the front ends (never hand-written).

`python -m nstarx_jupyter.serving.control_schema` writes
`labextension/src/generated/control.schema.json`: one `$defs` entry per pydantic model that
`protocol.control` and `pipelines.served` list in `__all__` (found, not listed again here, so a
model added there is in the next generated file), as the server sends it (serialization mode:
a field left out when it has no value is optional). `labextension/gen-types.mjs` turns it into
the TypeScript types of `control.ts`, which the lab extension and the notebook widgets import.
`--check` fails when the file is stale; `make lint` runs it, so the front ends cannot drift
from the server's answers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from nstarx_jupyter.generated_files import generator_main
from nstarx_jupyter.pipelines import served
from nstarx_jupyter.protocol import control

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["CONTROL_MODULES", "SCHEMA_ID", "control_models", "control_schema", "schema_text"]

SCHEMA_ID = "https://nstarx.io/schemas/control-api-v1.json"
DEFAULT_FILE = Path("labextension/src/generated/control.schema.json")
CONTROL_MODULES: tuple[ModuleType, ...] = (control, served)
"""The modules whose models are the control API's answers (and its `AccessRule` body)."""


def control_models(modules: tuple[ModuleType, ...] | None = None) -> list[type[BaseModel]]:
    """Every pydantic model a module lists in `__all__`, in the modules' and the lists' order.

    `__all__` is the public API (a test checks it names what the module defines), so a model
    added to a module and exported there is generated without touching this file.
    """
    found: list[type[BaseModel]] = []
    for module in CONTROL_MODULES if modules is None else modules:
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseModel) and value not in found:
                found.append(value)
    return found


def control_schema() -> dict[str, Any]:
    """Every answer model's JSON Schema under `$defs` (draft 2020-12, as pydantic writes it)."""
    _, schema = models_json_schema([(model, "serialization") for model in control_models()])
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **schema}  # fmt: skip


def schema_text() -> str:
    """The schema as the stable text that is written to disk."""
    return json.dumps(control_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema file, or with `--check` report whether it is up to date."""
    return generator_main(
        argv, doc=__doc__, command=__spec__.name, option="--file", default=DEFAULT_FILE,
        texts=lambda path: {path: schema_text()},
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
