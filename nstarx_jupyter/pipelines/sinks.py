"""Where results go besides the response: a webhook or files, as typed configs (no machinery).

These models are shared by a deployment's `sinks` (`DeploymentSpec.sinks`, KServe's `logger`
among them) and the pipeline step `sink`; the server's `serving.sinks` runs them. They live in
this layer because the pipeline step and the deployment spec both read them; what a sink does
with a record (queue, batch, retry, dead-letter, rotate) is the server's business.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

__all__ = ["HIDDEN", "FileSink", "Sink", "SinkFeed", "SinkOpener", "WebhookSink", "keep_secrets",
           "labelled", "sink_label"]  # fmt: skip

HIDDEN = "***"
"""How a sink header's value is shown; sent back unchanged, it keeps the value the server has."""

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_HOP_BY_HOP = {"host", "content-length", "content-type", "transfer-encoding", "connection"}
"""Headers the sink sets itself; a spec may not override them."""


class _SinkBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    """Names the sink in metrics and files (default: `webhook`, `file`, `logger`, then `-2`...)."""
    queue_size: int = Field(default=10_000, ge=1, le=1_000_000)
    """Records waiting to be sent; past it new records are dropped (and counted), never waited
    for: the request path does not slow down because a receiver did."""
    batch_size: int = Field(default=100, ge=1, le=10_000)
    """Records per batch (a POST, a write)."""
    flush_s: float = Field(default=1.0, gt=0, le=300)
    """A batch that is not full leaves after this many seconds."""

    @field_validator("name")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                f"'{value}' is not a sink name: lower-case letters, digits and '-', starting "
                "with a letter (40 at most)"
            )
        return value


class WebhookSink(_SinkBase):
    """POST records as JSON to `url`: batches (`nstarx`) or KServe logger CloudEvents."""

    kind: Literal["webhook"] = "webhook"
    url: str
    """http:// or https:// only."""
    format: Literal["nstarx", "cloudevents"] = "nstarx"
    """`nstarx`: one JSON object `{"records": [...]}` per batch. `cloudevents`: what KServe's
    logger sends, one binary-mode CloudEvent per request and per response (`ce-type:
    org.kubeflow.serving.inference.request` / `.response`, `ce-id` the request id)."""
    mode: Literal["all", "request", "response"] = "all"
    """KServe's logger mode: which events a `cloudevents` sink sends (an `nstarx` batch holds
    inputs and outputs unless `request` or `response` leaves one out)."""
    headers: dict[str, str] = Field(default_factory=dict, repr=False, max_length=20)
    """Sent with every POST (an `Authorization` header, say). Secret: never logged, shown as
    `***` when the deployment is described, and never written into a KServe manifest."""
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Per attempt (connect, send and answer)."""
    max_attempts: int = Field(default=5, ge=1, le=20)
    """Attempts per batch on connection errors, 5xx and 429; then the dead-letter file."""
    deadline_s: float = Field(default=30.0, gt=0, le=600)
    """Longest time one batch is retried for, backoff included."""

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if len(value) > 2048:
            raise ValueError("the URL is longer than 2048 characters")
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("put credentials in headers, not in the URL (URLs get logged)")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            lower = key.lower()
            if not _HEADER.match(key) or lower in _HOP_BY_HOP or lower.startswith("ce-"):
                raise ValueError(f"'{key}' cannot be set as a sink header")
            if len(text) > 4096 or any(c in text for c in "\r\n\0"):
                raise ValueError(f"header '{key}': a value of 4096 characters at most, one line")
        return value


class FileSink(_SinkBase):
    """Append records to files: JSON lines, or Parquet files each written whole."""

    kind: Literal["file"] = "file"
    path: str = ""
    """A folder relative to the server's sink folder (`STATE/sinks`, or `nstarx serve
    --sink-dir`); empty: a folder named after the deployment. Outside that folder only for a
    `trusted` spec (the admin's word), as for model files."""
    format: Literal["jsonl", "parquet"] = "jsonl"
    """`parquet` needs pyarrow; one file per rotation, renamed into place when complete."""
    rotate_mb: float = Field(default=64.0, gt=0, le=4096)
    """JSONL: the current file is renamed (`records-STAMP.jsonl`) past this size. Parquet: a
    file is written when the rows kept reach about this size."""
    rotate_s: float = Field(default=60.0, gt=0, le=86_400)
    """Parquet: rows are written out at least this often."""

    @field_validator("path")
    @classmethod
    def _text(cls, value: str) -> str:
        if "\0" in value or len(value) > 1024:
            raise ValueError("a folder path of 1024 characters at most")
        return value


def _kind(value: Any) -> str:
    """The sink's kind; a dump without defaults leaves `kind` out, and only a webhook has a URL."""
    if isinstance(value, dict):
        return str(value.get("kind") or ("webhook" if "url" in value else "file"))
    return str(getattr(value, "kind", ""))


Sink = Annotated[
    Annotated[WebhookSink, Tag("webhook")] | Annotated[FileSink, Tag("file")],
    Discriminator(_kind),
]
"""One sink of a deployment or a pipeline step (`kind`: webhook or file)."""


def sink_label(sink: WebhookSink | FileSink, index: int, taken: set[str]) -> str:
    """The sink's name, or one made from its kind that `taken` does not hold yet."""
    if sink.name:
        return sink.name
    base: str = sink.kind
    label, n = base, 1
    while label in taken:
        n += 1
        label = f"{base}-{n}"
    return label


def labelled(sinks: list[WebhookSink | FileSink]) -> list[tuple[str, WebhookSink | FileSink]]:
    """Each sink with the name it goes by (`sink_label`)."""
    taken: set[str] = set()
    out = []
    for i, sink in enumerate(sinks):
        label = sink_label(sink, i, taken)
        taken.add(label)
        out.append((label, sink))
    return out


def keep_secrets(
    sinks: list[WebhookSink | FileSink], before: list[WebhookSink | FileSink]
) -> list[WebhookSink | FileSink]:
    """`sinks` with each header sent back as `HIDDEN` given the value it had in `before`.

    A client that read a deployment (headers hidden) and sends it back changed elsewhere (a
    canary's share, say) keeps its secrets without ever seeing them.

    Raises:
        ValueError: a hidden header the same sink did not have before.
    """
    old = dict(labelled(before))
    out: list[WebhookSink | FileSink] = []
    for label, sink in labelled(sinks):
        if isinstance(sink, WebhookSink) and HIDDEN in sink.headers.values():
            had = old.get(label)
            kept = had.headers if isinstance(had, WebhookSink) else {}
            headers = {k: kept.get(k, v) if v == HIDDEN else v for k, v in sink.headers.items()}
            missing = [k for k, v in headers.items() if v == HIDDEN]
            if missing:
                raise ValueError(f"sink '{label}': header '{missing[0]}' is '{HIDDEN}', and the "
                                 "deployment has no value for it to keep")  # fmt: skip
            sink = sink.model_copy(update={"headers": headers})
        out.append(sink)
    return out


class SinkFeed(Protocol):
    """An open sink: `offer` queues one record and never blocks (False: dropped, queue full)."""

    def offer_row(self, row: dict[str, Any], request_id: str) -> bool:
        """Queue a pipeline record (its public fields) for the sink."""
        ...


class SinkOpener(Protocol):
    """How a pipeline step reaches the server's sinks (`Context.sinks`)."""

    def open(self, node_id: str, sink: WebhookSink | FileSink) -> SinkFeed:
        """The sink of one step, checked against what the server's owner allows.

        Raises:
            ForbiddenError: a folder outside the allowed root.
        """
        ...
