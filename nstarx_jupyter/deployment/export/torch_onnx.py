"""PyTorch models to ONNX: TorchScript archives and `torch.export` programs (`.pt2`).

Both go through `torch.onnx`'s TorchScript-based exporter (`dynamo=False`): the `torch.export`
based one (`dynamo=True`, the default since torch 2.9) needs the `onnxscript` package, which
the `export` extra does not install. A `.pt2` program is served as `program.module()`, which
the exporter traces as it traces any module, but which refuses `train()`; the exporter calls
`train(False)` on what it is given, so the program's module is exported inside a wrapper that
answers that call itself (the module is in eval mode already). The export guards the program
checks its inputs with (a batch within the exported range) are traced away: the ONNX model
takes any batch, and the comparison against the original on the sample says whether it answers
as the original does.

The ONNX input and outputs take the names the runtime serves (the program's `forward`
arguments and the keys of a returned dict; for a TorchScript archive, those its signature
gives), so the bundle's runner and a client see the served names.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.export.matrix import matrix_input
from nstarx_jupyter.errors import UnsupportedError, require
from nstarx_jupyter.protocol.datatypes import numpy_dtype
from nstarx_jupyter.runtimes.pytorch import PyTorchRuntime

if TYPE_CHECKING:
    from nstarx_jupyter.runtimes.base import Runtime

__all__ = ["torch_onnx"]


def torch_onnx(runtime: Runtime, n_features: int) -> Any:
    """The `pytorch` runtime's module (TorchScript or a `.pt2` program) as an ONNX `ModelProto`.

    Raises:
        UnsupportedError: the model takes more than one input, or one that is not a matrix.
    """
    torch = require("torch", "torch")
    onnx = require("onnx", "export")
    signature = runtime.metadata()
    spec = matrix_input(signature)
    if not isinstance(runtime, PyTorchRuntime):
        raise UnsupportedError(f"{runtime.runtime_name} models are not converted with torch.onnx")
    module = runtime.module
    if isinstance(module, torch.fx.GraphModule):  # a torch.export program's module
        _evaluating(module)
    example = torch.zeros(2, n_features, dtype=getattr(torch, numpy_dtype(spec.datatype).name))
    outputs = [out.name for out in signature.outputs]
    batch = {name: {0: "batch"} for name in [spec.name, *outputs]}
    buffer = io.BytesIO()
    torch.onnx.export(module, (example,), buffer, input_names=[spec.name], output_names=outputs,
                      dynamic_axes=batch, dynamo=False)  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def _evaluating(program_module: Any) -> None:
    """Make `train()` do nothing on a program's module, which refuses it (the exporter calls it).

    The module is this runtime's own (loaded from the `.pt2` file), so its instance attribute
    shadows the method for as long as the runtime lives; a program only ever evaluates.
    """
    program_module.train = lambda mode=True: program_module
