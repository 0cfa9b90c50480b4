"""Streams over a WebSocket: what `InferenceClient.stream` and its async twin run.

Each item goes out as one message to `/v2/models/NAME/stream` (a record, a list of records, a
DataFrame, an array of rows, or a V2 request dict); answers come back in the items' order. At
most `window` items are unanswered at once: the sender waits for answers beyond that, so a
long or endless iterable streams in constant memory on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from nstarx_jupyter.client.core import ClientCore, InferenceError
from nstarx_jupyter.errors import InvalidInputError, NstarxError

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

    from websockets.asyncio.client import ClientConnection as AsyncConnection
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import ClientConnection


__all__ = ["ERRORS", "check_options", "stream_async", "stream_sync", "stream_url"]

ERRORS = ("raise", "yield")
"""What a stream does with an item the server could not answer: raise its `InferenceError`
(the stream ends) or yield the error in the answer's place (the stream goes on)."""
_CLOSE_STATUS = {1008: 403, 1009: 413, 1011: 500, 1013: 503}
"""The HTTP status a close code stands for (the rest: 503, the server went away)."""
_ERROR_KEYS = frozenset({"error", "status", "id"})


def stream_url(core: ClientCore) -> str:
    """The stream endpoint of the client's model or pipeline (`ws://` or `wss://`)."""
    base = core.base_url
    scheme = "wss" if base.startswith("https:") else "ws"
    return f"{scheme}:{base.split(':', 1)[1]}/v2/models/{core.model}/stream"


def check_options(window: int, errors: str) -> None:
    """Refuse a window under 1 or an unknown `errors` choice before anything connects."""
    if not isinstance(window, int) or window < 1:
        raise InvalidInputError(f"window: 1 message or more, not {window!r}")
    if errors not in ERRORS:
        raise InvalidInputError(f"errors: one of {', '.join(ERRORS)}, not {errors!r}")


def _options(core: ClientCore, url: str, window: int) -> dict[str, Any]:
    headers = {key: value for key, value in core.headers.items() if key != "content-type"}
    options: dict[str, Any] = {
        "additional_headers": headers, "user_agent_header": None, "compression": None,
        "open_timeout": core.timeout_s, "max_size": None, "max_queue": max(window, 16),
    }  # fmt: skip
    if url.startswith("wss:"):
        context = core.verify
        if not isinstance(context, ssl.SSLContext):  # verify=False: no check (insecure)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        options["ssl"] = context
    return options


def _message(core: ClientCore, item: Any) -> tuple[str, bool]:
    """An item's message and whether it was one record (its answer is then one record)."""
    if isinstance(item, dict) and isinstance(item.get("inputs"), list):  # a V2 request
        try:
            return orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY).decode(), False
        except TypeError as exc:
            raise InvalidInputError(f"cannot send this data as JSON: {exc}") from exc
    body, single = core.body(item)
    return body.decode(), single


def _answer(raw: str | bytes, single: bool, errors: str) -> Any:
    doc = orjson.loads(raw)
    if isinstance(doc, dict) and "error" in doc and "status" in doc and doc.keys() <= _ERROR_KEYS:
        error = InferenceError(int(doc["status"]), str(doc["error"]))
        error.id = doc.get("id")
        if errors == "raise":
            raise error
        return error
    if single and isinstance(doc, list) and len(doc) == 1:
        return doc[0]
    return doc


def _closed(exc: ConnectionClosed, pending: int) -> NstarxError:
    close = exc.rcvd
    code = close.code if close is not None else 1006
    reason = f": {close.reason}" if close is not None and close.reason else ""
    return InferenceError(
        _CLOSE_STATUS.get(code, 503),
        f"the server closed the stream ({code}{reason}) with {pending} answers to come",
    )


def _refused(exc: InvalidStatus, url: str) -> NstarxError:
    response = exc.response
    message = f"{url} refused the stream"
    with contextlib.suppress(ValueError, TypeError):
        doc = orjson.loads(response.body or b"")
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            message = doc["error"]
    return InferenceError(response.status_code, message)


