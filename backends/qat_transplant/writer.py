"""Write the transplant's graph as a .tflite flatbuffer with ai-edge-litert's schema (object API).

Imported inside the backend's environment only (it needs ``ai_edge_litert``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from liteport.backends.qat_transplant.ir import Graph

# Operator versions that declare int8 (per-channel) kernels, as TFLite's own converter writes them.
_VERSIONS = {
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 4,
    "ADD": 2,
    "CONCATENATION": 2,
    "MAX_POOL_2D": 2,
    "AVERAGE_POOL_2D": 2,
    "MEAN": 2,
    "QUANTIZE": 2,
    "RESHAPE": 1,
    "TRANSPOSE": 2,
    "PAD": 2,
    "PADV2": 2,
    "RELU": 2,
    "RELU6": 2,
    "RELU_N1_TO_1": 1,
    "RELU_0_TO_1": 1,
}
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127  # deprecated_builtin_code of codes above 127


def write(graph: Graph, path: Path, description: str) -> None:
    """Serialize ``graph`` (one subgraph, signature "serving_default") to ``path``."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = fb.ModelT()
    model.version = 3
    model.description = description
    model.buffers = [fb.BufferT()]  # buffer 0: the empty buffer of every non-constant tensor
    codes: list[str] = []
    subgraph = fb.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors = []
    for tensor in graph.tensors:
        t = fb.TensorT()
        t.name = tensor.name
        t.shape = np.asarray(tensor.shape, dtype=np.int32)
        t.type = fb.TensorType.INT8 if tensor.dtype == "int8" else fb.TensorType.INT32
        t.buffer = 0
        if tensor.data is not None:
            buffer = fb.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(tensor.data).tobytes(), dtype=np.uint8)
            model.buffers.append(buffer)
            t.buffer = len(model.buffers) - 1
        if tensor.scale is not None:
            q = fb.QuantizationParametersT()
            q.scale = np.asarray(tensor.scale, dtype=np.float32)
            q.zeroPoint = np.asarray(tensor.zero_point, dtype=np.int64)
            q.quantizedDimension = int(tensor.axis)
            t.quantization = q
        subgraph.tensors.append(t)
    subgraph.operators = []
    for op in graph.ops:
        if op.code not in codes:
            codes.append(op.code)
        o = fb.OperatorT()
        o.opcodeIndex = codes.index(op.code)
        o.inputs = np.asarray(op.inputs, dtype=np.int32)
        o.outputs = np.asarray(op.outputs, dtype=np.int32)
        if op.options_type is not None:
            o.builtinOptionsType = getattr(fb.BuiltinOptions, op.options_type)
            o.builtinOptions = _options(fb, op.options_type, op.options, op.fused)
        subgraph.operators.append(o)
    subgraph.inputs = np.asarray(graph.inputs, dtype=np.int32)
    subgraph.outputs = np.asarray(graph.outputs, dtype=np.int32)
    model.subgraphs = [subgraph]
    model.operatorCodes = []
    for code in codes:
        c = fb.OperatorCodeT()
        c.builtinCode = getattr(fb.BuiltinOperator, code)
        c.deprecatedBuiltinCode = min(c.builtinCode, _PLACEHOLDER_FOR_GREATER_OP_CODES)
        c.version = _VERSIONS.get(code, 1)
        model.operatorCodes.append(c)
    signature = fb.SignatureDefT()
    signature.signatureKey = "serving_default"
    signature.subgraphIndex = 0
    signature.inputs = [_tensor_map(fb, f"input_{i}", t) for i, t in enumerate(graph.inputs)]
    signature.outputs = [_tensor_map(fb, f"output_{j}", t) for j, t in enumerate(graph.outputs)]
    model.signatureDefs = [signature]
    flatbuffer_utils.write_model(model, path)


def _tensor_map(fb: Any, name: str, index: int) -> Any:
    entry = fb.TensorMapT()
    entry.name = name
    entry.tensorIndex = index
    return entry


def _options(fb: Any, options_type: str, fields: dict[str, Any], fused: str) -> Any:
    options = getattr(fb, f"{options_type}T")()
    for key, value in fields.items():
        if key == "padding":
            value = getattr(fb.Padding, str(value))
        setattr(options, key, value)
    if hasattr(options, "fusedActivationFunction"):
        options.fusedActivationFunction = getattr(fb.ActivationFunctionType, fused)
    return options
