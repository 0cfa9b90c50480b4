"""`deploy(..., optimize=True)`: serve the model as optimised ONNX when it answers as the original.

The model is converted as `nstarx export` converts it, then wrapped so that its signature is
the original's (the same input name and datatype, a cast to float inside the graph; outputs
`predict` and `predict_proba` with the original's datatypes), so a client cannot tell which one
answers, but for the speed. Both run on a sample; the ONNX model is served only when the share
of sample rows whose answer changed stays within the tolerance. Anything else (a model with
string columns, a converter that refuses a step, too many changed answers) serves the original
and says why: optimising is a request to go faster, not a condition for serving.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nstarx_jupyter.deployment.dates import dated_frame
from nstarx_jupyter.deployment.export.bundle import (
    _compare,
    _optimise,
    _quantise,
    _tidy_opsets,
    _timed_ms,
    to_onnx,
)
from nstarx_jupyter.deployment.export.model import resolve_export_source
from nstarx_jupyter.errors import InvalidInputError, MissingExtraError, NstarxError, require
from nstarx_jupyter.protocol.datatypes import numpy_dtype
from nstarx_jupyter.registry.flavors import flavor_of
from nstarx_jupyter.runtimes.loader import create_runtime
from nstarx_jupyter.runtimes.sklearn import SklearnRuntime
from nstarx_jupyter.runtimes.sklearn_inputs import frame_columns

if TYPE_CHECKING:
    from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec
    from nstarx_jupyter.runtimes.base import Runtime

__all__ = ["DEFAULT_TOLERANCE", "OPTIMIZE_ANNOTATION", "Optimization", "optimize_model",
           "read_rows", "sample_matrix"]  # fmt: skip

DEFAULT_TOLERANCE = 0.01
"""The largest share of the sample's rows whose answer may change: at least 99 % must agree.

An answer changed when a class label differs, or a number differs by more than 1 % (relative;
0.001 absolute): ONNX computes in float32 where scikit-learn computes in float64."""
OPTIMIZE_ANNOTATION = "nstarx.io/optimize"
"""The deployment's annotation (a KServe annotation on a cluster) saying what was served, why."""
_QUANTIZE = (None, "int8", "fp16")


