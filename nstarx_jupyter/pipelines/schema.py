"""The JSON Schema of `PipelineSpec`, generated for the front ends (never written by hand).

`python -m nstarx_jupyter.pipelines.schema` writes it to `widgets/src/generated/`, where the
flow editor and the JupyterLab extension read it; `--check` fails when the file is stale, and
`make check` runs that, so the front ends cannot drift from the Python model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nstarx_jupyter.pipelines.spec import PipelineSpec

__all__ = ["SCHEMA_ID", "pipeline_schema", "schema_text"]

SCHEMA_ID = "https://nstarx.io/schemas/pipeline-spec-v1.json"
DEFAULT_OUTPUT = Path("widgets/src/generated/pipeline.schema.json")


def pipeline_schema() -> dict[str, Any]:
    """`PipelineSpec`'s JSON Schema (draft 2020-12, as pydantic writes it)."""
    schema = PipelineSpec.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    """The schema as the stable text that is written to disk."""
    return json.dumps(pipeline_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema file, or with `--check` report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = schema_text()
    current = args.output.read_text() if args.output.exists() else None
    if args.check:
        if current != text:
            sys.stderr.write(f"{args.output} is stale: run python -m {__spec__.name}\n")
            return 1
        return 0
    if current != text:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.output.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
