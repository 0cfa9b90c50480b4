"""The `sink` step: sends the records it gets to a webhook or files, and passes them on.

The records are queued for the server's sink (`serving.sinks`: batched, retried, dead-lettered,
rotated) and returned unchanged, so the step can sit anywhere after the input: before the
output formatter to export what the pipeline answered, or after a model to keep its scores.
Queueing never waits: a full queue drops (and counts) records rather than slow the request.
Outside a server (a test run in the kernel) there are no sinks: the step only passes records on.
"""

from __future__ import annotations

import logging

from pydantic import Field

from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    Port,
    register_component,
)
from nstarx_jupyter.pipelines.sinks import Sink, SinkFeed  # noqa: TC001 - pydantic reads Sink

__all__ = ["SinkConfig", "SinkStep"]

log = logging.getLogger(__name__)


class SinkConfig(ComponentConfig):
    """Config of `sink`."""

    sink: Sink = Field(
        description='Where records go: {"kind": "webhook", "url": ...} or {"kind": "file", '
        '"format": "jsonl" | "parquet", "path": a folder under the server\'s sink folder}.'
    )


@register_component
class SinkStep(Component[SinkConfig]):
    """Sends each record to a webhook or files (off the request path) and passes it on."""

    kind = "postprocess"
    name = "sink"
    title = "Sink"
    description = "Send each record to a webhook or to JSONL/Parquet files, and pass it on."

    inputs = (Port("in", "records"),)
    outputs = (Port("out", "any"),)

    _feed: SinkFeed | None = None

    async def setup(self) -> None:
        """Open the sink on the server (its folder checked against what the owner allows)."""
        opener = self.context.sinks
        if opener is None:
            log.info("sink step %s: no server sinks here; records are passed on only",
                     self.context.node_id)  # fmt: skip
            return
        self._feed = opener.open(self.context.node_id or self.name, self.config.sink)

    def process(self, batch: Batch) -> Batch:
        """The same batch, each record queued for the sink."""
        feed = self._feed
        if feed is not None:
            for row in batch.rows:
                feed.offer_row(row, "")
        return batch
