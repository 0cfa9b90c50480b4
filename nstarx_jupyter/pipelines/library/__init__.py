"""The built-in component library; importing it registers every component."""

from __future__ import annotations

from nstarx_jupyter.pipelines.library import inputs, outputs, routing, scoring, sinks

__all__ = ["inputs", "outputs", "routing", "scoring", "sinks"]
