"""Op-level conformance of the transplant: each supported PyTorch quantized op against the one-op
TFLite graph the backend emits for it, on TFLite's reference kernels and on XNNPACK.

Runs inside the backend's environment (torch and ai-edge-litert):
``python -m liteport.backends.qat_transplant.conformance [--seed N] [--cases N]`` prints one JSON
document: per op, the share of int8 outputs equal to PyTorch's (qnnpack engine) and the largest
difference in steps, on each kernel set. Cases are seeded: random int8 inputs and random
parameters (per-tensor and per-channel weights, quint8 zero points anywhere in 0..255 or, as
``reduce_range`` observers choose them, in 0..127), so a run is reproducible bit for bit.
"""

# Lint venvs have no torch, so nn.Module is Any there; the cases subclass it.
# mypy: allow-subclassing-any

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
from torch import nn

from liteport.api import qat
from liteport.backends.qat_transplant import lower, writer

KERNELS = ("reference", "xnnpack")
ENGINE = "qnnpack"


@dataclass
class Case:
    """One converted one-op PyTorch model and the quantized inputs it is fed."""

    op: str
    module: nn.Module
    inputs: list[torch.Tensor]  # quantized (quint8) tensors


class _OneOp(nn.Module):
    """``Quantize`` stub -> ``body`` -> ``DeQuantize``: a converted model holding one op."""

    def __init__(self, stub: nnq.Quantize, body: nn.Module) -> None:
        super().__init__()
        self.quant = stub
        self.body = body
        self.dequant = nnq.DeQuantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dequant(self.body(self.quant(x)))
        return out


class _TwoInputOp(nn.Module):
    """Two stubs -> a ``QFunctional`` op (add, add_relu, cat) -> ``DeQuantize``."""

    def __init__(self, stubs: tuple[nnq.Quantize, nnq.Quantize], body: nnq.QFunctional, op: str) -> None:
        super().__init__()
        self.quant_a, self.quant_b = stubs
        self.body = body
        self.op = op
        self.dequant = nnq.DeQuantize()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        qa, qb = self.quant_a(a), self.quant_b(b)
        if self.op == "cat":
            out = self.body.cat([qa, qb], dim=1)
        elif self.op == "add_relu":
            out = self.body.add_relu(qa, qb)
        else:
            out = self.body.add(qa, qb)
        result: torch.Tensor = self.dequant(out)
        return result


# -- random parameters ---------------------------------------------------------------------------


def _activation(rng: np.random.Generator) -> tuple[float, int]:
    """A quint8 activation's (scale, zero point): full-range or reduce_range observer ranges."""
    scale = float(rng.uniform(0.004, 0.1))
    high = 128 if rng.random() < 0.3 else 256  # reduce_range observers keep zero points in 0..127
    return scale, int(rng.integers(0, high))


def _input(rng: np.random.Generator, shape: tuple[int, ...], params: tuple[float, int]) -> torch.Tensor:
    ints = torch.from_numpy(rng.integers(0, 256, size=shape).astype(np.uint8))
    return torch._make_per_tensor_quantized_tensor(ints, params[0], params[1])


def _weight(rng: np.random.Generator, shape: tuple[int, ...], per_channel: bool) -> torch.Tensor:
    ints = torch.from_numpy(rng.integers(-127, 128, size=shape).astype(np.int8))
    if per_channel:
        scales = torch.from_numpy(rng.uniform(0.001, 0.02, size=shape[0]))
        zeros = torch.zeros(shape[0], dtype=torch.long)
        return torch._make_per_channel_quantized_tensor(ints, scales, zeros, 0)
    return torch._make_per_tensor_quantized_tensor(ints, float(rng.uniform(0.001, 0.02)), 0)


def _stub(params: tuple[float, int]) -> nnq.Quantize:
    return nnq.Quantize(params[0], params[1], torch.quint8)


# -- cases per op ----------------------------------------------------------------------------------


