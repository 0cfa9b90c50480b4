"""`Deployment.export`: the deployed model as a standalone ONNX bundle, compared side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path

    from nstarx_jupyter.deployment.service import DeploymentService

__all__ = ["ExportMixin"]


class ExportMixin:
    """Export method of `Deployment` (which provides `name` and `service`)."""

    name: str
    service: DeploymentService

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
