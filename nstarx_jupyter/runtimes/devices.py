"""Which device a runtime computes on: the `device` option, answered by the framework itself.

`device` is `auto` (the default: a GPU when the framework sees one, else the CPU), `cpu`, `cuda`
(also `gpu`), `cuda:N` for the N-th GPU, or, for ONNX Runtime, `tensorrt` (TensorRT first, then
CUDA, then the CPU for the operators they lack). The frameworks' own device queries decide
(`torch.cuda.is_available()`, `onnxruntime.get_available_providers()`,
`tf.config.list_physical_devices("GPU")`): nothing is assumed from the machine. Asking for a GPU
that the framework does not see fails the load with the reason, rather than running on the CPU
unnoticed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import ModelLoadError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEVICE_OPTION", "onnx_providers", "tf_device", "torch_device", "wanted_device"]

DEVICE_OPTION = "device"
"""The runtime option (and `deploy(..., device=)`) naming the device."""
_DEVICE = re.compile(r"^(auto|cpu|tensorrt|cuda(:\d+)?)$")
_ORT_GPU = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def wanted_device(options: Mapping[str, Any]) -> str:
    """The `device` option, normalised (`gpu` is `cuda`), or `ModelLoadError` for a bad one."""
    raw = options.get(DEVICE_OPTION, "auto")
    text = str(raw).strip().lower().replace("gpu", "cuda")
    if not isinstance(raw, str) or not _DEVICE.match(text):
        raise ModelLoadError(f"device: '{raw}' is not auto, cpu, gpu, cuda, cuda:N or tensorrt")
    return text


def _index(wanted: str) -> int:
    return int(wanted.partition(":")[2] or 0)


def torch_device(torch: Any, wanted: str) -> str:
    """The torch device for `wanted`: `cuda[:N]` when CUDA answers, `cpu` otherwise (for auto)."""
    if wanted == "cpu":
        return "cpu"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if wanted == "auto":
        return "cuda:0" if count else "cpu"
    if _index(wanted) >= count:
        raise ModelLoadError(
            f"device '{wanted}': torch sees {count} CUDA device(s) (torch.cuda.is_available() "
            f"is {count > 0}); deploy with device='cpu', or use a CUDA build of torch on a GPU host"
        )
    return f"cuda:{_index(wanted)}"


def onnx_providers(ort: Any, wanted: str) -> list[Any]:
    """ONNX Runtime's execution providers for `wanted`, best first, the CPU always last.

    `auto` takes CUDA when this onnxruntime has it (onnxruntime-gpu; a session then falls back to
    the CPU by itself when no GPU answers); TensorRT only when asked, as it compiles an engine
    per input shape on first use.
    """
    if wanted == "cpu":
        return ["CPUExecutionProvider"]
    available = set(ort.get_available_providers())
    names = ["CUDAExecutionProvider"] if wanted != "tensorrt" else list(_ORT_GPU)
    chosen = [name for name in names if name in available]
    if not chosen and wanted != "auto":
        raise ModelLoadError(
            f"device '{wanted}': this onnxruntime has no {' or '.join(names)} (it has "
            f"{', '.join(sorted(available))}); install onnxruntime-gpu, or deploy with "
            "device='cpu'"
        )
    device_id = {"device_id": _index(wanted)} if wanted.startswith("cuda") else {}
    return [(name, device_id) for name in chosen] + ["CPUExecutionProvider"]


def tf_device(tf: Any, wanted: str) -> str:
    """The TensorFlow device name (`/GPU:N` or `/CPU:0`) for `wanted`."""
    if wanted == "cpu":
        return "/CPU:0"
    gpus = tf.config.list_physical_devices("GPU")
    if wanted == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if wanted == "tensorrt" or _index(wanted) >= len(gpus):
        raise ModelLoadError(
            f"device '{wanted}': TensorFlow sees {len(gpus)} GPU(s); deploy with device='cpu', "
            "or install tensorflow with CUDA (not tensorflow-cpu) on a GPU host"
        )
    return f"/GPU:{_index(wanted)}"
