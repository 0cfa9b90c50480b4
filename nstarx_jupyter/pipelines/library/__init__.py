"""The built-in component library; importing it registers every component."""

from __future__ import annotations

from nstarx_jupyter.pipelines.library import (
    explain_shap,
    inputs,
    outputs,
    routing,
    scoring,
    sinks,
)

__all__ = ["explain_shap", "inputs", "outputs", "routing", "scoring", "sinks"]