@dataclass(frozen=True, slots=True)
class Optimization:
    """What `optimize_model` served (`onnx` or `original`), why, and the comparison behind it."""

    served: str
    model: Any
    """The ONNX `ModelProto` to serve, or the original (from `deploy()`, a fitted PyTorch
    module's plain ONNX export, which is what it serves without `optimize`)."""
    reason: str
    tolerance: float
    options: dict[str, Any] = field(default_factory=dict)
    """Runtime options the ONNX model needs to answer as the original (feature names...)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """One per variant: agreement with the original, largest difference, ms, speed-up."""

    def frame(self) -> Any:
        """The comparison as a pandas DataFrame; `.attrs` holds `served` and `reason`."""
        pd = require("pandas", "mlflow")
        frame = pd.DataFrame(self.rows)
        frame.attrs.update(served=self.served, reason=self.reason, tolerance=self.tolerance)
        return frame

    def lines(self) -> list[str]:
        """The comparison as a text table (what `nstarx deploy --optimize` prints)."""
        lines = [f"{'variant':<10} {'agree':>6} {'max|diff|':>10} {'ms':>8} {'speedup':>7}"]
        for row in self.rows:
            diff = "-" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.2g}"
            served = "  (served)" if row["served"] else ""
            lines.append(f"{row['variant']:<10} {row['agreement']:>6.3f} {diff:>10} "
                         f"{row['batch_ms']:>8.3f} {row['speedup']:>7.2f}{served}")  # fmt: skip
        return lines


def read_rows(path: Path) -> Any:
    """Sample rows from a file: a CSV with a header (a DataFrame), or JSON records or lists.

    Raises:
        InvalidInputError: not a .csv or .json file, or JSON that holds no rows.
    """
    if path.suffix == ".csv":
        return require("pandas", "mlflow").read_csv(path)
    if path.suffix != ".json":
        raise InvalidInputError(f"{path}: give rows as a .csv (with a header) or .json file")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: {exc}") from None
    rows = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not rows:
        raise InvalidInputError(f'{path}: a list of records or rows, or {{"instances": [...]}}')
    return rows


class _KeepError(Exception):
    """The model stays as it is, for the reason given."""


def optimize_model(
    model: Any,
    sample: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    quantize: str | None = None,
    options: dict[str, Any] | None = None,
) -> Optimization:
    """Convert `model` to optimised (optionally quantised) ONNX; keep it if within `tolerance`.

    `model` is a fitted scikit-learn model, a model file or folder (its `model-settings.json`
    counted: `deploy()` stages a fitted Keras model as one first, and a fitted PyTorch module as
    its ONNX export), or a `models:/` URI;
    `sample` rows (a DataFrame, records, a record, a 2-D array) in the model's features;
    `options` go to a file's runtime (a TorchScript file's `example_input`, say).

    Raises:
        InvalidInputError: no sample, a sample that does not fit the model, a tolerance outside
            [0, 1] or an unknown quantisation.
        MissingExtraError: the export extra (skl2onnx, onnxruntime) is not installed.
    """
    if not 0.0 <= tolerance <= 1.0:
        raise InvalidInputError(f"tolerance {tolerance}: a share of rows between 0 and 1")
    if quantize not in _QUANTIZE:
        raise InvalidInputError(f"optimize '{quantize}': use True, 'int8' or 'fp16'")
    if sample is None:
        raise InvalidInputError(
            "optimize: give rows to compare the optimised model with the original on: "
            "deploy(..., sample=X_test) (else reference_data= or input_example= are used), "
            "or nstarx deploy --optimize --sample rows.csv"
        )
    try:
        runtime = _source_runtime(model, options or {}, sample)
        signature = runtime.metadata()
        x = sample_matrix(sample, signature)
        return _compared(runtime, signature, x, model, tolerance, quantize)
    except _KeepError as exc:
        return Optimization("original", model, f"served the original: {exc}", tolerance)


def _source_runtime(model: Any, extra: dict[str, Any], sample: Any) -> Runtime:
    if isinstance(model, str | Path):
        path, runtime_name, options, _ = resolve_export_source(str(model))
        runtime = create_runtime(path, runtime_name, {**options, **extra})
        runtime.load()
        return runtime
    try:
        flavor = flavor_of(model).name
    except InvalidInputError:
        flavor = type(model).__name__
    if flavor != "sklearn":
        raise _KeepError(
            f"a fitted {type(model).__name__} is not converted here (only fitted scikit-learn, "
            "PyTorch and Keras models are); save it to a file and deploy that with optimize"
        )
    times = frame_columns(dated_frame(sample))  # dates: the signature the deployment will have
    return SklearnRuntime.of(model, {"input_columns": times} if times else None)


def sample_matrix(sample: Any, signature: ModelSignature) -> np.ndarray[Any, Any]:
    """The sample as the model's 2-D input, its columns in the order of the model's features."""
    if len(signature.inputs) != 1 or len(signature.inputs[0].shape) != 2:
        raise _KeepError(
            "only models taking one numeric matrix are converted; this one takes "
            + ", ".join(f"{spec.name} ({spec.datatype})" for spec in signature.inputs)
        )
    names = list(signature.feature_names or ())
    if isinstance(sample, dict):
        sample = [sample]
    try:
        if hasattr(sample, "columns"):
            rows = (sample[names] if names else sample).to_numpy()
        elif isinstance(sample, list) and sample and isinstance(sample[0], dict):
            rows = [[r[n] for n in names] if names else list(r.values()) for r in sample]
        else:
            rows = sample
        x = np.asarray(rows, dtype=np.float64)
    except KeyError as exc:
        raise InvalidInputError(f"optimize: the sample has no feature {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"optimize: the sample is not numeric rows ({exc})") from None
    x = x.reshape(1, -1) if x.ndim == 1 else x
    width = signature.inputs[0].shape[-1]
    if x.ndim != 2 or not len(x) or (width > 0 and x.shape[1] != width):
        raise InvalidInputError(
            f"optimize: the sample has shape {x.shape}; the model takes rows of {width} features"
        )
    return x


def _compared(runtime: Runtime, signature: ModelSignature, x: np.ndarray[Any, Any], model: Any,
              tolerance: float, quantize: str | None) -> Optimization:  # fmt: skip
    onnx = require("onnx", "export")
    spec = signature.inputs[0]
    first = (signature.default_outputs or (signature.outputs[0].name,))[0]
    rows = x.astype(numpy_dtype(spec.datatype))

    def original(batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(runtime.predict({spec.name: batch}, [first])[first])

    with tempfile.TemporaryDirectory(prefix="nstarx-optimize-") as work:
        files = _variants(runtime, signature, Path(work), quantize)
        reference, source_ms = original(rows), _timed_ms(original, rows)
        source = "original" if runtime.runtime_name == "onnx" else runtime.runtime_name
        report = [{"variant": source, "size_bytes": None, "agreement": 1.0,
                   "max_abs_diff": 0.0, "batch_ms": source_ms, "speedup": 1.0}]  # fmt: skip
        for variant, path in files.items():
            predict = _session(path, spec.name, first)
            ms = _timed_ms(predict, rows)
            report.append({"variant": variant, "size_bytes": path.stat().st_size,
                           **_compare(reference, predict(rows)), "batch_ms": ms,
                           "speedup": source_ms / ms if ms else None})  # fmt: skip
        chosen = quantize or "optimised"
        served = onnx.load(str(files[chosen]))
    row: dict[str, Any] = report[-1]
    for line in report:
        line["served"] = False
    changed = 1.0 - float(row["agreement"])
    within = changed <= tolerance + 1e-12
    (row if within else report[0])["served"] = True
    said = f"{len(x)} sample rows"
    if not within:
        reason = (f"served the original: the {chosen} ONNX model changes {changed:.1%} of the "
                  f"answers on {said}, above the tolerance of {tolerance:.1%}")  # fmt: skip
        return Optimization("original", model, reason, tolerance, rows=report)
    reason = (f"served the {chosen} ONNX model: {changed:.1%} of the answers on {said} "
              f"changed (tolerance {tolerance:.1%}); {row['speedup']:.2f}x the original's "
              "speed there")  # fmt: skip
    return Optimization("onnx", served, reason, tolerance, _options(signature), report)


def _variants(
    runtime: Runtime, signature: ModelSignature, work: Path, quantize: str | None
) -> dict[str, Path]:
    """The converted, optimised and quantised graphs, each with the original's signature."""
    onnx = require("onnx", "export")
    try:
        converted = to_onnx(runtime, signature.inputs[0].shape[-1])
    except MissingExtraError:
        raise
    except NstarxError as exc:
        raise _KeepError(exc.message) from exc
    except Exception as exc:  # the converters raise their own types for a step they lack
        raise _KeepError(f"the ONNX converter refused the model ({exc})") from exc
    files = {"onnx": work / "onnx.onnx", "optimised": work / "optimised.onnx"}
    onnx.save(_as_signature(_tidy_opsets(converted), signature), str(files["onnx"]))
    _optimise(files["onnx"], files["optimised"])
    if quantize is not None:
        files[quantize] = work / f"{quantize}.onnx"
        _quantise(files["onnx"], files[quantize], quantize)  # the fused graph has contrib ops
    return files


