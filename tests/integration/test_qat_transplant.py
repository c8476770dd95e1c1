"""qat-transplant end to end (issues 6, 15): PyTorch's QAT parameters land in the .tflite, its int8
model is reproduced within one step on XNNPACK and on the reference kernels, post-training int8 of
the same model stands beside it, unsupported fails.

``nox -s qat`` runs this module with ``-s`` and prints the comparison table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from liteport.pipeline import Engine
from liteport.types import Attempt, Job, ModelSpec, Result

MODELS = ["tiny_cnn_qat", "mobilenet_v2_qat", "resnet_qat"]
ROWS: dict[tuple[str, str], dict[str, Any]] = {}


def _transplant(engine: Engine, ref: str, **options: object) -> Attempt:
    backend = engine.pm.backends()["qat-transplant"]
    attempt = engine.attempt(ModelSpec(ref=ref), backend, backend.environments[0], "qat", options=options)
    print(json.dumps({k: attempt.to_dict()[k] for k in ("status", "error", "metrics")}, default=str)[:1500])
    return attempt


def _validate(engine: Engine, validator: str, attempt: Attempt, reference: Result) -> Result:
    """Judge ``attempt``'s file against the QAT model's references (same seeded inputs)."""
    info = engine.pm.validators()[validator]
    workdir = Path(attempt.workdir or ".")
    job = Job(
        kind="validate",
        id=uuid.uuid4().hex[:12],
        workdir=str(workdir),
        model=ModelSpec(ref=attempt.model),
        mode="qat",
        backend=attempt.backend,
        environment=info.environment.name,
        validator=validator,
        options={
            "tflite": attempt.tflite,
            "reference": reference.artifacts["reference"],
            "input_layout": attempt.facts.get("input_layout", "NCHW"),
            "output_layout": attempt.facts.get("output_layout", "NCHW"),
        },
    )
    return engine.pool.run(
        info.environment, job, timeout=900, log=workdir / f"validate-{validator}-vs-qat.log"
    )


def _row(attempt: Attempt, qparams: Any, cosine: Any) -> dict[str, Any]:
    return {
        "backend": attempt.backend,
        "mode": attempt.mode,
        "qparams": f"{qparams.get('qparams_matched', 0)}/{qparams.get('qparams_total', 0)}",
        "within_1_step": qparams.get("int8_within_1_step"),
        "max_steps": qparams.get("int8_max_steps"),
        "within_1_step_reference": qparams.get("int8_within_1_step_reference"),
        "max_steps_reference": qparams.get("int8_max_steps_reference"),
        "cosine": cosine,
    }


# Issue 15: on TFLite's reference kernels (BUILTIN_REF) each conv is within one step of PyTorch
# (99.5-99.9% exact: gemmlowp requantizes with two roundings) and averages round ties away from
# zero (PyTorch: to even). The zoo's QAT models are kept out of the chaotic regime of random
# BatchNorm nets (liteport.zoo.qat._ordered), so those single steps stay single steps at the output.
def _reference_kernels_within_one_step(model: str, metrics: dict[str, Any]) -> None:
    """>= 99% within one step, none beyond two, on the reference kernels too."""
    within, steps = metrics["int8_within_1_step_reference"], metrics["int8_max_steps_reference"]
    first = metrics["int8_first_deviation_reference"]
    assert within >= 0.99 and steps <= 2, (model, within, steps, first)
    assert first is None or first["max_steps"] <= 1, first  # where it departs: one step


@pytest.mark.parametrize("model", MODELS)
def test_transplant_carries_pytorch_qparams(engine: Engine, model: str) -> None:
    attempt = _transplant(engine, f"zoo:{model}")
    metrics = attempt.metrics
    assert attempt.tflite and attempt.validations.get("qparams") == "ok", attempt.cause
    # The numeric validator compares with the fake-quant model (the qat thresholds allow for
    # PyTorch's own int8 model being a little off it).
    assert attempt.status == "ok", attempt.cause
    assert attempt.validations.get("numeric") == "ok" and "cosine" in metrics
    assert metrics["qparams_total"] > 0 and metrics["qparams_matched"] == metrics["qparams_total"]
    assert metrics["qparams_missing"] == [] and metrics["qparams_mismatches"] == []
    assert metrics["int8_within_1_step"] >= 0.99 and metrics["int8_max_steps"] <= 2
    _both_kernel_sets_reported(metrics)
    facts = attempt.facts
    assert facts["op_counts"].get("QUANTIZE", 0) == 0 and facts["op_counts"].get("DEQUANTIZE", 0) == 0
    assert [t["dtype"] for t in facts["inputs"] + facts["outputs"]] == ["int8", "int8"]
    ROWS[(model, "qat-transplant")] = _row(attempt, metrics, metrics.get("cosine"))
    _reference_kernels_within_one_step(model, metrics)


def _both_kernel_sets_reported(metrics: dict[str, Any]) -> None:
    """The verdict's figures are XNNPACK's; the reference kernels' stand beside them (issue 15)."""
    kernels = metrics["int8_kernels"]
    assert set(kernels) == {"xnnpack", "reference"}
    assert kernels["xnnpack"]["within_1_step"] == metrics["int8_within_1_step"]
    assert kernels["reference"]["within_1_step"] == metrics["int8_within_1_step_reference"]
    for figures in kernels.values():
        assert {"within_1_step", "max_steps", "exact", "first_deviation", "outputs"} <= set(figures)


