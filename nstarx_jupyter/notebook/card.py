"""`DeploymentCard`: a deployment shown as a widget card (status, endpoint, snippets, a test form).

Imported only when a card is displayed: it needs the `notebook` extra (anywidget) and the
JavaScript bundle that `pip install` builds into `static/` from `widgets/src/card.tsx`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from nstarx_jupyter.errors import NotFoundError, NstarxError, require
from nstarx_jupyter.notebook.bundles import bundle
from nstarx_jupyter.notebook.snippets import (
    curl_snippet,
    key_hint,
    python_snippet,
    registry_version,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import anywidget
    import traitlets

    from nstarx_jupyter.deployment.backend import Description
else:
    anywidget = require("anywidget", "notebook")
    traitlets = require("traitlets", "notebook")

__all__ = [
    "CardSource",
    "DeploymentCard",
    "curl_snippet",
    "key_hint",
    "python_snippet",
    "refresh_cards",
    "registry_version",
]

logger = logging.getLogger(__name__)
DELETED = "Deleted"
"""A card's status once its deployment is gone (deleted here, elsewhere, or by the sidebar)."""
_CARDS: weakref.WeakSet[DeploymentCard] = weakref.WeakSet()


def refresh_cards(name: str) -> None:
    """Read the status of every card of deployment `name` again (`Deployment.delete` calls it)."""
    for card in list(_CARDS):
        if card.name == name:
            card.refresh()


class CardSource(Protocol):
    """What a card shows: a deployment, or anything shaped like one."""

    @property
    def name(self) -> str:
        """The deployment's name."""

    @property
    def url(self) -> str:
        """The model endpoint (`…/v1/models/NAME`); records go to `url + "/predict"`."""

    @property
    def api_key(self) -> str | None:
        """The key shown once at creation, or None when it is not known here."""

    def describe(self) -> Description | dict[str, Any]:
        """The backend's description: name, revision, status, spec and maybe a reason."""

    def predict(self, data: Any) -> Any:
        """Send records and return the named outputs."""

    def example(self) -> dict[str, Any] | None:
        """One example record to prefill the test form."""


def _registration_problem(source: CardSource) -> str:
    """Why the registration behind a fitted model's deployment failed ("" unless it did).

    A `Deployment` holds it in `registration`; other sources have none.
    """
    registration = getattr(source, "registration", None)
    if not isinstance(registration, Future) or not registration.done():
        return ""
    if registration.cancelled() or (exc := registration.exception()) is None:
        return ""
    message = exc.message if isinstance(exc, NstarxError) else f"{type(exc).__name__}: {exc}"
    return f"registration failed: {message}; it serves its staged copy, not a registry version"


def _usage(source: CardSource) -> dict[str, Any]:
    """The source's usage figures (a `Deployment`'s), or {} when it has none or cannot say."""
    figures = getattr(source, "usage_figures", None)
    if not callable(figures):
        return {}
    try:
        return dict(figures())
    except NstarxError as exc:  # figures are a nicety: the card still shows the status
        logger.info("no usage figures for the card: %s", exc.message)
        return {}


def _drift(source: CardSource) -> dict[str, Any]:
    """The source's drift badge (a local `Deployment`'s), or {} when it has none or cannot say."""
    figures = getattr(source, "drift_figures", None)
    if not callable(figures):
        return {}
    try:
        return dict(figures())
    except NstarxError as exc:  # a nicety, as the usage line: the card still shows the status
        logger.info("no drift figures for the card: %s", exc.message)
        return {}


