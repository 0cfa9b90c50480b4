"""The JSON Schema of the lab API's models, generated for the lab extension (never hand-written).

`python -m nstarx_jupyter.labapi.schema` writes `labextension/src/generated/api.schema.json`:
one `$defs` entry per model of `models.API_MODELS`, answers as Python sends them (serialization
mode: every field present), requests (`models.REQUEST_MODELS`) as the front end may send them
(validation mode: defaulted fields optional). `labextension/gen-types.mjs` turns it into the
TypeScript types of `api.ts`. `--check` fails
when the file is stale; `make lint` runs it, so the sidebar cannot drift from the server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import models_json_schema

from nstarx_jupyter.generated_files import generator_main
from nstarx_jupyter.labapi.models import API_MODELS, REQUEST_MODELS

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.json_schema import JsonSchemaMode

__all__ = ["SCHEMA_ID", "api_schema", "schema_text"]

SCHEMA_ID = "https://nstarx.io/schemas/lab-api-v1.json"
DEFAULT_FILE = Path("labextension/src/generated/api.schema.json")


def api_schema() -> dict[str, Any]:
    """Every API model's JSON Schema under `$defs` (draft 2020-12, as pydantic writes it)."""
    modes = [(model, _mode(model)) for model in API_MODELS]
    _, schema = models_json_schema(modes)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **schema}  # fmt: skip


def _mode(model: type[BaseModel]) -> JsonSchemaMode:
    return "validation" if model in REQUEST_MODELS else "serialization"


def schema_text() -> str:
    """The schema as the stable text that is written to disk."""
    return json.dumps(api_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema file, or with `--check` report whether it is up to date."""
    return generator_main(
        argv, doc=__doc__, command=__spec__.name, option="--file", default=DEFAULT_FILE,
        texts=lambda path: {path: schema_text()},
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
