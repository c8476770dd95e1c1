"""More models through more routes (issue 14), with real converters, kept lean for CI.

* a ``torch.export`` program (``.pt2``) converts in fp32 on every backend environment that offers it;
* attention (``scaled_dot_product_attention``, ONNX opset 14) converts on onnx2tf;
* a converted model LiteRT refuses to prepare is ``invalid_model`` with the runtime's reason;
* a quantizer that refuses an op a rewrite replaces (PT2E and GRU) gets the rewritten model;
* the README's Python API example runs as written.

onnx-tf's own cases (opset 12 for Squeeze, 14 for attention, the GELU rewrite) are in test_onnx_tf.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from liteport.pipeline import Engine
from liteport.pipeline.rewriting import attempts_with_rewrites
from liteport.types import Attempt, ModelSpec

README = Path(__file__).resolve().parents[2] / "README.md"
FP32_ENVIRONMENTS = [
    "litert-torch-0.10",
    "ai-edge-torch-nightly",
    "onnx-tf-tf2.15",
    "onnx-tf-tf2.8",
    "onnx2tf-1.29",
    "onnx2tf-2.6",
]
needs_onnx2tf = pytest.mark.skipif(
    importlib.util.find_spec("liteport_onnx2tf") is None,
    reason="liteport-onnx2tf is not installed on the host (pip install -e plugins/liteport-onnx2tf)",
)


def _attempt(engine: Engine, model: ModelSpec, env: str, mode: str) -> Attempt:
    backend = next(b for b in engine.pm.backends().values() if env in {e.name for e in b.environments})
    environment = next(e for e in backend.environments if e.name == env)
    attempt = engine.attempt(model, backend, environment, mode)
    print(json.dumps({k: attempt.to_dict()[k] for k in ("status", "error", "metrics")}, default=str)[:2000])
    return attempt


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from liteport import zoo

    module, inputs = zoo.get("tiny_cnn")()
    path = tmp_path_factory.mktemp("pt2") / "tiny_cnn.pt2"
    torch.export.save(torch.export.export(module, inputs), str(path))
    return path


@pytest.mark.parametrize(
    "env", [pytest.param(e, marks=needs_onnx2tf) if e.startswith("onnx2tf") else e for e in FP32_ENVIRONMENTS]
)
def test_a_pt2_program_converts_everywhere(engine: Engine, program: Path, env: str) -> None:
    attempt = _attempt(engine, ModelSpec(ref=str(program)), env, "fp32")
    assert attempt.status == "ok", attempt.cause
    assert attempt.metrics["cosine"] >= 0.9999 and attempt.facts["model_name"] == "tiny_cnn"


def test_convert_takes_a_pt2_on_the_command_line(program: Path, tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "liteport",
        "convert",
        str(program),
        "--quant",
        "fp32",
        "--backend",
        "onnx-tf",
    ]
    out = subprocess.run(
        [*argv, "--workdir", str(tmp_path), "--json"], capture_output=True, text=True, timeout=3600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc["status"] == "ok" and doc["facts"]["onnx_exporter"] == "torchscript"


@needs_onnx2tf
def test_attention_converts_on_onnx2tf(engine: Engine) -> None:
    attempt = _attempt(engine, ModelSpec(ref="zoo:sdpa_encoder"), "onnx2tf-1.29", "fp32")
    assert attempt.status == "ok", attempt.cause
    assert attempt.facts["onnx_opset"] == 14 and attempt.metrics["cosine"] >= 0.9999


def test_a_model_the_runtime_refuses_is_invalid_model(engine: Engine) -> None:
    # int8 LOG_SOFTMAX must have output scale 16/256; PT2E calibration gives it another, and
    # LiteRT refuses to prepare the node: the converter's fault, with the runtime's words
    attempt = _attempt(engine, ModelSpec(ref="zoo:logsoftmax_head"), "litert-torch-0.10", "int8")
    assert attempt.status == "invalid" and attempt.error is not None, attempt.cause
    assert attempt.error.kind == "invalid_model", attempt.cause
    assert "LOG_SOFTMAX" in attempt.error.message and "failed to prepare" in attempt.error.message


def test_a_quantizer_refusing_an_op_gets_the_rewrite(engine: Engine) -> None:
    # PT2E (int8) refuses PyTorch's GRU node ("expecting GRU to have two outputs"): a quantizer_error
    # naming GRU, which recurrent-unroll replaces; the unrolled cell equations quantize and validate
    backend = engine.pm.backends()["ai-edge-torch"]
    env = next(e for e in backend.environments if e.name == "litert-torch-0.10")
    first, rewritten = attempts_with_rewrites(engine, ModelSpec(ref="zoo:gru"), backend, env, "int8")
    assert first.error is not None and first.error.kind == "quantizer_error", first.cause
    assert "GRU" in first.error.message
    assert rewritten.status == "ok" and list(rewritten.rewrites) == ["recurrent-unroll"], rewritten.cause
    assert rewritten.metrics["sqnr_db"] >= 20


def test_the_readme_python_example_runs(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- python-api-example[^>]*-->\s*```python\n(.*?)```", text, re.DOTALL)
    assert found, "README.md lost its Python API example"
    (tmp_path / "example.py").write_text(found.group(1), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=3600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "small.tflite").is_file() and (tmp_path / "small-matrix" / "matrix.json").is_file()
    assert "litert-torch-0.10" in out.stdout
