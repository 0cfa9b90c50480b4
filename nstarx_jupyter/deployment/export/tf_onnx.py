"""TensorFlow and Keras models to ONNX with tf2onnx, through a traced `tf.function`.

`tf2onnx.convert.from_keras` fails on Keras 3 models (it looks up Keras 2's tensor names), so
both runtimes convert a function instead: the Keras model called on one tensor, or the
SavedModel's serving signature called with its input by name. The ONNX input takes the name
the served signature gives it and the outputs take the signature's output names, so the bundle's
runner and a client see the names the runtime serves. Layers tf2onnx has no ONNX operator for
(custom ops, string lookups, ragged tensors) fail here with the converter's message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.export.matrix import matrix_input
from nstarx_jupyter.errors import UnsupportedError, require
from nstarx_jupyter.runtimes.keras import KerasRuntime
from nstarx_jupyter.runtimes.tensorflow import TensorFlowRuntime

if TYPE_CHECKING:
    from nstarx_jupyter.runtimes.base import Runtime

__all__ = ["TF_OPSET", "tf_onnx"]

TF_OPSET = 17
"""The opset the other converters target; onnxruntime's quantiser handles it."""


def tf_onnx(runtime: Runtime, n_features: int) -> Any:
    """The `keras` or `tensorflow` runtime's model as an ONNX `ModelProto`.

    Raises:
        UnsupportedError: the model takes more than one input, or one that is not a matrix.
    """
    tf = require("tensorflow", "tensorflow")
    tf2onnx = require("tf2onnx", "export")  # imports TensorFlow: only when one is exported
    signature = runtime.metadata()
    spec = matrix_input(signature)
    dtype = tf.float64 if spec.datatype == "FP64" else tf.float32
    tensor = tf.TensorSpec((None, n_features), dtype, name=spec.name)
    if isinstance(runtime, KerasRuntime):
        model = runtime.model
        function = tf.function(lambda x: model(x, training=False))
    elif isinstance(runtime, TensorFlowRuntime):
        served = runtime.served_function()
        function = tf.function(lambda x: served(**{spec.name: x}))
    else:
        raise UnsupportedError(f"{runtime.runtime_name} models are not converted with tf2onnx")
    proto, _ = tf2onnx.convert.from_function(function, input_signature=(tensor,), opset=TF_OPSET)
    return _renamed_outputs(proto, [out.name for out in signature.outputs])


def _renamed_outputs(proto: Any, names: list[str]) -> Any:
    """The graph with its outputs named as the runtime names them (when they pair one to one).

    The SavedModel's outputs come out in its signature's order, sorted by name as TensorFlow
    flattens a dict, which is the runtime's order too.
    """
    graph = proto.graph
    if len(graph.output) != len(names):
        return proto
    renames = {out.name: name for out, name in zip(graph.output, names, strict=True)}
    for node in graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
        node.input[:] = [renames.get(name, name) for name in node.input]
    for out in graph.output:
        out.name = renames[out.name]
    return proto
