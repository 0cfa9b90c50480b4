"""The build hook's gRPC stub calls the standard service every KServe and Triton server serves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import hatch_build

if TYPE_CHECKING:
    from pathlib import Path


def test_the_generated_stub_calls_inference_grpc_inference_service(tmp_path: Path) -> None:
    proto = tmp_path / hatch_build.PROTO
    proto.parent.mkdir(parents=True)
    shutil.copy(hatch_build.ROOT / hatch_build.PROTO, proto)
    # protoc runs in a child: grpc_tools' compiler crashed (SIGSEGV) in a process whose gRPC
    # server had run, as an earlier test's does
    code = "import sys, pathlib, hatch_build; hatch_build.generate(pathlib.Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True,
                   cwd=hatch_build.ROOT, timeout=120)  # fmt: skip
    stub = (tmp_path / hatch_build.STUB).read_text()
    assert "'/inference.GRPCInferenceService/ModelInfer'" in stub
    assert "nstarx.inference.GRPCInferenceService" not in stub
    # The messages keep their own package, out of the way of tritonclient's `inference.*`.
    messages = (tmp_path / hatch_build.PROTO.with_name("inference_pb2.py")).read_text()
    assert "nstarx.inference.ModelInferRequest" in messages
