"""Calling deployments: `InferenceClient` and its async twin (no server extras needed)."""

from __future__ import annotations

from nstarx_jupyter.client.inference import AsyncInferenceClient, InferenceClient, InferenceError

__all__ = ["AsyncInferenceClient", "InferenceClient", "InferenceError"]
