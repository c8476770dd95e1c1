"""Op-level conformance of the QAT transplant (issue 15): every supported PyTorch quantized op
against the one-op TFLite graph the backend emits for it, on XNNPACK (the default delegate) and
on TFLite's reference kernels.

The cases run inside the backend's own environment (``qat-torch-2.13``: torch and ai-edge-litert)
through ``python -m liteport.backends.qat_transplant.conformance``; this test reads its JSON.
Seeded random int8 inputs and parameters: per-tensor and per-channel weights, quint8 zero points
over 0..255 and, as ``reduce_range`` observers keep them, over 0..127.

Requirement: exact on at least 99.9% of outputs and never more than one step. The exceptions are
the reference kernels' documented roundings (README, "QAT transplant"), asserted at their measured
floors so a regression still shows.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from liteport.backends.qat_transplant.environments import QAT_TORCH
from liteport.pipeline import Engine
from liteport.types import Result

SEED, CASES = 0, 12
MIN_EXACT = 0.999
# Reference kernels: gemmlowp fixed point rounds twice (conv, depthwise, the cat's rescale), and
# averages round ties away from zero (PyTorch: to even). Floors just under the measured shares
# (the cases are seeded: the figures repeat; README has them).
REFERENCE_FLOORS = {
    "conv2d": 0.99,
    "conv2d_relu": 0.995,
    "depthwise_conv2d": 0.993,
    "depthwise_conv2d_relu": 0.995,
    "cat": 0.999,
    "global_avg_pool": 0.995,
    "adaptive_avg_pool": 0.89,
    "avg_pool2d": 0.91,
}
OPS = (
    "conv2d",
    "depthwise_conv2d",
    "linear",
    "add",
    "cat",
    "global_avg_pool",
    "adaptive_avg_pool",
    "avg_pool2d",
    "max_pool2d",
    "relu",
    "relu6",
    "hardtanh",
    "flatten",
)


@pytest.fixture(scope="module")
def report(engine: Engine) -> dict[str, Any]:
    handle = engine.pool.handle(QAT_TORCH)
    assert not isinstance(handle, Result), handle.error
    python = handle.argv[0]  # the environment's interpreter (argv starts its worker)
    env = {**os.environ, **dict(handle.env or {})}  # PYTHONPATH: liteport's overlay
    argv = [python, "-m", "liteport.backends.qat_transplant.conformance", "--seed", str(SEED)]
    out = subprocess.run([*argv, "--cases", str(CASES)], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    found: dict[str, Any] = json.loads(out.stdout)
    print(_table(found))
    return found


def _table(found: dict[str, Any]) -> str:
    lines = [f"{'op':<22} {'TFLite ops':<34} {'ref exact':>9} {'max':>4} {'xnn exact':>9} {'max':>4}"]
    for op, row in found.items():
        ref, xnn = row["reference"], row["xnnpack"]
        lines.append(
            f"{op:<22} {','.join(row['tflite_ops']):<34} {ref['exact']:>9.4%} {ref['max_steps']:>4} "
            f"{xnn['exact']:>9.4%} {xnn['max_steps']:>4}"
        )
    return "\n".join(lines)


def test_every_supported_op_is_measured(report: dict[str, Any]) -> None:
    measured = {op.removesuffix("_relu") for op in report}
    assert set(OPS) <= measured


def test_xnnpack_reproduces_pytorch_op_by_op(report: dict[str, Any]) -> None:
    for op, row in report.items():
        xnn = row["xnnpack"]
        assert xnn["exact"] >= MIN_EXACT and xnn["max_steps"] <= 1, (op, xnn)


def test_reference_kernels_within_one_step_exact_but_for_documented_roundings(report: dict[str, Any]) -> None:
    for op, row in report.items():
        ref = row["reference"]
        assert ref["max_steps"] <= 1, (op, ref)
        assert ref["exact"] >= REFERENCE_FLOORS.get(op, MIN_EXACT), (op, ref)


def test_emitted_forms(report: dict[str, Any]) -> None:
    """Average pooling is a depthwise conv (MEAN and AVERAGE_POOL_2D round ties otherwise), and
    the cat's requantization too (QUANTIZE was a step off on 4% of values)."""
    for op in ("global_avg_pool", "adaptive_avg_pool", "avg_pool2d"):
        assert report[op]["tflite_ops"] == ["DEPTHWISE_CONV_2D"], op
    assert report["cat"]["tflite_ops"] == ["DEPTHWISE_CONV_2D", "CONCATENATION"]
    assert "QUANTIZE" not in {code for row in report.values() for code in row["tflite_ops"]}
