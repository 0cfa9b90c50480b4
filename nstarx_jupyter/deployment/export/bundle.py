"""Convert a loaded runtime's model to ONNX, optimise and quantise it, and write a bundle.

The bundle is a folder a device can run with onnxruntime and NumPy only: `model.onnx` (the
optimised, optionally quantised graph), `signature.json` and `run.py` (see `runner.py`).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nstarx_jupyter.deployment.export.tf_onnx import tf_onnx
from nstarx_jupyter.deployment.export.torch_onnx import torch_onnx
from nstarx_jupyter.errors import InvalidInputError, UnsupportedError, require
from nstarx_jupyter.runtimes.lightgbm import LightGBMRuntime
from nstarx_jupyter.runtimes.sklearn import SklearnRuntime
from nstarx_jupyter.runtimes.xgboost import XGBoostRuntime

if TYPE_CHECKING:
    from nstarx_jupyter.runtimes.base import Runtime

__all__ = ["ExportReport", "export_runtime", "to_onnx"]

XGB_OPSET = 15
"""The highest opset onnxmltools' tree converters support."""


@dataclass(slots=True)
class ExportReport:
    """What `export_runtime` wrote and how each variant compares with the source model."""

    bundle: Path
    rows: list[dict[str, Any]] = field(default_factory=list)

    def frame(self) -> Any:
        """The comparison as a pandas DataFrame (one row per variant)."""
        pd = require("pandas", "mlflow")
        return pd.DataFrame(self.rows)


def to_onnx(runtime: Runtime, n_features: int) -> Any:
    """The runtime's model as ONNX (sklearn, XGBoost, LightGBM, TorchScript, `.pt2`, Keras, TF)."""
    name = runtime.runtime_name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converters' deprecation chatter
        if isinstance(runtime, SklearnRuntime):
            skl2onnx = require("skl2onnx", "export")
            sample = np.zeros((1, n_features), dtype=np.float32)
            model = runtime.model
            # Probabilities as a tensor, not ZipMap's maps; regressors take no such option.
            options = {"zipmap": False} if hasattr(model, "classes_") else None
            return skl2onnx.to_onnx(model, sample, options=options)
        if isinstance(runtime, XGBoostRuntime | LightGBMRuntime):
            tools = require("onnxmltools", "export")
            types = require("onnxmltools.convert.common.data_types", "export")
            initial = [("input", types.FloatTensorType([None, n_features]))]
            if isinstance(runtime, XGBoostRuntime):
                return tools.convert_xgboost(runtime.booster, initial_types=initial,
                                             target_opset=XGB_OPSET)  # fmt: skip
            return tools.convert_lightgbm(runtime.booster, initial_types=initial,
                                          target_opset=XGB_OPSET, zipmap=False)  # fmt: skip
        if name == "pytorch":
            return torch_onnx(runtime, n_features)
        if name in ("keras", "tensorflow"):
            return tf_onnx(runtime, n_features)
        if name == "onnx":
            onnx = require("onnx", "export")
            return onnx.load(str(runtime.path))
    raise UnsupportedError(f"no ONNX converter for the '{name}' runtime here")


def _tidy_opsets(model: Any) -> Any:
    """One opset per domain (the quantiser refuses duplicates), the default domain included."""
    onnx = require("onnx", "export")
    versions: dict[str, int] = {"": 17}
    for item in model.opset_import:
        domain = "" if item.domain == "ai.onnx" else item.domain
        versions[domain] = max(versions.get(domain, 0), item.version) if domain else item.version
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in versions.items())
    return model


def _optimise(source: Path, target: Path) -> None:
    ort = require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)  # portable: no hardware-specific layouts
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _quantise(source: Path, target: Path, quantize: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if quantize == "int8":
            quant = require("onnxruntime.quantization", "onnx")
            quant.quantize_dynamic(str(source), str(target), weight_type=quant.QuantType.QInt8)
            return
        onnx = require("onnx", "export")
        onnx.save(_float16(source), str(target))


def _float16(source: Path) -> Any:
    """`source` with float16 weights and compute, as far as ONNX Runtime takes the graph.

    The converter keeps the ops without float16 kernels (tree ensembles, ...) in float32 but
    can leave a float32 output feeding a node whose other input it made float16 (LightGBM's
    `Mul` after its trees): ONNX Runtime refuses such a graph, naming the op. That op type
    then stays float32 too, and the conversion goes again.
    """
    onnx = require("onnx", "export")
    ort = require("onnxruntime", "onnx")
    float16 = require("onnxconverter_common.float16", "export")
    blocked = list(float16.DEFAULT_OP_BLOCK_LIST)
    while True:
        model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True,
                                                 op_block_list=blocked)  # fmt: skip
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error types
            op = re.search(r"Optype \((\w+)\)", str(exc))
            if op is None or op[1] in blocked:
                raise UnsupportedError(f"fp16: ONNX Runtime refuses the converted graph ({exc}); "
                                       "int8 may work instead") from None  # fmt: skip
            blocked.append(op[1])
            continue
        return model


