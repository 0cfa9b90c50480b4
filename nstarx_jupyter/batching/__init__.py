"""Adaptive micro-batching around an async predict callable."""

from nstarx_jupyter.batching.batcher import AdaptiveBatcher, PredictFn

__all__ = ["AdaptiveBatcher", "PredictFn"]