# Issue 15's family (zoo:dw_residual_qat, zoo:dw_residual2_qat): strided stem conv+BN+ReLU,
# depthwise + pointwise branches added back without ReLU, global average pool, Linear head;
# qnnpack qconfig, fused, trained.
FAMILY = ["dw_residual_qat", "dw_residual2_qat"]


@pytest.mark.parametrize("model", FAMILY)
def test_global_pool_and_linear_head_reproduced_on_xnnpack(engine: Engine, model: str) -> None:
    attempt = _transplant(engine, f"zoo:{model}")
    metrics = attempt.metrics
    assert attempt.tflite and attempt.validations.get("qparams") == "ok", attempt.cause
    assert metrics["qparams_total"] > 0 and metrics["qparams_matched"] == metrics["qparams_total"]
    assert metrics["qparams_missing"] == [] and metrics["qparams_derived"] == 2  # the pool's filter and bias
    # XNNPACK reproduces PyTorch's int8 model exactly: every layer, then the head.
    assert metrics["int8_exact"] == 1.0 and metrics["int8_first_deviation"] is None
    _both_kernel_sets_reported(metrics)
    assert attempt.facts["op_counts"].get("MEAN", 0) == 0
    ROWS[(model, "qat-transplant")] = _row(attempt, metrics, metrics.get("cosine"))
    _reference_kernels_within_one_step(model, metrics)


@pytest.mark.parametrize("model", MODELS)
def test_post_training_int8_of_the_same_model_beside_it(engine: Engine, model: str) -> None:
    """ai-edge-torch int8 of the float twin (same trained weights), judged on the QAT references."""
    backend = engine.pm.backends()["ai-edge-torch"]
    environment = next(e for e in backend.environments if e.name == "litert-torch-0.10")
    ptq = engine.attempt(ModelSpec(ref=f"zoo:{model}_float"), backend, environment, "int8")
    assert ptq.tflite, ptq.cause  # converted; its own verdict (vs the float twin) is not the point here
    reference = engine.reference(ModelSpec(ref=f"zoo:{model}"))
    assert reference.ok and "reference_int8" in reference.artifacts
    agreement = _validate(engine, "qparams", ptq, reference)
    numeric = _validate(engine, "numeric", ptq, reference)
    assert "int8_within_1_step" in agreement.metrics, agreement.error
    # Re-calibrated parameters are not PyTorch's: the transplant's whole point.
    assert agreement.metrics["qparams_matched"] < agreement.metrics["qparams_total"]
    ROWS[(model, "ai-edge-torch")] = _row(ptq, agreement.metrics, numeric.metrics.get("cosine"))