def _session_predict(path: Path) -> Any:
    ort = require("onnxruntime", "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {name: x.astype(np.float32)})[0])


def _timed_ms(predict: Any, x: np.ndarray[Any, Any], repeats: int = 20) -> float:
    predict(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def _compare(reference: np.ndarray[Any, Any], found: np.ndarray[Any, Any]) -> dict[str, Any]:
    ref, got = np.asarray(reference), np.asarray(found)
    if ref.ndim == 2 and ref.shape[1] > 1:  # scores per class: compare the arg-max
        agree = float((ref.argmax(1) == got.argmax(1)).mean())
    elif ref.dtype.kind in "f" or got.dtype.kind in "f":
        agree = float(np.isclose(ref.ravel(), got.ravel(), rtol=1e-2, atol=1e-3).mean())
    else:
        agree = float((ref.ravel() == got.ravel()).mean())
    numeric = ref.dtype.kind in "biuf" and got.dtype.kind in "biuf"
    diff = float(np.abs(ref.astype(float) - got.astype(float)).max()) if numeric else None
    return {"agreement": agree, "max_abs_diff": diff}


def export_runtime(runtime: Runtime, sample: np.ndarray[Any, Any], out: Path, *,
                   quantize: str | None = None, name: str = "") -> ExportReport:  # fmt: skip
    """Convert, optimise (and quantise) `runtime`'s model into the bundle folder `out`."""
    if quantize not in (None, "int8", "fp16"):
        raise InvalidInputError(f"quantize '{quantize}': use int8 or fp16")
    onnx = require("onnx", "export")
    x = np.asarray(sample, dtype=np.float32)
    if x.ndim != 2:
        raise InvalidInputError(f"the sample must be 2-D (rows, features), got shape {x.shape}")
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".variants"
    work.mkdir(exist_ok=True)
    original = work / "original.onnx"
    onnx.save(_tidy_opsets(to_onnx(runtime, x.shape[1])), str(original))
    files = {"onnx": original, "optimised": work / "optimised.onnx"}
    _optimise(original, files["optimised"])
    if quantize is not None:
        files[quantize] = work / f"{quantize}.onnx"
        _quantise(original, files[quantize], quantize)  # the fused graph has contrib ops
    signature = runtime.metadata()
    source_input = signature.inputs[0].name
    source_dtype = np.float64 if signature.inputs[0].datatype == "FP64" else np.float32

    def source_predict(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        answer = runtime.predict({source_input: rows.astype(source_dtype)})
        return np.asarray(next(iter(answer.values())))

    reference = source_predict(x)
    source_ms = _timed_ms(source_predict, x)
    report = ExportReport(out)
    report.rows.append({"variant": runtime.runtime_name, "size_bytes": None, "agreement": 1.0,
                        "max_abs_diff": 0.0, "batch_ms": source_ms, "speedup": 1.0})  # fmt: skip
    for variant, path in files.items():
        predict = _session_predict(path)
        ms = _timed_ms(predict, x)
        report.rows.append({"variant": variant, "size_bytes": path.stat().st_size,
                            **_compare(reference, predict(x)), "batch_ms": ms,
                            "speedup": source_ms / ms if ms else None})  # fmt: skip
    shutil.copyfile(files[quantize or "optimised"], out / "model.onnx")
    shutil.copyfile(Path(__file__).with_name("runner.py"), out / "run.py")
    doc = {"format": "nstarx-bundle/1", "name": name, "source_runtime": runtime.runtime_name,
           "quantize": quantize, "feature_names": list(signature.feature_names or []),
           "class_labels": _labels(signature.class_labels), "rows_compared": int(x.shape[0]),
           "report": report.rows}  # fmt: skip
    (out / "signature.json").write_text(json.dumps(doc, indent=2, default=str))
    shutil.rmtree(work, ignore_errors=True)
    return report


def _labels(labels: Any) -> list[Any] | None:
    return None if labels is None else [v.item() if hasattr(v, "item") else v for v in labels]
