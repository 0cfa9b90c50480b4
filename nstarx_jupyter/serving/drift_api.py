"""The control API's drift routes: the one computation the notebook, the card and sidebar read.

`GET /deployments/{name}/drift?window=1h` tests the window's sampled live rows against the
deployment's reference (`serving.drift`, `monitoring.drift`); `PUT
/deployments/{name}/drift/reference` sets the reference (a sample of the training data, a
registered model's statistics, or `{"window": {"since_s": .., "until_s": ..}}`: past live
traffic); `DELETE` removes it; `GET` describes it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import Route

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.control import DriftReferenceView, DriftView
from nstarx_jupyter.security.home import parse_duration
from nstarx_jupyter.serving.control_http import PREFIX, control_endpoint, json_body, json_response
from nstarx_jupyter.serving.drift import DEFAULT_WINDOW_S, KEEP_S, DriftHub, Reference

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from starlette.requests import Request

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane

__all__ = ["DriftApi", "window_seconds"]


def window_seconds(raw: str | None) -> float:
    """`window` (`"1h"`, `"15m"`, `"900"`) in seconds, in (0, 6h]; 400 otherwise."""
    if raw is None or not raw.strip():
        return DEFAULT_WINDOW_S
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = parse_duration(text)
    if not 0 < seconds <= KEEP_S:
        raise InvalidInputError(f"window: '{raw}' must be in (0s, {KEEP_S // 3600}h]")
    return seconds


class DriftApi:
    """The drift routes of one server, over its `DriftHub`."""

    def __init__(
        self, dataplane: DataPlane, state_dir: Path, known: Callable[[str], object]
    ) -> None:
        self.dataplane = dataplane
        self.hub = DriftHub(state_dir)
        self._known = known
        """Raises `NotFoundError` for a name that is not a deployment."""

    def routes(self) -> list[Route]:
        """`/deployments/{name}/drift` and `/deployments/{name}/drift/reference`."""
        base = f"{PREFIX}/deployments/{{name}}/drift"
        return [
            Route(base, control_endpoint(self.dataplane, self._report, "manage", "drift"),
                  methods=["GET"]),
            Route(f"{base}/reference",
                  control_endpoint(self.dataplane, self._reference, "manage", "drift_reference"),
                  methods=["GET", "PUT", "DELETE"]),
        ]  # fmt: skip

    def report(self, name: str, window_s: float = DEFAULT_WINDOW_S) -> dict[str, Any]:
        """`name`'s drift over `window_s` (404 for an unknown deployment)."""
        self._known(name)
        return self.hub.report(name, window_s)

    async def _report(self, request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        window_s = window_seconds(request.query_params.get("window"))
        self._known(name)
        loop = asyncio.get_running_loop()  # tests over up to 43,200 rows: off the event loop
        report = await loop.run_in_executor(None, self.report, name, window_s)
        return json_response(DriftView.model_validate(report).model_dump(mode="json"))

    async def _reference(self, request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        self._known(name)
        monitor = self.hub.monitor(name)
        if request.method == "DELETE":
            monitor.set_reference(None)
            return Response(status_code=204)
        if request.method == "PUT":
            doc = await json_body(request)
            window = doc.get("window")
            loop = asyncio.get_running_loop()
            if window is not None:
                if not isinstance(window, dict):
                    raise InvalidInputError("window: {'since_s': S, 'until_s': U}")
                since, until = _number(window, "since_s"), _number(window, "until_s", 0.0)
                made = await loop.run_in_executor(None, monitor.reference_from_window, since,
                                                  until)  # fmt: skip
            else:
                made = Reference.parse(doc)
                await loop.run_in_executor(None, monitor.set_reference, made)
            self.hub.latest.pop(name, None)
            return _reference_response(made.describe())
        reference = monitor.reference
        return _reference_response(_NONE if reference is None else reference.describe())


_NONE = {"source": "none", "rows": 0, "features": [], "predictions": None, "created": None}
"""`GET .../drift/reference` of a deployment without one."""


def _reference_response(described: dict[str, Any]) -> Response:
    """The reference's description as `DriftReferenceView` (serialised as it always was)."""
    return json_response(DriftReferenceView.model_validate(described).model_dump(mode="json"))


def _number(doc: dict[str, Any], key: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"window.{key}: a number of seconds")
    return float(value)