def _unreachable(exc: Exception, url: str) -> NstarxError:
    return InferenceError(503, f"cannot reach {url}: {exc}")


def _open_sync(core: ClientCore, url: str, window: int) -> ClientConnection:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    try:
        connection: ClientConnection = connect(url, **_options(core, url, window))
    except InvalidStatus as exc:
        raise _refused(exc, url) from None
    except (OSError, TimeoutError) as exc:
        raise _unreachable(exc, url) from exc
    return connection


def stream_sync(core: ClientCore, items: Iterable[Any], window: int, errors: str) -> Iterator[Any]:
    """Send each item, yield each answer in order, at most `window` unanswered."""
    from websockets.exceptions import ConnectionClosed

    url = stream_url(core)
    ws = _open_sync(core, url, window)
    pending: deque[bool | NstarxError] = deque()  # per item: one-record flag or its error
    source = iter(items)
    with ws:
        try:
            while _send_more(core, ws, source, pending, window) or pending:
                head = pending.popleft()
                if not isinstance(head, NstarxError):
                    yield _answer(ws.recv(), head, errors)
                elif errors == "raise":
                    raise head
                else:
                    yield head
        except ConnectionClosed as exc:
            raise _closed(exc, len(pending) + 1) from None


def _send_more(
    core: ClientCore,
    ws: ClientConnection,
    source: Iterator[Any],
    pending: deque[bool | NstarxError],
    window: int,
) -> bool:
    """Send items until `window` are unanswered; False once the items have run out."""
    while len(pending) < window:
        try:
            item = next(source)
        except StopIteration:
            return False
        try:
            text, single = _message(core, item)
        except NstarxError as exc:  # this item only: raised or yielded in its turn
            pending.append(exc)
            continue
        ws.send(text)
        pending.append(single)
    return True


class _Failed:
    """The async sender's end by an error, passed to the reader in its turn."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


async def stream_async(
    core: ClientCore, items: AsyncIterable[Any] | Iterable[Any], window: int, errors: str
) -> AsyncIterator[Any]:
    """Send each item from a task, yield each answer in order, at most `window` unanswered."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    url = stream_url(core)
    try:
        ws = await connect(url, **_options(core, url, window))
    except InvalidStatus as exc:
        raise _refused(exc, url) from None
    except (OSError, TimeoutError) as exc:
        raise _unreachable(exc, url) from exc
    turns: asyncio.Queue[Any] = asyncio.Queue()  # per item: one-record flag or error, in order
    slots = asyncio.Semaphore(window)
    sender = asyncio.create_task(_send_all(core, ws, items, turns, slots))
    async with ws:
        try:
            while (turn := await turns.get()) is not _END:
                if isinstance(turn, _Failed):
                    raise turn.exc
                raw = None if isinstance(turn, NstarxError) else await ws.recv()
                slots.release()
                if raw is not None:
                    yield _answer(raw, turn, errors)
                elif errors == "raise":
                    raise turn
                else:
                    yield turn
        except ConnectionClosed as exc:
            raise _closed(exc, turns.qsize() + 1) from None
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


async def _send_all(
    core: ClientCore,
    ws: AsyncConnection,
    items: AsyncIterable[Any] | Iterable[Any],
    turns: asyncio.Queue[Any],
    slots: asyncio.Semaphore,
) -> None:
    """Send every item, each once a slot is free; its turn goes to the reader before it."""
    try:
        async for item in _each(items):
            await slots.acquire()
            try:
                text, single = _message(core, item)
            except NstarxError as exc:
                turns.put_nowait(exc)
                continue
            turns.put_nowait(single)
            await ws.send(text)
    except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
        turns.put_nowait(_Failed(exc))
        return
    turns.put_nowait(_END)


async def _each(items: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
