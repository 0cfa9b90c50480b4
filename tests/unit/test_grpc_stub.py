"""The build hook's gRPC stub calls the standard service every KServe and Triton server serves."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import hatch_build

if TYPE_CHECKING:
    from pathlib import Path


def test_the_generated_stub_calls_inference_grpc_inference_service(tmp_path: Path) -> None:
    proto = tmp_path / hatch_build.PROTO
    proto.parent.mkdir(parents=True)
    shutil.copy(hatch_build.ROOT / hatch_build.PROTO, proto)
    hatch_build.generate(tmp_path)
    stub = (tmp_path / hatch_build.STUB).read_text()
    assert "'/inference.GRPCInferenceService/ModelInfer'" in stub
    assert "nstarx.inference.GRPCInferenceService" not in stub
    # The messages keep their own package, out of the way of tritonclient's `inference.*`.
    messages = (tmp_path / hatch_build.PROTO.with_name("inference_pb2.py")).read_text()
    assert "nstarx.inference.ModelInferRequest" in messages
