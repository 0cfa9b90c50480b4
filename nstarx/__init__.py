"""`from nstarx import InferenceClient`: the client under the product's short name.

The distribution is `nstarx-jupyter` and everything lives in `nstarx_jupyter`; this package only
re-exports the client, so snippets written for the product work as they are.
"""

from __future__ import annotations

from nstarx_jupyter import __version__
from nstarx_jupyter.client import AsyncInferenceClient, InferenceClient, InferenceError

__all__ = ["AsyncInferenceClient", "InferenceClient", "InferenceError", "__version__"]
