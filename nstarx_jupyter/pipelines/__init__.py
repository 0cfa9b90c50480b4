"""Inference pipelines: `PipelineSpec`, the component library, validation and the executor."""

from __future__ import annotations

from nstarx_jupyter.pipelines.component import (
    Batch,
    Component,
    ComponentConfig,
    Context,
    ModelResolver,
    Port,
    register_component,
)
from nstarx_jupyter.pipelines.executor import (
    InvalidPipelineError,
    NodeError,
    NodeRun,
    PipelineExecutor,
    PipelineResult,
)
from nstarx_jupyter.pipelines.palette import component_class, components
from nstarx_jupyter.pipelines.spec import EdgeSpec, NodeSpec, PipelineSpec
from nstarx_jupyter.pipelines.validate import Problem, validate

__all__ = [
    "Batch",
    "Component",
    "ComponentConfig",
    "Context",
    "EdgeSpec",
    "InvalidPipelineError",
    "ModelResolver",
    "NodeError",
    "NodeRun",
    "NodeSpec",
    "PipelineExecutor",
    "PipelineResult",
    "PipelineSpec",
    "Port",
    "Problem",
    "component_class",
    "components",
    "register_component",
    "validate",
]