def _conv(rng: np.random.Generator, depthwise: bool) -> Case:
    channels = int(rng.choice([4, 8, 16]))
    cin, cout = (channels, channels) if depthwise else (int(rng.choice([3, 8, 16])), channels)
    kernel = int(rng.choice([1, 3, 5]))
    stride, dilation = int(rng.choice([1, 2])), int(rng.choice([1, 1, 2]))
    padding = int(rng.integers(0, kernel // 2 + 1)) * dilation
    relu = bool(rng.random() < 0.5)
    kind = nniq.ConvReLU2d if relu else nnq.Conv2d
    module = kind(cin, cout, kernel, stride, padding, dilation, groups=cin if depthwise else 1)
    weight = _weight(rng, (cout, 1 if depthwise else cin, kernel, kernel), bool(rng.random() < 0.5))
    module.set_weight_bias(weight, torch.from_numpy(rng.normal(0.0, 0.5, size=cout).astype(np.float32)))
    module.scale, module.zero_point = _activation(rng)
    size = int(rng.integers(8, 15))
    params = _activation(rng)
    name = ("depthwise_conv2d" if depthwise else "conv2d") + ("_relu" if relu else "")
    return Case(name, _OneOp(_stub(params), module), [_input(rng, (1, cin, size, size), params)])


def _linear(rng: np.random.Generator) -> Case:
    cin, cout = int(rng.choice([8, 16, 64])), int(rng.choice([4, 10, 32]))
    relu = bool(rng.random() < 0.5)
    module = (nniq.LinearReLU if relu else nnq.Linear)(cin, cout)
    weight = _weight(rng, (cout, cin), bool(rng.random() < 0.5))
    module.set_weight_bias(weight, torch.from_numpy(rng.normal(0.0, 0.5, size=cout).astype(np.float32)))
    module.scale, module.zero_point = _activation(rng)
    params = _activation(rng)
    name = "linear_relu" if relu else "linear"
    return Case(name, _OneOp(_stub(params), module), [_input(rng, (16, cin), params)])


def _functional(rng: np.random.Generator, op: str) -> Case:
    body = nnq.QFunctional()
    body.scale, body.zero_point = _activation(rng)
    params = (_activation(rng), _activation(rng))
    shape = (1, 6, 10, 10)
    model = _TwoInputOp((_stub(params[0]), _stub(params[1])), body, op)
    return Case(op, model, [_input(rng, shape, p) for p in params])


def _pooling(rng: np.random.Generator, kind: str) -> Case:
    params = _activation(rng)
    size = int(rng.choice([4, 6, 7, 8, 12, 14, 16]))
    body: nn.Module
    if kind == "global_avg_pool":
        body = nn.AdaptiveAvgPool2d(1)
    elif kind == "adaptive_avg_pool":
        size = int(rng.choice([4, 6, 8, 12, 16]))
        body = nn.AdaptiveAvgPool2d(size // int(rng.choice([2, 4 if size % 4 == 0 else 2])))
    elif kind == "avg_pool2d":
        kernel = int(rng.choice([2, 3]))
        body = nn.AvgPool2d(kernel, int(rng.choice([1, kernel])))
    else:
        kernel = int(rng.choice([2, 3]))
        body = nn.MaxPool2d(kernel, int(rng.choice([1, 2])), int(rng.integers(0, kernel // 2 + 1)))
    channels = 64 if kind == "global_avg_pool" else 16
    return Case(kind, _OneOp(_stub(params), body), [_input(rng, (1, channels, size, size), params)])


def _clamp(rng: np.random.Generator, kind: str) -> Case:
    params = _activation(rng)
    body: nn.Module = nn.ReLU()
    if kind == "relu6":
        body = nnq.ReLU6()
    elif kind == "hardtanh":
        low, high = [(-1.0, 1.0), (0.0, 1.0), (0.0, 6.0)][int(rng.integers(0, 3))]
        body = nn.Hardtanh(low, high)
    return Case(kind, _OneOp(_stub(params), body), [_input(rng, (1, 8, 9, 9), params)])


def _flatten(rng: np.random.Generator) -> Case:
    params = _activation(rng)
    return Case("flatten", _OneOp(_stub(params), nn.Flatten()), [_input(rng, (1, 8, 5, 5), params)])


MAKERS: dict[str, Callable[[np.random.Generator], Case]] = {
    "conv2d": lambda rng: _conv(rng, depthwise=False),
    "depthwise_conv2d": lambda rng: _conv(rng, depthwise=True),
    "linear": _linear,
    "add": lambda rng: _functional(rng, "add_relu" if rng.random() < 0.5 else "add"),
    "cat": lambda rng: _functional(rng, "cat"),
    "global_avg_pool": lambda rng: _pooling(rng, "global_avg_pool"),
    "adaptive_avg_pool": lambda rng: _pooling(rng, "adaptive_avg_pool"),
    "avg_pool2d": lambda rng: _pooling(rng, "avg_pool2d"),
    "max_pool2d": lambda rng: _pooling(rng, "max_pool2d"),
    "relu": lambda rng: _clamp(rng, "relu"),
    "relu6": lambda rng: _clamp(rng, "relu6"),
    "hardtanh": lambda rng: _clamp(rng, "hardtanh"),
    "flatten": _flatten,
}


# -- running one case ------------------------------------------------------------------------------


def _int8(tensor: torch.Tensor) -> np.ndarray:
    """A quantized tensor's integers as TFLite int8 holds them, NHWC when 4-D."""
    ints = np.asarray(tensor.int_repr().numpy(), dtype=np.int32) + qat.ZERO_POINT_SHIFT[str(tensor.dtype)]
    return np.asarray(ints.transpose(0, 2, 3, 1) if ints.ndim == 4 else ints)


def run_case(case: Case, folder: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(op codes emitted, per kernel set the int8 difference to PyTorch's output, in steps)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    floats = [x.dequantize() for x in case.inputs]  # the stubs quantize them back to these integers
    traced = qat.trace(case.module, floats, ENGINE)
    graph = lower.lower(traced, case.op, nchw_io=False)
    path = folder / f"{case.op}.tflite"
    writer.write(graph, path, description=f"conformance case {case.op}")
    values, _ = qat.record(traced.graph_module, floats, ENGINE)
    given = qat.quantized_inputs(traced.graph_module, values)
    expected = _int8(_quantized_output(traced, values))
    resolvers = {"reference": OpResolverType.BUILTIN_REF, "xnnpack": OpResolverType.AUTO}
    diffs = {}
    for kernels, resolver in resolvers.items():
        interpreter = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        for detail, quantized in zip(interpreter.get_input_details(), given):
            interpreter.set_tensor(detail["index"], _int8(quantized).astype(np.int8))
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).astype(np.int32)
        diffs[kernels] = np.abs(got - expected.reshape(got.shape))
    return [op.code for op in graph.ops], diffs


def _quantized_output(traced: qat.Traced, values: dict[str, Any]) -> torch.Tensor:
    """The quantized tensor the model's DeQuantize reads."""
    out = next(n for n in traced.graph_module.graph.nodes if n.op == "output")
    dequant = out.args[0]
    value = values[dequant.args[0].name]
    assert isinstance(value, torch.Tensor) and value.is_quantized
    return value


def cases(seed: int, count: int) -> Iterator[Case]:
    """``count`` seeded cases of every op, op by op."""
    for index, make in enumerate(MAKERS.values()):
        rng = np.random.default_rng([seed, index])
        for _ in range(count):
            with qat.quantized_engine(ENGINE):  # weights are packed for the engine current at creation
                case = make(rng)
            yield case


def measure(seed: int = 0, count: int = 12) -> dict[str, Any]:
    """Per op: the TFLite ops emitted and, per kernel set, exact share, within-one share, max steps."""
    found: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="liteport-conformance-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in cases(seed, count):
            codes, diffs = run_case(case, Path(tmp))
            entry = found.setdefault(
                case.op, {"tflite_ops": [], "diffs": {k: [] for k in KERNELS}, "cases": 0}
            )
            entry["cases"] += 1
            for code in codes:
                if code not in entry["tflite_ops"]:
                    entry["tflite_ops"].append(code)
            for kernels in KERNELS:
                entry["diffs"][kernels].append(diffs[kernels].reshape(-1))
    report: dict[str, Any] = {}
    for op, entry in found.items():
        row: dict[str, Any] = {"tflite_ops": entry["tflite_ops"], "cases": entry["cases"]}
        for kernels in KERNELS:
            d = np.concatenate(entry["diffs"][kernels])
            row[kernels] = {
                "exact": float(np.mean(d == 0)),
                "within_1_step": float(np.mean(d <= 1)),
                "max_steps": int(d.max()),
                "elements": int(d.size),
            }
        report[op] = row
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=12, help="random cases per op")
    args = parser.parse_args()
    print(json.dumps(measure(args.seed, args.cases), indent=1))


if __name__ == "__main__":
    main()
