"""NVML's calls as `nvidia-ml-py` names them, answering for one GPU that this process uses.

No GPU exists on the test machines: this stands in for `pynvml` so the code that reads GPUs runs
in a test (the names and shapes follow nvidia-ml-py 12's `pynvml`).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

USED_BYTES = 3 * 2**30
TOTAL_BYTES = 16 * 2**30
PROCESS_BYTES = 2**30


def nvmlInit() -> None:  # noqa: N802 - NVML's name
    """Start NVML."""


def nvmlDeviceGetCount() -> int:  # noqa: N802
    """One GPU."""
    return 1


def nvmlDeviceGetHandleByIndex(index: int) -> int:  # noqa: N802
    """The GPU's handle: its index."""
    return index


def nvmlDeviceGetUtilizationRates(handle: int) -> SimpleNamespace:  # noqa: N802
    """Busy 37 % of the last sample period."""
    return SimpleNamespace(gpu=37, memory=12)


def nvmlDeviceGetMemoryInfo(handle: int) -> SimpleNamespace:  # noqa: N802
    """3 GiB of 16 GiB in use."""
    return SimpleNamespace(used=USED_BYTES, total=TOTAL_BYTES, free=TOTAL_BYTES - USED_BYTES)


def nvmlDeviceGetComputeRunningProcesses(handle: int) -> list[SimpleNamespace]:  # noqa: N802
    """This process holds 1 GiB."""
    return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=PROCESS_BYTES)]
