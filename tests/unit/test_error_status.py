"""One table of error kind → status per transport, next to the kinds, read by every transport."""

from __future__ import annotations

import grpc
import orjson
import pytest
from starlette.requests import Request

from nstarx_jupyter.client import core
from nstarx_jupyter.errors import GRPC_CODE, HTTP_STATUS, ErrorKind, NstarxError
from nstarx_jupyter.labapi.handlers import STATUS as LAB_STATUS
from nstarx_jupyter.serving.grpc import GRPC_STATUS
from nstarx_jupyter.serving.http_errors import nstarx_error_response


def error_of(kind: ErrorKind) -> NstarxError:
    error = NstarxError(f"a {kind.name}")
    error.kind = kind
    return error


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_each_kind_goes_out_with_its_status_and_the_client_reads_the_kind_back(
    kind: ErrorKind,
) -> None:
    request = Request({"type": "http", "method": "POST", "path": "/v2/models/m/infer",
                       "headers": [], "query_string": b""})  # fmt: skip
    response = nstarx_error_response(request, error_of(kind))
    assert response.status_code == HTTP_STATUS[kind]
    assert orjson.loads(bytes(response.body)) == {"error": f"a {kind.name}"}
    seen = core.InferenceError(response.status_code, f"a {kind.name}")
    assert seen.kind is kind
    assert seen.status == HTTP_STATUS[kind]


def test_every_kind_has_one_status_and_every_reader_uses_the_table() -> None:
    assert set(HTTP_STATUS) == set(ErrorKind)
    assert len(set(HTTP_STATUS.values())) == len(HTTP_STATUS)  # a status names one kind
    assert {k: s for k, s in LAB_STATUS.items() if k is not ErrorKind.UNAUTHENTICATED} == {
        k: s for k, s in HTTP_STATUS.items() if k is not ErrorKind.UNAUTHENTICATED
    }
    assert LAB_STATUS[ErrorKind.UNAUTHENTICATED] == 502  # the server refused the extension
    client_kinds = core._KINDS
    assert all(HTTP_STATUS[kind] == status for status, kind in client_kinds.items())
    assert set(client_kinds.values()) == set(ErrorKind) - {ErrorKind.INTERNAL}


def test_every_kind_has_a_grpc_code_that_grpc_knows() -> None:
    assert set(GRPC_CODE) == set(ErrorKind)
    assert set(GRPC_STATUS) == set(ErrorKind)
    assert all(GRPC_STATUS[kind].name == code for kind, code in GRPC_CODE.items())
    assert grpc.StatusCode.OK not in GRPC_STATUS.values()  # an error is never answered as OK


def test_grpc_codes_agree_with_the_http_statuses() -> None:
    # The same kind is a client error (4xx) over HTTP and a caller's code over gRPC, and so on.
    expected = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        413: "RESOURCE_EXHAUSTED",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }
    assert {HTTP_STATUS[kind]: code for kind, code in GRPC_CODE.items()} == expected
