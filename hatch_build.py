"""Build hooks: the gRPC stubs from `inference.proto`, the front ends' JavaScript (never in git)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # `python hatch_build.py` in a dev venv: hatchling lives in pip's build env
    BuildHookInterface = object

ROOT = Path(__file__).parent
PROTO = Path("nstarx_jupyter/protocol/grpc/inference.proto")
OUTPUTS = [
    PROTO.with_name(n) for n in ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")
]
STUB = OUTPUTS[2]
STANDARD_SERVICE = "inference.GRPCInferenceService"
"""The service every KServe and Triton server serves, which the generated stub must call."""


def generate(root: Path = ROOT) -> None:
    """Run protoc on the standard proto, renamed into package `nstarx.inference`.

    Field numbers, not names, go on the wire, and the server registers the standard service
    path `/inference.GRPCInferenceService/...`. The rename keeps our messages out of the way of
    another copy of the same proto in one process (tritonclient registers `inference.*` too,
    and protobuf refuses duplicate symbols). The generated stub would call the renamed service
    (`/nstarx.inference.GRPCInferenceService/...`, which no server serves), so its method paths
    are put back to the standard service after protoc.
    """
    proto = root / PROTO
    sources = (proto.stat().st_mtime, Path(__file__).stat().st_mtime)
    if all(
        (root / out).exists() and (root / out).stat().st_mtime >= max(sources) for out in OUTPUTS
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
    stub = root / STUB
    text = stub.read_text()
    if f"'/nstarx.{STANDARD_SERVICE}/ModelInfer'" not in text:
        raise RuntimeError(f"{stub} does not call nstarx.{STANDARD_SERVICE} as expected")
    stub.write_text(text.replace(f"nstarx.{STANDARD_SERVICE}", STANDARD_SERVICE))


# What the npm build reads, and what it writes into the package (both front ends at once).
FRONTEND_SOURCES = ["package.json", "widgets/src", "widgets/build.mjs", "widgets/package.json",
                    "labextension/src", "labextension/style", "labextension/build.mjs",
                    "labextension/package.json", "install.json"]  # fmt: skip
FRONTEND_OUTPUTS = ["nstarx_jupyter/notebook/static/card.js",
                    "nstarx_jupyter/notebook/static/flow.js",
                    "nstarx_jupyter/labextension/package.json",
                    "nstarx_jupyter/labextension/static/style.js",
                    "nstarx_jupyter/labextension/install.json"]  # fmt: skip


def _newest(path: Path) -> float:
    if path.is_file():
        return path.stat().st_mtime
    return max((f.stat().st_mtime for f in path.rglob("*") if f.is_file()), default=0.0)


def frontend_stale(root: Path = ROOT) -> bool:
    """Whether a built file is missing or older than a source of either front end.

    The widget bundle compiles the canvas from labextension/src/flow, so one check covers both.
    A source tree that is absent (an sdist carries the built files, not the sources) is skipped.
    """
    outputs = [root / name for name in FRONTEND_OUTPUTS]
    if not all(out.exists() for out in outputs):
        return True
    built = min(out.stat().st_mtime for out in outputs)
    return any(_newest(root / name) > built for name in FRONTEND_SOURCES if (root / name).exists())


def build_frontends(target_name: str, version: str, **kwargs: Any) -> None:
    """hatch-jupyter-builder's `npm_builder`, but no npm needed when the build is up to date.

    `npm_builder` looks npm up before its own staleness check, so a wheel built from the sdist
    (which carries the built files) would need npm for nothing.
    """
    from hatch_jupyter_builder.utils import npm_builder

    if frontend_stale(Path(kwargs.get("path", ROOT))):
        npm_builder(target_name, version, **kwargs)


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Generates the stubs before hatchling collects the files (wheel and editable)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        generate(Path(self.root))


if __name__ == "__main__":
    generate()
    sys.exit(0)
