"""`Deployment.export` and `deploy(optimize=True)`'s report: ONNX and the original side by side."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path

    from nstarx_jupyter.deployment.export.optimize import Optimization
    from nstarx_jupyter.deployment.service import DeploymentService

__all__ = ["ExportMixin", "show_optimization"]

log = logging.getLogger(__name__)


def show_optimization(name: str, optimization: Optimization | None) -> Any:
    """Show what `optimize` served and why, with the comparison; return it as a DataFrame.

    In IPython, the reason and the table are displayed; elsewhere the reason is logged (as a
    warning when the original is served).
    """
    if optimization is None:
        return None
    frame = optimization.frame()
    line = f"{name}: optimize: {optimization.reason}"
    try:
        from IPython import get_ipython
    except ImportError:
        shell = None
    else:
        shell = get_ipython()
    if shell is None:
        log.log(logging.INFO if optimization.served == "onnx" else logging.WARNING, "%s", line)
        return frame
    from IPython.display import display

    display({"text/plain": line}, raw=True)  # type: ignore[no-untyped-call]
    display(frame)  # type: ignore[no-untyped-call]
    return frame


class ExportMixin:
    """Export method of `Deployment` (which provides `name` and `service`)."""

    name: str
    service: DeploymentService
    optimization: Any = None
    """With `deploy(optimize=...)`: one row per variant (the original, ONNX, optimised,
    quantised) with agreement, largest difference, ms and speed-up, and a `served` column;
    `.attrs` holds `served` (`onnx` or `original`), `reason` and `tolerance`."""

    def export(
        self,
        format: str = "onnx",
        *,
        quantize: str | None = None,
        out: str | Path | None = None,
        sample: Any = None,
    ) -> Any:
        """Write an ONNX bundle of the served model; return the comparison as a DataFrame.

        One row per variant (the source framework, ONNX, optimised, quantised): agreement
        with the source's predictions on `sample` (else the registry's reference sample),
        the largest difference, the batch's milliseconds and the speed-up. `.attrs["bundle"]`
        is the folder (`model.onnx`, `signature.json`, `run.py`).
        """
        from nstarx_jupyter.deployment.export.model import export_model

        if format != "onnx":
            raise InvalidInputError(f"format '{format}': only onnx is exported")
        uri = self.service.describe(self.name).spec.storage_uri or self.name
        report = export_model(uri, out, quantize=quantize, sample=sample)
        frame = report.frame()
        frame.attrs["bundle"] = str(report.bundle)
        return frame
