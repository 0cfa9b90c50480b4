"""A real S3-compatible server on a loopback port for the upload tests: moto's server.

MinIO, the usual stand-in for S3, is neither in Debian nor on PyPI, and its Go build needs a
module proxy these machines cannot reach. moto's server (`moto_server`, Flask) answers S3's REST
API over HTTP with SigV4 auth, keeping objects in memory; our MinIO client talks to it exactly as
to AWS. It lives in its own virtualenv (`make install` makes it: its botocore pins
`python-dateutil<3`, which the `kubernetes` client >= 37 refuses), found at
`$NSTARX_S3_BIN/moto_server` (default ~/.cache/nstarx-s3/bin).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.kube import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["S3Server", "s3_server"]

START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible server and the environment a client needs for it."""

    endpoint: str

    @property
    def environ(self) -> dict[str, str]:
        """The variables KServe's S3 secrets and the AWS SDKs read (any credentials pass)."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": "nstarx-test",
                "AWS_SECRET_ACCESS_KEY": "nstarx-test-secret",
                "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip

    def client(self) -> Any:
        """A MinIO client for this server (what uploads.py builds from the same variables)."""
        from nstarx_jupyter.deployment.uploads import _client

        return _client(self.environ)

    def bucket(self, name: str) -> str:
        """Create the bucket `name` (if absent); returns `s3://name`."""
        client = self.client()
        if not client.bucket_exists(name):
            client.make_bucket(name)
        return f"s3://{name}"

    def download(self, uri: str, folder: Path) -> list[Path]:
        """What KServe's storage initializer does: every object under the prefix into `folder`."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        client = self.client()
        got = []
        for item in client.list_objects(bucket, prefix=prefix.rstrip("/") + "/", recursive=True):
            target = folder / item.object_name[len(prefix.rstrip("/")) + 1 :]
            client.fget_object(bucket, item.object_name, str(target))
            got.append(target)
        return got


def moto_server() -> Path | str:
    """The server's executable, or why it is missing."""
    folder = Path(os.environ.get("NSTARX_S3_BIN", "~/.cache/nstarx-s3/bin")).expanduser()
    found = folder / "moto_server"
    if not found.is_file():
        return (f"{found} is missing: `make install` makes it (python3 -m venv "
                f"{folder.parent} && {folder}/pip install 'moto[server]')")  # fmt: skip
    return found


@contextlib.contextmanager
def running_s3(log: Path) -> Iterator[S3Server]:
    """Start moto's S3 server on a free loopback port; stop it after."""
    found = moto_server()
    if isinstance(found, str):
        raise RuntimeError(found)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(found), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not answer in {START_TIMEOUT_S:g} s")
            time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3-compatible server for the session.

    Skips when moto's server is missing, or FAILS when `NSTARX_REQUIRE_S3=1` (CI).
    """
    found = moto_server()
    if isinstance(found, str):
        if os.environ.get("NSTARX_REQUIRE_S3") == "1":
            pytest.fail(found)
        pytest.skip(found)
    with running_s3(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server
