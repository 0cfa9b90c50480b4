"""Build hooks: the gRPC stubs from `inference.proto`, the widgets' JavaScript (never committed)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).parent
PROTO = Path("nstarx_jupyter/protocol/grpc/inference.proto")
OUTPUTS = [
    PROTO.with_name(n) for n in ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")
]


def generate(root: Path = ROOT) -> None:
    """Run protoc on the standard proto, renamed into package `nstarx.inference`.

    Field numbers, not names, go on the wire, and the server registers the standard service
    path `/inference.GRPCInferenceService/...`. The rename keeps our messages out of the way of
    another copy of the same proto in one process (tritonclient registers `inference.*` too,
    and protobuf refuses duplicate symbols).
    """
    proto = root / PROTO
    if all(
        (root / out).exists() and (root / out).stat().st_mtime >= proto.stat().st_mtime
        for out in OUTPUTS
    ):
        return
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        renamed = Path(tmp) / PROTO
        renamed.parent.mkdir(parents=True)
        text = proto.read_text()
        if "package inference;" not in text:
            raise RuntimeError(f"{proto} does not declare package inference")
        renamed.write_text(text.replace("package inference;", "package nstarx.inference;"))
        args = ["protoc", f"-I{tmp}", f"-I{include}", f"--python_out={root}",
                f"--pyi_out={root}", f"--grpc_python_out={root}", str(renamed)]  # fmt: skip
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")


def build_widgets(target_name: str, version: str, **kwargs: Any) -> None:
    """hatch-jupyter-builder's `npm_builder`, but no npm needed when the bundle is up to date.

    `npm_builder` looks npm up before its own staleness check, so a wheel built from the sdist
    (which carries the bundle) would need npm for nothing.
    """
    from hatch_jupyter_builder.utils import is_stale, npm_builder

    if is_stale(kwargs["build_dir"], kwargs["source_dir"]):
        npm_builder(target_name, version, **kwargs)


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Generates the stubs before hatchling collects the files (wheel and editable)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        generate(Path(self.root))


if __name__ == "__main__":
    generate()
    sys.exit(0)