def _session(path: Path, input_name: str, output: str) -> Any:
    ort = require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the ONNX runtime serves it
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: np.asarray(session.run([output], {input_name: x})[0])


def _options(signature: ModelSignature) -> dict[str, Any]:
    """The ONNX runtime's options that give the served model the original's signature."""
    options: dict[str, Any] = {"default_outputs": list(signature.default_outputs)}
    if signature.feature_names:
        options["feature_names"] = list(signature.feature_names)
    if signature.class_labels is not None:
        options["class_labels"] = [getattr(v, "item", lambda v=v: v)() for v in
                                   signature.class_labels]  # fmt: skip
    return options


def _as_signature(model: Any, signature: ModelSignature) -> Any:
    """`model` with the original's input and outputs: names, datatypes and ranks (casts inside)."""
    onnx = require("onnx", "export")
    graph = model.graph
    outputs = list(graph.output)
    if len(graph.input) != 1 or len(outputs) < len(signature.outputs):
        raise _KeepError("the converted graph's inputs and outputs do not match the model's")
    source, spec = graph.input[0], signature.inputs[0]
    head = _retyped(onnx, spec.name, source.name, _elem(onnx, spec.datatype),
                    source.type.tensor_type.elem_type, graph)  # fmt: skip
    tail = []
    for produced, wanted in zip(outputs, signature.outputs, strict=False):
        from_elem = produced.type.tensor_type.elem_type
        to_elem = _elem(onnx, wanted.datatype)
        tail += _retyped(onnx, produced.name, wanted.name, from_elem, to_elem, graph,
                         _flatten(produced, wanted))  # fmt: skip
    nodes = [*head, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(_value_info(onnx, spec))
    del graph.output[:]
    graph.output.extend(_value_info(onnx, wanted) for wanted in signature.outputs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise _KeepError(f"the converted graph is not valid ONNX ({exc})") from exc
    return model


def _retyped(onnx: Any, source: str, target: str, from_elem: int, to_elem: int, graph: Any,
             flatten: bool = False) -> list[Any]:  # fmt: skip
    """Nodes from tensor `source` to `target`: a Cast when the types differ, a Reshape to 1-D."""
    helper, nodes, current = onnx.helper, [], source
    if source == target:  # an ONNX file: its signature is the graph's own
        if from_elem != to_elem or flatten:
            raise _KeepError(f"'{target}' would need a cast onto itself")
        return []
    if from_elem != to_elem:
        nodes.append(helper.make_node("Cast", [current], [f"{target}:cast"], to=to_elem))
        current = f"{target}:cast"
    if flatten:
        shape = f"{target}:shape"
        graph.initializer.append(helper.make_tensor(shape, onnx.TensorProto.INT64, [1], [-1]))
        nodes.append(helper.make_node("Reshape", [current, shape], [f"{target}:flat"]))
        current = f"{target}:flat"
    nodes.append(helper.make_node("Identity", [current], [target]))
    return nodes


def _flatten(produced: Any, wanted: TensorSpec) -> bool:
    """A regressor's `[N, 1]` answer where the original answers `[N]`."""
    return len(wanted.shape) == 1 and len(produced.type.tensor_type.shape.dim) == 2


def _elem(onnx: Any, datatype: str) -> int:
    if datatype == "BYTES":
        return int(onnx.TensorProto.STRING)
    return int(onnx.helper.np_dtype_to_tensor_dtype(numpy_dtype(datatype)))


def _value_info(onnx: Any, spec: TensorSpec) -> Any:
    dims = ["N" if i == 0 else (d if d >= 0 else None) for i, d in enumerate(spec.shape)]
    return onnx.helper.make_tensor_value_info(spec.name, _elem(onnx, spec.datatype), dims)
