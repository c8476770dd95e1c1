"""The validator names the ops LiteRT runs outside its delegate (XNNPACK), from the real interpreter.

A dynamic-range model's depthwise convolutions (hybrid: int8 weights, float activations) have no
XNNPACK kernel and run on the built-in ones, beside whatever the float model itself leaves out.
Reports use this to say why an int8 cell is slower than fp32.
"""

from __future__ import annotations

from pathlib import Path

from liteport.pipeline import Engine
from liteport.plugins import get_plugin_manager
from liteport.runtimes.venv import VenvRuntime
from liteport.types import ModelSpec

MODEL = ModelSpec(ref="zoo:hardswish_se")  # 5x5 depthwise convolutions, 64x64 input


def test_hybrid_depthwise_runs_outside_xnnpack_and_the_float_model_inside(tmp_path: Path) -> None:
    pm = get_plugin_manager(strict=True)
    backend = pm.backends()["ai-edge-torch"]
    env = next(e for e in backend.environments if e.name == "litert-torch-0.10")
    with Engine(pm=pm, runtime=VenvRuntime(), work_root=tmp_path) as engine:
        fp32, dynamic = (engine.attempt(MODEL, backend, env, mode) for mode in ("fp32", "dynamic"))
    assert fp32.status == "ok" and dynamic.status == "ok", (fp32.cause, dynamic.cause)
    float_outside = fp32.facts["ops_outside_delegate"]
    # Measured: XNNPACK takes every float op but the upsample (RESIZE_NEAREST_NEIGHBOR).
    assert "DEPTHWISE_CONV_2D" not in float_outside
    assert sum(float_outside.values()) < fp32.facts["num_ops"] / 4, float_outside
    depthwise = dynamic.facts["op_counts"]["DEPTHWISE_CONV_2D"]
    assert depthwise > 0
    assert dynamic.facts["ops_outside_delegate"] == {**float_outside, "DEPTHWISE_CONV_2D": depthwise}