COVERAGE = """
import torch
import torch.ao.quantization as tq
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.b = nn.Conv2d(3, 8, 1)
        self.clamp = nn.Hardtanh(0.0, 6.0)
        self.cat = nn.quantized.FloatFunctional()
        self.pool = nn.AvgPool2d(2)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
        self.relu = nn.ReLU()
        self.mp = nn.MaxPool2d(2, 2, 1)
        self.fc = nn.Sequential(nn.Linear(16 * 3 * 3, 10), nn.ReLU())

    def forward(self, x):
        x = self.quant(x)
        y = self.cat.cat([self.a(x), self.clamp(self.b(x))], dim=1)
        y = self.mp(self.relu(self.dw(self.pool(y))))
        return self.dequant(self.fc(y.reshape(y.shape[0], -1)))


def build():
    torch.manual_seed(0)
    model = Net().train()
    tq.fuse_modules_qat(model, [["a.0", "a.1"], ["fc.0", "fc.1"]], inplace=True)
    model.qconfig = tq.get_default_qat_qconfig("qnnpack")
    tq.prepare_qat(model, inplace=True)
    for _ in range(3):
        model(torch.randn(4, 3, 16, 16)).sum().backward()
    model.apply(tq.disable_observer)
    return model.eval(), (torch.randn(1, 3, 16, 16),)
"""


@pytest.mark.parametrize("channels_last", [False, True])
def test_cat_hardtanh_avgpool_padded_maxpool_reshape(
    engine: Engine, tmp_path: Path, channels_last: bool
) -> None:
    model = tmp_path / "coverage_qat.py"
    model.write_text(COVERAGE)
    attempt = _transplant(engine, f"{model}:build", **({"channels_last": True} if channels_last else {}))
    assert attempt.tflite and attempt.validations.get("numeric") == "ok", attempt.cause
    metrics = attempt.metrics
    assert metrics["qparams_matched"] == metrics["qparams_total"] and metrics["qparams_missing"] == []
    # The average pool and the cat's requantization are depthwise convs XNNPACK rounds like
    # PyTorch (AVERAGE_POOL_2D and QUANTIZE did not: 79% within one step, max 5, before issue 15).
    assert metrics["int8_exact"] == 1.0 and metrics["int8_max_steps"] == 0
    ops = attempt.facts["op_counts"]
    rescaled = metrics["qparams_derived"] // 2 - 1  # filter + bias per derived conv; one is the pool's
    assert ops.get("CONCATENATION") == 1 and ops.get("PADV2") == 1 and ops.get("QUANTIZE", 0) == 0
    assert ops.get("DEPTHWISE_CONV_2D") == 2 + rescaled and rescaled in (1, 2)
    assert ops.get("TRANSPOSE", 0) == (1 if channels_last else 2)  # the reshape's, plus NCHW input
    assert attempt.facts["input_layout"] == ("NHWC" if channels_last else "NCHW")


def test_unsupported_module_is_one_line_and_exit_1() -> None:
    argv = [sys.executable, "-m", "liteport", "convert", "zoo:qat_unsupported", "--quant", "qat"]
    argv += ["--backend", "qat-transplant"]
    out = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 1, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "failed" and doc["error"]["kind"] == "unsupported_op"
    message = doc["error"]["message"]
    assert "\n" not in message and "model.features.1 (GELU)" in message and "supported:" in message
    table = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    assert table.returncode == 1
    assert "unsupported_op" in table.stdout and "Traceback" not in table.stdout + table.stderr


def _percent(share: float | None) -> str:
    return f"{share * 100:.1f}%" if share is not None else "-"


def test_table_transplant_beside_post_training_int8() -> None:
    """What the transplant preserves that re-calibration does not: agreement with PyTorch's int8 model."""
    if not ROWS:
        pytest.skip("run with the tests above")
    header = f"{'model':<18} {'backend':<15} {'mode':<5} {'qparams':>9} {'<=1 step':>9} "
    header += f"{'max steps':>9} {'ref <=1':>8} {'ref max':>7} {'cosine':>8}"
    lines = [header, "-" * len(header)]
    for (model, _), row in sorted(ROWS.items()):
        lines.append(
            f"{model:<18} {row['backend']:<15} {row['mode']:<5} {row['qparams']:>9} "
            f"{_percent(row['within_1_step']):>9} {row['max_steps'] or 0:>9g} "
            f"{_percent(row['within_1_step_reference']):>8} {row['max_steps_reference'] or 0:>7g} "
            f"{row['cosine'] or float('nan'):>8.4f}"
        )
    print("\n" + "\n".join(lines))
    for model in MODELS:
        transplant, ptq = ROWS.get((model, "qat-transplant")), ROWS.get((model, "ai-edge-torch"))
        if transplant and ptq:
            assert transplant["within_1_step"] >= ptq["within_1_step"], model
