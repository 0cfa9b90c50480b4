"""The JSON Schemas of `PipelineSpec`, generated for the front ends (never written by hand).

`python -m nstarx_jupyter.pipelines.schema` writes two files to `labextension/src/generated/`:
`pipeline.schema.json` checks a pipeline document as a user or the editor writes it (fields
with defaults may be left out); `pipeline.sent.schema.json` describes a spec as Python sends it
(every field present), and `labextension/gen-types.mjs` turns it into the front end's TypeScript
types. `--check` fails when either file is stale; `make lint` runs it, so the front ends
cannot drift from the Python model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.generated_files import generator_main
from nstarx_jupyter.pipelines.spec import PipelineSpec

if TYPE_CHECKING:
    from pydantic.json_schema import JsonSchemaMode

__all__ = ["SCHEMA_ID", "pipeline_schema", "schema_text"]

SCHEMA_ID = "https://nstarx.io/schemas/pipeline-spec-v1.json"
DEFAULT_FOLDER = Path("labextension/src/generated")
FILES: dict[str, JsonSchemaMode] = {
    "pipeline.schema.json": "validation",
    "pipeline.sent.schema.json": "serialization",
}


def pipeline_schema(mode: JsonSchemaMode = "validation") -> dict[str, Any]:
    """`PipelineSpec`'s JSON Schema (draft 2020-12, as pydantic writes it)."""
    schema = PipelineSpec.model_json_schema(mode=mode)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text(mode: JsonSchemaMode = "validation") -> str:
    """The schema as the stable text that is written to disk."""
    return json.dumps(pipeline_schema(mode), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema files, or with `--check` report whether they are up to date."""
    return generator_main(argv, doc=__doc__, command=__spec__.name, option="--folder",
                          default=DEFAULT_FOLDER, texts=_texts)  # fmt: skip


def _texts(folder: Path) -> dict[Path, str]:
    return {folder / name: schema_text(mode) for name, mode in FILES.items()}


if __name__ == "__main__":
    sys.exit(main())
