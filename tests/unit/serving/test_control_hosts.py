"""The control API answers only `Host` values that name the server (DNS rebinding)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from nstarx_jupyter.security.hosts import AllowedHosts, host_name
from nstarx_jupyter.serving.app import ServingConfig, create_app

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "admin-token-for-the-test"  # noqa: S105 - a test server's token
ADMIN = {"authorization": f"Bearer {TOKEN}"}


async def _get(config: ServingConfig, host: str, path: str) -> httpx.Response:
    app = create_app([], config)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}",
                                     headers=ADMIN) as http:  # fmt: skip
            return await http.get(path)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost.evil.example",
                                  "127.0.0.1.nip.io"])  # fmt: skip
async def test_a_control_call_naming_another_host_is_403_and_audited(
    tmp_path: Path, host: str
) -> None:
    config = ServingConfig(state_dir=tmp_path / "state", admin_token=TOKEN, port=8080)
    refused = await _get(config, host, "/nstarx/v1/deployments")
    assert refused.status_code == 403
    assert "does not name this server" in refused.json()["error"]
    assert "--allow-host" in refused.json()["error"]
    audit = (await _get(config, "localhost", "/nstarx/v1/audit?status=403")).json()
    assert [(row["action"], row["status"]) for row in audit] == [("deployments", 403)]
    # The data plane takes any Host, as KServe's does.
    assert (await _get(config, host, "/v2/health/ready")).status_code == 200


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080",
                                  "LOCALHOST.", "proxy.example", "proxy.example:443"])  # fmt: skip
async def test_a_control_call_naming_this_server_or_an_allowed_proxy_is_answered(
    tmp_path: Path, host: str
) -> None:
    config = ServingConfig(state_dir=tmp_path / "state", admin_token=TOKEN,
                           allow_hosts=("proxy.example",))  # fmt: skip
    assert (await _get(config, host, "/nstarx/v1/deployments")).status_code == 200


def test_the_allowed_hosts_follow_the_bound_address() -> None:
    bound = AllowedHosts("10.1.2.3")
    assert bound.allows("10.1.2.3:8080")
    assert not bound.allows("10.9.9.9")  # bound to one address: only it
    everywhere = AllowedHosts("0.0.0.0")  # the wildcard, as `--host 0.0.0.0`
    assert everywhere.allows("10.9.9.9:8080")  # an address cannot be re-pointed by DNS
    assert everywhere.allows("[fe80::1]")
    assert not everywhere.allows("evil.example")
    assert AllowedHosts("127.0.0.1", ["*"]).allows("anything.example")
    assert AllowedHosts("127.0.0.1").allows(None)  # HTTP/1.0 without Host: not a browser
    assert [host_name(h) for h in ("[::1", "a:b", "[::1]x", "")] == [None, None, None, None]