class DeploymentCard(anywidget.AnyWidget):
    """A deployment as a card: name, version, status, endpoint, snippets and a test form."""

    _esm, _css = bundle("card")

    name = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("Unknown").tag(sync=True)
    reason = traitlets.Unicode("").tag(sync=True)
    endpoint = traitlets.Unicode("").tag(sync=True)
    auth = traitlets.Bool(True).tag(sync=True)
    key_hint = traitlets.Unicode("").tag(sync=True)
    """The key's first characters (`nsx_1a2b3c4d…`). The key itself never enters the synced state,
    which `nbconvert --execute` and "save widget state" write into the .ipynb: the front end asks
    for it ("reveal") and gets it in a message that nothing stores."""
    curl = traitlets.Unicode("").tag(sync=True)
    python = traitlets.Unicode("").tag(sync=True)
    example = traitlets.Unicode("{}").tag(sync=True)
    result = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    elapsed_ms = traitlets.Float(None, allow_none=True).tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    usage = traitlets.Dict({}).tag(sync=True)
    """CPU seconds, memory and the last hour's cost per 1,000 predictions and per day, as the
    server computed them (`Deployment.usage_figures`); empty for a source without them."""
    drift = traitlets.Dict({}).tag(sync=True)
    """The last hour's drift (status, drifted features, score, rows) as the server computed it
    (`Deployment.drift_figures`, the sidebar's badge); empty for a source without it."""

    def __init__(self, source: CardSource, **kwargs: Any) -> None:
        self._source = source
        self._example = source.example() or {}
        self._worker: threading.Thread | None = None
        self._output_names: dict[str, str] | None = None
        self._served = False
        """Whether the deployment was seen once: a 404 then means it was deleted."""
        super().__init__(
            name=source.name,
            endpoint=source.url,
            example=json.dumps(self._example, indent=2),
            **self._status_traits(),
            **kwargs,
        )
        self.on_msg(self._on_message)
        _CARDS.add(self)

    def refresh(self) -> None:
        """Read the deployment's status (and version, auth, key, snippets) again."""
        traits = self._status_traits()
        with self.hold_sync():
            for key, value in traits.items():
                setattr(self, key, value)

    def _status_traits(self) -> dict[str, Any]:
        try:
            described = self._source.describe()
        except NotFoundError as exc:
            if not self._served:
                return {"status": "Unknown", "reason": exc.message}
            reason = f"the deployment '{self._source.name}' was deleted"
            return {"status": DELETED, "reason": reason, "usage": {}, "drift": {}}
        except NstarxError as exc:
            return {"status": "Unknown", "reason": exc.message}
        self._served = True
        # A deployment's typed description, or a pipeline's JSON: read both as JSON.
        info = described if isinstance(described, dict) else described.model_dump(mode="json")
        spec = info.get("spec") or {}
        self._output_names = spec.get("output_names") or None
        version = registry_version(spec.get("storage_uri"))
        revision = info.get("revision")
        auth = bool(spec.get("auth", True))
        key = self._source.api_key
        hint = key_hint(key)
        url = self._source.url  # a deployment's URL asks the server: once per refresh
        registration = _registration_problem(self._source)
        status = str(info.get("status", "Unknown"))
        # Why it is not Ready (a failed load, the failing condition on a cluster); Ready: no reason.
        reason = str(info.get("reason") or "") if status != "Ready" else ""
        return {
            "usage": _usage(self._source),
            "drift": _drift(self._source),
            "status": status,
            "reason": "; ".join(filter(None, [reason, registration])),
            "version": f"v{version}" if version else (f"rev {revision}" if revision else ""),
            "auth": auth,
            "key_hint": hint or "",
            "curl": curl_snippet(url, self._example, hint, auth),
            "python": python_snippet(
                url, self._example, hint, auth, output_names=spec.get("output_names")
            ),
        }

    def _reveal(self) -> None:
        """Send the key and the snippets that hold it, to this view only, in a message."""
        key = self._source.api_key
        auth = self.auth
        url = self._source.url
        self.send({
            "type": "secret", "api_key": key or "",
            "curl": curl_snippet(url, self._example, key, auth),
            "python": python_snippet(url, self._example, key, auth,
                                     output_names=self._output_names),
        })  # fmt: skip

    def _on_message(self, _widget: object, content: object, _buffers: object) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "refresh":
            self._in_background(self.refresh)
        elif content.get("type") == "reveal":
            self._reveal()
        elif content.get("type") == "predict" and not self.busy:
            self._start_predict(str(content.get("body", "")))

    def _start_predict(self, body: str) -> None:
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            with self.hold_sync():
                self.result, self.elapsed_ms = "", None
                self.error = (
                    f"The request is not valid JSON: {exc.msg} "
                    f"(line {exc.lineno}, column {exc.colno})"
                )
            return
        with self.hold_sync():
            self.busy, self.error = True, ""
        self._in_background(lambda: self._predict(data))

    def _predict(self, data: Any) -> None:
        start = time.perf_counter()
        try:
            answer = self._source.predict(data)
        except NstarxError as exc:
            result, error = "", exc.message
        else:
            result, error = json.dumps(answer, indent=2, default=str), ""
        elapsed_ms = round((time.perf_counter() - start) * 1000, 1)
        self.refresh()
        if error and self.status == DELETED:  # not the server's "model 'iris' not found"
            error = (f"The deployment '{self.name}' was deleted: deploy it again "
                     "(nx.deploy) to try it here.")  # fmt: skip
        with self.hold_sync():
            self.result, self.error = result, error
            self.elapsed_ms = elapsed_ms
            self.busy = False

    def _in_background(self, work: Callable[[], None]) -> None:
        """Run `work` off the kernel's thread; a failure ends up in the card, not a traceback."""

        def run() -> None:
            try:
                work()
            except Exception as exc:  # the task boundary: show it, and keep it in the log
                logger.exception("deployment card %s: %s failed", self.name, work)
                with self.hold_sync():
                    self.error, self.busy = f"{type(exc).__name__}: {exc}", False

        self._worker = threading.Thread(target=run, name=f"nstarx-card-{self.name}", daemon=True)
        self._worker.start()

    def __repr__(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"DeploymentCard({self.name}{version}, {self.status}, {self.endpoint})"
