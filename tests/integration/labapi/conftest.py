"""A Jupyter server with the extension enabled (pytest-jupyter), and `api` to call its routes.

pytest-jupyter's fixtures are imported, its collection hooks are not: pytest-asyncio runs the
suite's coroutines, and these tests are plain functions that drive the server's loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    from tornado.httpclient import HTTPResponse

del pytest_pycollect_makeitem, pytest_pyfunc_call  # noqa: F821 - star-imported hooks


def server_config(*, allow_unauthenticated_access: bool) -> dict[str, Any]:
    """Jupyter's config: this extension on (terminals off: they warn about their websocket)."""
    return {"ServerApp": {
        "jpserver_extensions": {"nstarx_jupyter.labapi": True, "jupyter_server_terminals": False},
        "allow_unauthenticated_access": allow_unauthenticated_access,
    }}  # fmt: skip


@pytest.fixture  # type: ignore[no-redef]  # replaces the plugin's
def jp_server_config() -> dict[str, Any]:
    """Every request needs Jupyter's token; a handler without `@authenticated` fails to load."""
    return server_config(allow_unauthenticated_access=False)


@dataclass
class Api:
    """Calls `{base_url}nstarx/PATH` with the server's token and checks the status."""

    fetch: Callable[..., Awaitable[HTTPResponse]]
    loop: asyncio.AbstractEventLoop

    def raw(self, method: str, path: str, body: Any = None, **kwargs: Any) -> HTTPResponse:
        """The response, whatever its status."""
        if body is not None and not isinstance(body, str):
            body = json.dumps(body)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = ""
        # tornado's client makes its Future on the current loop: a test run earlier in this
        # worker may have closed it with asyncio.run(), which leaves no current loop behind
        asyncio.set_event_loop(self.loop)
        call = self.fetch("nstarx", *path.split("/"), method=method, body=body,
                          raise_error=False, request_timeout=120, **kwargs)  # fmt: skip
        return self.loop.run_until_complete(call)

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        status: int = 200,
        params: dict[str, str] | None = None,
    ) -> Any:
        """The JSON answer, once its status is `status`."""
        response = self.raw(method, path, body, params=params)
        assert response.code == status, (response.code, response.body)
        if not response.body:
            return None
        assert response.headers["Content-Type"].startswith("application/json")
        return json.loads(response.body)

    def error(self, method: str, path: str, body: Any = None, *, status: int) -> str:
        """The `error` message of a refused call."""
        answer = self(method, path, body, status=status)
        assert set(answer) == {"error"}
        return str(answer["error"])


@pytest.fixture
def api(
    jp_fetch: Callable[..., Awaitable[HTTPResponse]], jp_asyncio_loop: asyncio.AbstractEventLoop
) -> Api:
    """The extension's REST API on a fresh Jupyter server."""
    return Api(jp_fetch, jp_asyncio_loop)
