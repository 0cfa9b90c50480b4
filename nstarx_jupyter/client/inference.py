"""`InferenceClient` and `AsyncInferenceClient`: call a deployment's product endpoint.

Both share one core that shapes requests and reads answers; only the I/O differs. Connections are
pooled (httpx), calls that fail with 503 or cannot connect are retried with exponential backoff
(honouring `Retry-After`), and server errors come back as typed errors carrying the server's
message. The client needs neither NumPy nor pandas: it recognises them by their methods.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from nstarx_jupyter.client.core import (
    ClientCore,
    InferenceError,
    error_from,
    parse_endpoint,
    tls_context,
)
from nstarx_jupyter.client.stream import check_options, stream_async, stream_sync

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
    from pathlib import Path
    from types import TracebackType

__all__ = [
    "AsyncInferenceClient",
    "InferenceClient",
    "InferenceError",
    "error_from",
    "parse_endpoint",
    "tls_context",
]


class InferenceClient:
    """Call a deployment: `InferenceClient(endpoint=URL, api_key=KEY).predict({...})`.

    `predict` takes a record and returns a dict of named outputs (`prediction`, `confidence`,
    `probabilities`...), or takes several (a list of records, a DataFrame, a 2-D array in the
    model's feature order) and returns a list of them.

    An `https` endpoint's certificate is checked against the system's CAs; `verify` names a CA
    file to trust instead (the `cert.pem` of `nstarx tls-cert` for a local server). False skips
    the check: insecure, anyone on the network path can then read and alter the calls.
    """

    def __init__(
        self,
        endpoint: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        verify: bool | str | Path = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._core = ClientCore(endpoint, api_key, timeout_s, retries, backoff_s, verify)
        self._http = httpx.Client(transport=transport, **self._core.http_options())

    @property
    def endpoint(self) -> str:
        """The model's URL this client calls."""
        return self._core.endpoint

    def predict(
        self, data: Any, *, version: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Send `data` to the product endpoint and return the named outputs.

        `version` asks one model version (a revision, a staged model, a variant) instead of
        the deployment's routing; `headers` go with the request (e.g. a routing key).
        """
        body, single = self._core.body(data)
        url = self._core.predict_url(version)
        return self._core.answer(self._post(url, body, headers), single)

    def stream(
        self, items: Iterable[Any], *, window: int = 64, errors: str = "raise"
    ) -> Iterator[Any]:
        """Send each item over one WebSocket and yield the answers in order, as they come.

        An item is what `predict` takes (a record, a list of records, a DataFrame...) or a V2
        request dict; `{"id": ID, "records": ...}` is answered as `{"id": ID, "records": ...}`.
        At most `window` items are unanswered at once. An item the server cannot answer raises
        its `InferenceError` (`errors="raise"`) or is yielded as that error (`errors="yield"`,
        the stream goes on). The model's batching merges the items in flight.
        """
        check_options(window, errors)
        return stream_sync(self._core, items, window, errors)

    def feedback(self, request_id: str, value: Any = None, *, label: Any = None) -> Any:
        """Record the outcome of a past prediction (its `x-request-id` response header).

        `value` is a reward (a number, or True/False for a conversion); `label` is the ground
        truth, scored against what the model predicted. Either one.
        """
        body = orjson.dumps(self._core.feedback_doc(request_id, value, label))
        return self._core.answer(self._post(f"{self._core.endpoint}/feedback", body), True)

    def ready(self) -> bool:
        """Whether the model answers its V2 ready check."""
        url = f"{self._core.base_url}/v2/models/{self._core.model}/ready"
        try:
            return self._http.get(url).status_code == 200
        except httpx.TransportError:
            return False

    def _post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.post(url, content=body, headers=headers)
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                wait = self._core.delay(attempt, None)
                if wait is None:
                    raise InferenceError(503, f"cannot reach {url}: {exc}") from exc
            else:
                wait = self._core.delay(attempt, response)
                if wait is None:
                    return response
            time.sleep(wait)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InferenceClient(endpoint={self._core.endpoint!r})"


class AsyncInferenceClient:
    """The async twin of `InferenceClient`, on the same core: `await client.predict({...})`."""

    def __init__(
        self,
        endpoint: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        verify: bool | str | Path = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._core = ClientCore(endpoint, api_key, timeout_s, retries, backoff_s, verify)
        self._http = httpx.AsyncClient(transport=transport, **self._core.http_options())

    @property
    def endpoint(self) -> str:
        """The model's URL this client calls."""
        return self._core.endpoint

    async def predict(
        self, data: Any, *, version: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Send `data` to the product endpoint and return the named outputs (see the sync one)."""
        body, single = self._core.body(data)
        response = await self._post(self._core.predict_url(version), body, headers)
        return self._core.answer(response, single)

    def stream(
        self,
        items: AsyncIterable[Any] | Iterable[Any],
        *,
        window: int = 64,
        errors: str = "raise",
    ) -> AsyncIterator[Any]:
        """`async for answer in client.stream(items)`: see `InferenceClient.stream`.

        `items` may be an async iterable; it is read by a task of its own while answers come.
        """
        check_options(window, errors)
        return stream_async(self._core, items, window, errors)

    async def feedback(self, request_id: str, value: Any = None, *, label: Any = None) -> Any:
        """Record the outcome of a past prediction (see `InferenceClient.feedback`)."""
        body = orjson.dumps(self._core.feedback_doc(request_id, value, label))
        response = await self._post(f"{self._core.endpoint}/feedback", body)
        return self._core.answer(response, True)

    async def ready(self) -> bool:
        """Whether the model answers its V2 ready check."""
        url = f"{self._core.base_url}/v2/models/{self._core.model}/ready"
        try:
            return (await self._http.get(url)).status_code == 200
        except httpx.TransportError:
            return False

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.post(url, content=body, headers=headers)
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                wait = self._core.delay(attempt, None)
                if wait is None:
                    raise InferenceError(503, f"cannot reach {url}: {exc}") from exc
            else:
                wait = self._core.delay(attempt, response)
                if wait is None:
                    return response
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncInferenceClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
