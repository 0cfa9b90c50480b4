"""The trust model on a real `nstarx serve`: the `manage:` key exploit of issue 17 and the flags.

`--allow-path` and `--allow-runtime` are the owner's words on the command line; over the control
API a key gets nothing more.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import httpx
import joblib
import pytest

from nstarx_jupyter.security.guard import admin_token
from nstarx_jupyter.security.home import key_store, security_dir
from tests.integration.server import start_server

if TYPE_CHECKING:
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.integration


class _Pwn:
    """Unpickles as `os.mkdir(marker)`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_the_manage_key_exploit_answers_403_and_runs_nothing(
    nstarx_home: Path, tmp_path: Path
) -> None:
    """Issue 17: `PUT /deployments/evil {"storage_uri": "/tmp/evil.joblib"}` with `manage:evil`."""
    outside = tmp_path / "tmp"
    outside.mkdir()
    marker = tmp_path / "pwned"
    joblib.dump(_Pwn(marker), outside / "evil.joblib")
    server = start_server("--state-dir", str(nstarx_home / "server"), auth=True)
    try:
        manage = _headers(key_store().create("evil", ["manage:evil"])[1])
        url = f"{server.url}/nstarx/v1/deployments/evil"
        with httpx.Client(timeout=60) as http:
            found = http.put(
                url, headers=manage, json={"storage_uri": str(outside / "evil.joblib")}
            )
            missing = http.put(url, headers=manage, json={"storage_uri": str(outside / "x.joblib")})
    finally:
        server.stop()
    assert not marker.exists()
    assert (found.status_code, missing.status_code) == (403, 403)
    assert found.json()["error"].replace("evil", "x") == missing.json()["error"]


def test_allowed_folders_and_runtimes_are_the_owners_flags(
    nstarx_home: Path, tmp_path: Path, iris_model: LogisticRegression
) -> None:
    allowed = tmp_path / "models"
    allowed.mkdir()
    joblib.dump(iris_model, allowed / "iris.joblib")
    marker = tmp_path / "pwned"
    joblib.dump(_Pwn(marker), allowed / "evil.joblib")
    from tests.support.runtimes import SlowRuntime

    custom = f"{SlowRuntime.__module__}.{SlowRuntime.__name__}"
    server = start_server("--state-dir", str(nstarx_home / "server"), "--allow-path",
                          str(allowed), "--allow-runtime", custom, auth=True)  # fmt: skip
    try:
        manage = _headers(key_store().create("evil", ["manage:*"])[1])
        admin = _headers(admin_token(security_dir()))
        url = f"{server.url}/nstarx/v1/deployments"
        with httpx.Client(timeout=60) as http:
            inside = http.put(f"{url}/evil", headers=manage,
                              json={"storage_uri": str(allowed / "evil.joblib")})  # fmt: skip
            runtime = http.put(f"{url}/evil", headers=manage,
                               json={"storage_uri": str(allowed), "runtime": "this.X"})  # fmt: skip
            vouched = http.put(f"{url}/iris", headers=admin,
                               json={"storage_uri": str(allowed / "iris.joblib"),
                                     "trusted": True})  # fmt: skip
            custom_runtime = http.put(
                f"{url}/slow", headers=manage, json={"storage_uri": str(allowed), "runtime": custom}
            )
    finally:
        server.stop()
    assert inside.status_code == 403
    assert "runs code when it loads" in inside.json()["error"]
    assert runtime.status_code == 403
    assert not marker.exists()
    assert vouched.status_code == 201, vouched.text
    assert custom_runtime.status_code == 201, custom_runtime.text
    assert not any("Traceback" in line for line in server.output)
