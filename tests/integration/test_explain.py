"""``liteport explain`` with real converters (issue 10).

* planted-fault models (``tests/fixtures/planted_fault.py``: exact in float, one named block
  ruins int8) at two depths: on every backend environment, ``first_divergent`` is inside the block;
* models that pass in fp32: ``first_divergent`` is null and at least 90% of the modules that
  produce a tensor are matched;
* qat-transplant (qat mode, the planted models prepared for QAT): no divergence against PyTorch's
  int8 model, the planted block against the float model;
* the command line: ``liteport explain MODEL --quant int8 --json`` prints that document, and
  ``liteport convert`` names the explain command when the result is invalid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from liteport.pipeline import Engine
from liteport.pipeline.explain import ExplainOptions, explain
from liteport.types import ModelSpec

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "planted_fault.py"
PLANTED = {"shallow": "blocks.1", "deep": "blocks.4"}
# Every backend environment that converts from PyTorch or ONNX in int8 (onnx2tf when installed).
CELLS = [
    ("ai-edge-torch", "litert-torch-0.10"),
    ("ai-edge-torch", "ai-edge-torch-nightly"),
    ("onnx-tf", "onnx-tf-tf2.15"),
    ("onnx-tf", "onnx-tf-tf2.8"),
    ("onnx2tf", "onnx2tf-1.29"),
    ("onnx2tf", "onnx2tf-2.6"),
]


def _explain(
    engine: Engine, ref: str, backend_name: str, env_name: str, mode: str, reference: str | None = None
) -> dict[str, Any]:
    backends = engine.pm.backends()
    if backend_name not in backends:
        pytest.skip(f"backend {backend_name} is not installed (pip install -e plugins/liteport-onnx2tf)")
    backend = backends[backend_name]
    environment = next((e for e in backend.environments if e.name == env_name), None)
    if environment is None:
        pytest.skip(f"{backend_name} declares no environment {env_name}")
    settings = ExplainOptions(reference=reference)
    doc = explain(engine, ModelSpec(ref=ref), backend, environment, mode, settings=settings).document
    summary = {k: doc.get(k) for k in ("status", "cause", "coverage", "first_divergent", "error")}
    print(json.dumps(summary, default=str)[:3000])
    return doc


@pytest.mark.parametrize(("backend", "env"), CELLS, ids=[e for _, e in CELLS])
@pytest.mark.parametrize("depth", sorted(PLANTED))
def test_planted_fault_is_found_inside_its_block(engine: Engine, backend: str, env: str, depth: str) -> None:
    doc = _explain(engine, f"{FIXTURE}:{depth}", backend, env, "int8")
    assert doc["status"] == "invalid", doc.get("cause")
    first = doc["first_divergent"]
    assert first is not None, doc.get("error")
    assert first["module"].startswith(PLANTED[depth] + "."), first["module"]
    assert doc["coverage"]["fraction"] >= 0.9


@pytest.mark.parametrize(("backend", "env"), CELLS, ids=[e for _, e in CELLS])
@pytest.mark.parametrize("ref", ["zoo:tiny_cnn", f"{FIXTURE}:shallow"], ids=["tiny_cnn", "planted"])
def test_models_that_pass_in_fp32_have_no_divergent_layer(
    engine: Engine, backend: str, env: str, ref: str
) -> None:
    doc = _explain(engine, ref, backend, env, "fp32")
    assert doc["status"] == "ok", doc.get("cause")
    assert doc["first_divergent"] is None
    assert doc["coverage"]["fraction"] >= 0.9, doc["coverage"]


@pytest.mark.parametrize("depth", sorted(PLANTED))
def test_qat_transplant_matches_pytorch_int8_and_finds_the_fault_against_float(
    engine: Engine, depth: str
) -> None:
    """qat: against PyTorch's own int8 model (the default) the transplant agrees layer by layer;
    against the float model (fake quantization off) the planted block is where int8 breaks."""
    ref = f"{FIXTURE}:{depth}_qat"
    against_int8 = _explain(engine, ref, "qat-transplant", "qat-torch-2.13", "qat")
    assert against_int8["reference"] == "int8" and against_int8["first_divergent"] is None
    assert against_int8["coverage"]["fraction"] >= 0.9
    against_float = _explain(engine, ref, "qat-transplant", "qat-torch-2.13", "qat", reference="float")
    first = against_float["first_divergent"]
    assert first is not None, against_float.get("error")
    # the QAT zoo wrapper holds the network as "model" (quant -> model -> dequant)
    assert first["module"].startswith(f"model.{PLANTED[depth]}."), first["module"]


def _liteport(*args: str, work: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liteport", *args, "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_json_document_and_the_hint_from_convert(work_root: Path) -> None:
    ref = f"{FIXTURE}:deep"
    converted = _liteport("convert", ref, "--quant", "int8", "--backend", "ai-edge-torch", work=work_root)
    assert converted.returncode == 1, converted.stderr[-2000:]
    command = f"liteport explain {ref} --quant int8 --backend ai-edge-torch --env litert-torch-0.10"
    assert command in converted.stderr

    explained = _liteport(*command.split()[1:], "--json", work=work_root)
    assert explained.returncode == 0, explained.stderr[-2000:]
    doc = json.loads(explained.stdout)
    assert doc["schema"] == "liteport-explain/1"
    assert isinstance(doc["layers"], list) and doc["layers"]
    assert doc["first_divergent"]["module"].startswith("blocks.4.")
    assert doc["first_divergent"]["hint"], "the dominant channel should be named"

    table = _liteport(*command.split()[1:], work=work_root)
    assert table.returncode == 0
    assert "◀ first divergent" in table.stdout and "first divergent: blocks.4." in table.stdout
