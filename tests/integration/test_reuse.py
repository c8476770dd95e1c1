"""Work shared between modes changes no byte: every .tflite of a reusing run equals a cold run's.

The reusing run converts a model's modes back to back in one engine (fp16 first, so fp32 and
litert-torch's dynamic take the float flatbuffer fp16 left behind; onnx-tf
quantizes one SavedModel four times). Each cold run is one mode alone: a new engine (new workers,
empty memory), an empty work folder, reuse off.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from liteport.pipeline import Engine
from liteport.plugins import get_plugin_manager
from liteport.runtimes.venv import VenvRuntime
from liteport.types import Attempt, ModelSpec

MODEL = ModelSpec(ref="zoo:tiny_cnn")
MODES = ("fp16", "fp32", "dynamic", "int8")
ROUTES = [("ai-edge-torch", "litert-torch-0.10"), ("onnx-tf", "onnx-tf-tf2.15")]


def _attempts(
    work: Path, backend_name: str, env_name: str, modes: tuple[str, ...], *, reuse: bool
) -> list[Attempt]:
    pm = get_plugin_manager(strict=True)
    backend = pm.backends()[backend_name]
    env = next(e for e in backend.environments if e.name == env_name)
    with Engine(pm=pm, runtime=VenvRuntime(), work_root=work, reuse=reuse) as engine:
        return [engine.attempt(MODEL, backend, env, mode) for mode in modes]


def _digest(attempt: Attempt) -> str:
    assert attempt.status == "ok", f"{attempt.mode}: {attempt.cause}"
    return hashlib.sha256(Path(attempt.tflite or "").read_bytes()).hexdigest()


@pytest.mark.parametrize(("backend", "env"), ROUTES, ids=[env for _, env in ROUTES])
def test_reusing_run_writes_the_bytes_of_cold_single_mode_runs(
    backend: str, env: str, tmp_path: Path
) -> None:
    reused = _attempts(tmp_path / "reused", backend, env, MODES, reuse=True)
    cold = {
        mode: _attempts(tmp_path / f"cold-{mode}", backend, env, (mode,), reuse=False)[0] for mode in MODES
    }
    by_mode = {a.mode: a for a in reused}
    assert {mode: _digest(by_mode[mode]) for mode in MODES} == {mode: _digest(cold[mode]) for mode in MODES}
    # ...and the reuse did happen: otherwise this would compare two cold runs
    reused_facts = {a.mode: a.facts.get("reused") for a in reused}
    if backend == "onnx-tf":
        assert all(reused_facts[m] == ["convert"] for m in MODES[1:]), reused_facts
    else:  # fp32 copies the float flatbuffer fp16 kept, dynamic applies its recipe to it
        assert "fp32.tflite" in (reused_facts["fp32"] or []), reused_facts
        assert "fp32.tflite" in (reused_facts["dynamic"] or []), reused_facts
        assert "full_dynamic_recipe" in by_mode["dynamic"].facts["quantization"]


COUNTED = """
import sys
from pathlib import Path

import torch
from torch import nn


def build():
    with (Path(__file__).parent / "loads.txt").open("a") as log:
        log.write(sys.prefix + "\\n")  # which environment loaded the model
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return net.eval(), (torch.randn(1, 3, 16, 16),)
"""


def test_modes_served_from_the_kept_float_flatbuffer_do_not_load_the_model(tmp_path: Path) -> None:
    source = tmp_path / "counted.py"
    source.write_text(COUNTED)
    model = ModelSpec(ref=f"{source}:build")
    pm = get_plugin_manager(strict=True)
    backend = pm.backends()["ai-edge-torch"]
    env = next(e for e in backend.environments if e.name == "litert-torch-0.10")
    with Engine(pm=pm, runtime=VenvRuntime(), work_root=tmp_path / "work", reuse=True) as engine:
        attempts = [engine.attempt(model, backend, env, mode) for mode in MODES]
    assert [a.status for a in attempts] == ["ok"] * len(MODES), [a.cause for a in attempts]
    by_mode = {a.mode: a for a in attempts}
    assert "fp32.tflite" in (by_mode["dynamic"].facts.get("reused") or [])
    loads = [line for line in (tmp_path / "loads.txt").read_text().splitlines() if env.name in line]
    # fp16 converts the float model and keeps it; int8 quantizes the module (PT2E); fp32 and
    # dynamic start from the kept flatbuffer and need no module
    assert len(loads) == 2, loads
