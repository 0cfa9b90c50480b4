"""Every route needs Jupyter's login, and a cookie login needs the XSRF token to change things."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
from tornado.web import RequestHandler

from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.labapi.routes import NAMESPACE, ROUTES
from tests.integration.labapi.conftest import server_config

pytestmark = [pytest.mark.integration]  # a real Jupyter server on a loopback port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from jupyter_server.serverapp import ServerApp

    from tests.integration.labapi.conftest import Api

_GROUP_VALUES = {r"([^/]+)": "iris", r"(\d+)": "1"}
_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def _paths(pattern: str) -> list[str]:
    """Concrete paths a route's pattern matches: each alternative, names filled in."""
    path = pattern
    for group, value in _GROUP_VALUES.items():
        path = path.replace(group, value)
    choice = re.search(r"\(([a-z|]+)\)", path)
    if choice is not None:
        return [path.replace(choice.group(0), word) for word in choice.group(1).split("|")]
    assert not re.search(r"[()\\]", path), f"a group of {pattern} has no test value"
    return [path]


def _calls() -> list[tuple[str, str]]:
    """(method, a concrete path) for every method of every route."""
    calls = []
    for pattern, handler in ROUTES:
        methods = [m for m in _METHODS if getattr(handler, m.lower()) is not
                   getattr(RequestHandler, m.lower())]  # fmt: skip
        assert methods, f"{handler.__name__} answers no method"
        calls += [(method, path) for path in _paths(pattern) for method in methods]
    return calls


CALLS = _calls()


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    """Jupyter itself lets requests through: only the handlers' `@authenticated` stops them."""
    return server_config(allow_unauthenticated_access=True)


@pytest.fixture(autouse=True)
def _no_server_left(nstarx_home: Path) -> Iterator[None]:
    """A handler that let a request through may have started a local server: stop it."""
    yield
    LocalBackend(nstarx_home / "server").stop()


def test_the_route_table_covers_the_api() -> None:
    assert len(CALLS) == 25
    assert ("GET", "contexts") in CALLS
    assert ("GET", "deployments/iris/trend") in CALLS
    assert ("PUT", "deployments/iris/traffic") in CALLS
    assert ("POST", "deployments/iris/rollback") in CALLS
    assert ("DELETE", "keys/iris") in CALLS


@pytest.mark.parametrize(("method", "path"), CALLS)
def test_a_request_without_the_token_is_refused(api: Api, method: str, path: str) -> None:
    # A valid XSRF pair, so the refusal can only come from the missing login.
    xsrf = {"Authorization": "", "Cookie": "_xsrf=abc", "X-XSRFToken": "abc"}
    body = "{}" if method in ("POST", "PUT", "PATCH") else None
    response = api.raw(method, path, body, headers=xsrf)
    assert response.code == 403, (method, path, response.body)


def _login_cookie(api: Api, serverapp: ServerApp, base_url: str) -> str:
    """The cookie Jupyter sets when a browser first comes with the token in the URL."""
    token = serverapp.identity_provider.token
    response = api.loop.run_until_complete(
        api.fetch("api", "status", params={"token": token}, raise_error=False)
    )
    assert response.code == 200
    cookie = response.headers.get_list("Set-Cookie")[0].split(";", 1)[0]
    assert cookie.startswith("username-")
    return cookie


def test_a_cookie_login_needs_the_xsrf_token_to_post(
    api: Api, jp_serverapp: ServerApp, jp_base_url: str
) -> None:
    cookie = _login_cookie(api, jp_serverapp, jp_base_url)
    read = api.raw("GET", "keys", headers={"Authorization": "", "Cookie": cookie})
    assert read.code == 200  # the cookie is a login
    forged = api.raw("POST", "keys", "{}", headers={"Authorization": "", "Cookie": cookie})
    assert forged.code == 403
    assert "_xsrf" in forged.body.decode()
    same_site = {"Authorization": "", "Cookie": f"{cookie}; _xsrf=abc", "X-XSRFToken": "abc"}
    body = '{"scopes": ["predict:iris"]}'
    assert api.raw("POST", "keys", body, headers=same_site).code == 201


def test_routes_live_under_the_namespace(api: Api, jp_base_url: str) -> None:
    assert NAMESPACE == "nstarx"
    assert api("GET", "server")["running"] is False
    elsewhere = api.loop.run_until_complete(api.fetch("server", raise_error=False))
    assert elsewhere.code == 404
