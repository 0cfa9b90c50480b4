"""What both clients and their streams share: the endpoint, TLS, request bodies, answers, errors.

`ClientCore` shapes requests and reads answers; `InferenceError` is a server's refusal. The
clients (`inference`) and their WebSocket streams (`stream`) both build on this module.
"""

from __future__ import annotations

import functools
import random
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nstarx_jupyter import __version__
from nstarx_jupyter.errors import HTTP_STATUS, ErrorKind, InvalidInputError, NstarxError

if TYPE_CHECKING:
    import httpx

__all__ = ["ClientCore", "InferenceError", "error_from", "parse_endpoint", "tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process for every client.

    httpx builds a new one (loading the CA bundle: 20-40 ms) for each client it creates;
    a notebook makes a client per deployment handle, the local backend one per call.
    """
    return ssl.create_default_context()


def _server_check(verify: bool | str | Path) -> ssl.SSLContext | bool:
    """What httpx checks the server's certificate with: system CAs, one CA file, or nothing."""
    if verify is True:
        return tls_context()
    if verify is False:
        return False
    try:
        return ssl.create_default_context(cafile=Path(verify).expanduser())
    except OSError as exc:  # ssl.SSLError too: not a PEM certificate
        message = f"verify: cannot load CA certificates from {verify}: {exc}"
        raise InvalidInputError(message) from exc


_ENDPOINT = re.compile(
    r"^(?P<base>https?://[^/?#]+(?:/[^?#]*?)?)/v[12]/models/(?P<name>[^/:?#]+)"
    r"(?:/versions/(?P<version>[^/?#]+))?"
    r"(?::predict|/predict|/infer|/ready)?/?$"
)
_BARE = re.compile(r"^(?P<base>https?://[^/?#]+)/(?P<name>[a-z]([-a-z0-9]*[a-z0-9])?)/?$")
"""`http://HOST:PORT/NAME`: the model NAME of a server at the host's root (the seed's form)."""


def parse_endpoint(url: str) -> tuple[str, str, str | None]:
    """The server's base URL, the model's name and a pinned version, from any model URL.

    Takes what the product prints: the deployment's URL (`…/v1/models/NAME`), a pipeline's
    or the product endpoint (`…/predict`, `…/versions/V/predict`), KServe V1 (`…:predict`),
    V2 (`/v2/models/NAME[/versions/V][/infer]`), and `http://HOST:PORT/NAME`.

    Raises:
        InvalidInputError: `url` names no model.
    """
    match = _ENDPOINT.match(url) or _BARE.match(url)
    if match is None or match["name"] in ("v1", "v2", "nstarx", "metrics", "predict", "infer"):
        raise InvalidInputError(
            f"endpoint '{url}' should look like http://HOST:PORT/v1/models/NAME (or the "
            "/predict, :predict or /v2/models/NAME URL of a deployment)"
        )
    groups = match.groupdict()
    return match["base"], match["name"], groups.get("version")


_KINDS = {status: kind for kind, status in HTTP_STATUS.items() if kind is not ErrorKind.INTERNAL}
"""What a status says went wrong (`errors.HTTP_STATUS` read backwards; a 500 is not a kind)."""
_RETRY_STATUS = frozenset({429, 503})
_MAX_RETRY_AFTER_S = 30.0


class InferenceError(NstarxError):
    """The server refused or failed a call; `status` and `kind` say how, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = _KINDS.get(status, ErrorKind.INTERNAL)
        self.id: Any = None
        """A stream's error answer: the `id` of the message it answers, when it had one."""


class ClientCore:
    """What both clients share: endpoint, headers, body shaping, answers, retry timing."""

    def __init__(
        self,
        endpoint: str,
        api_key: str | None,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        verify: bool | str | Path = True,
    ) -> None:
        self.base_url, self.model, self.version = parse_endpoint(endpoint.strip())
        self.endpoint = f"{self.base_url}/v1/models/{self.model}"
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.headers = {"content-type": "application/json",
                        "user-agent": f"nstarx-jupyter/{__version__}"}  # fmt: skip
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"
        self.verify = _server_check(verify)

    def http_options(self) -> dict[str, Any]:
        """What the httpx client of either kind is built with (its transport aside)."""
        return {"timeout": self.timeout_s, "headers": self.headers, "verify": self.verify}

    @staticmethod
    def feedback_doc(request_id: str, value: Any, label: Any) -> dict[str, Any]:
        """The feedback endpoint's body."""
        doc: dict[str, Any] = {"request_id": request_id}
        if value is not None:
            doc["value"] = value
        if label is not None:
            doc["label"] = label
        return doc

    def predict_url(self, version: str | None) -> str:
        """The product endpoint, of one model version when `version` (or the URL) names one."""
        version = version or self.version
        if version is None:
            return f"{self.endpoint}/predict"
        return f"{self.endpoint}/versions/{version}/predict"

    def body(self, data: Any) -> tuple[bytes, bool]:
        """The product endpoint's body for `data`, and whether one record was sent."""
        if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
            data = data.to_dict(orient="records")
        elif hasattr(data, "tolist") and hasattr(data, "ndim"):  # a NumPy array
            if data.ndim == 1:
                return _dumps({"instances": [data.tolist()]}), True
            data = {"instances": data.tolist()}
            return _dumps(data), False
        if isinstance(data, dict):
            return _dumps(data), "instances" not in data or len(data) != 1
        if isinstance(data, list | tuple) and data:
            if all(isinstance(item, dict) for item in data):
                return _dumps(list(data)), False
            if all(isinstance(item, list | tuple) for item in data):
                return _dumps({"instances": [list(row) for row in data]}), False
        raise InvalidInputError(
            "predict takes a record (dict), a list of records, a pandas DataFrame, a NumPy "
            f"array or a list of rows, not {type(data).__name__}"
        )

    def answer(self, response: httpx.Response, single: bool) -> Any:
        """The decoded answer, or the server's error as an `InferenceError`."""
        if response.status_code >= 400:
            raise error_from(response)
        result = orjson.loads(response.content)
        if single and isinstance(result, list) and len(result) == 1:
            return result[0]
        return result

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before retry number `attempt` (from 1), or None to give up."""
        if attempt > self.retries:
            return None
        if response is not None:
            if response.status_code not in _RETRY_STATUS:
                return None
            after = response.headers.get("retry-after", "")
            if after.isdigit():
                return min(float(after), _MAX_RETRY_AFTER_S)
        base: float = self.backoff_s * 2.0 ** (attempt - 1)
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not secrecy


def _dumps(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise InvalidInputError(f"cannot send this data as JSON: {exc}") from exc


def error_from(response: httpx.Response) -> InferenceError:
    """The error a failed response stands for, with the server's `{"error": ...}` message."""
    return InferenceError(response.status_code, _message(response))


def _message(response: httpx.Response) -> str:
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text or response.reason_phrase
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return response.text
