"""A real server audits refused gRPC calls (403, 429) with the id of the key it refused."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from nstarx_jupyter.protocol.grpc import inference_pb2 as pb
from nstarx_jupyter.security.audit_log import read_audit
from nstarx_jupyter.security.home import audit_dir, key_store
from nstarx_jupyter.serving.grpc import _RPCS
from tests.integration.server import start_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nstarx_jupyter.security.audit_log import AuditRow
    from tests.integration.server import ServerProcess

pytestmark = pytest.mark.integration

INFER = pb.ModelInferRequest(model_name="iris", inputs=[pb.ModelInferRequest.InferInputTensor(
    name="input-0", datatype="FP64", shape=[1, 4],
    contents=pb.InferTensorContents(fp64_contents=[5.1, 3.5, 1.4, 0.2]))])  # fmt: skip


@pytest.fixture
def server(nstarx_home: Path, named_iris: Path) -> Iterator[ServerProcess]:
    # iris is served: a key scoped to another model hears 403 for it (404 for unknown names)
    process = start_server("--state-dir", str(nstarx_home / "server"), "--grpc-port", "0",
                           "--model", f"iris={named_iris}", auth=True)  # fmt: skip
    yield process
    process.stop()


def infer(channel: grpc.Channel, key: str) -> grpc.StatusCode:
    request, response = _RPCS["ModelInfer"]
    call: Any = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                    request_serializer=request.SerializeToString,
                                    response_deserializer=response.FromString)  # fmt: skip
    try:
        call(INFER, metadata=(("authorization", f"Bearer {key}"),), timeout=30)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def grpc_records(status: int, count: int) -> list[AuditRow]:
    """The gRPC records with `status`, once `count` of them are written (within 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        found = [row for row in read_audit(audit_dir(), status=status)
                 if row["transport"] == "grpc"]  # fmt: skip
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_refused_grpc_calls_are_audited_with_the_key_id(server: ServerProcess) -> None:
    keys = key_store()
    other, other_secret = keys.create("other-app", ["predict:other"])
    slow, slow_secret = keys.create("slow-app", ["predict:*"], rate_limit=0.001, burst=1)
    assert server.grpc is not None
    with grpc.insecure_channel(server.grpc) as channel:
        assert infer(channel, other_secret) == grpc.StatusCode.PERMISSION_DENIED
        assert infer(channel, slow_secret) == grpc.StatusCode.OK  # spends the one token
        assert infer(channel, slow_secret) == grpc.StatusCode.RESOURCE_EXHAUSTED
    (forbidden,) = grpc_records(403, 1)
    (limited,) = grpc_records(429, 1)
    assert (forbidden["key"], forbidden["principal"]) == (other.id, "other-app")
    assert (limited["key"], limited["principal"]) == (slow.id, "slow-app")
