"""One table of error kind → HTTP status, read by the server, the lab API and the client."""

from __future__ import annotations

from nstarx_jupyter.client import core
from nstarx_jupyter.errors import HTTP_STATUS, ErrorKind
from nstarx_jupyter.labapi.handlers import STATUS as LAB_STATUS
from nstarx_jupyter.serving.http_errors import STATUS as SERVER_STATUS


def test_every_kind_has_one_status_and_every_reader_uses_the_table() -> None:
    assert set(HTTP_STATUS) == set(ErrorKind)
    assert len(set(HTTP_STATUS.values())) == len(HTTP_STATUS)  # a status names one kind
    assert SERVER_STATUS is HTTP_STATUS
    assert {k: s for k, s in LAB_STATUS.items() if k is not ErrorKind.UNAUTHENTICATED} == {
        k: s for k, s in HTTP_STATUS.items() if k is not ErrorKind.UNAUTHENTICATED
    }
    assert LAB_STATUS[ErrorKind.UNAUTHENTICATED] == 502  # the server refused the extension
    client_kinds = core._KINDS
    assert all(HTTP_STATUS[kind] == status for status, kind in client_kinds.items())
    assert set(client_kinds.values()) == set(ErrorKind) - {ErrorKind.INTERNAL}
