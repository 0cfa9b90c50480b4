"""Model framework adapters behind one `Runtime` interface; frameworks are imported lazily."""

from nstarx_jupyter.runtimes.base import Runtime, Tensors
from nstarx_jupyter.runtimes.loader import RUNTIMES, create_runtime, infer_runtime

__all__ = ["RUNTIMES", "Runtime", "Tensors", "create_runtime", "infer_runtime"]
