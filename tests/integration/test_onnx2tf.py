"""The third-party onnx2tf backend converts mobilenet_v2 with no network access: NHWC, 0 TRANSPOSE, validated.

Environments are built first (that needs the package index); every conversion then runs inside
``unshare -n`` (a network namespace with no interfaces but loopback), so the onnx2tf
calibration-sample download, were it attempted, would fail the conversion. Both environments:
onnx2tf-2.6 (fp32 through its own flatbuffer writer, int8 through TFLiteConverter) and 1.29.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("liteport_onnx2tf") is None,
    reason="liteport-onnx2tf is not installed on the host (pip install -e plugins/liteport-onnx2tf)",
)

SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
ONNX2TF_ENVS = ("onnx2tf-2.6", "onnx2tf-1.29")
# mobilenet_v2 on 2.6 runs in `nox -s routes`, not in CI (time): CI converts tiny_cnn there in
# every mode through the conformance suite (test_conformance.py).
MOBILENET_ENVS = (pytest.param("onnx2tf-2.6", marks=pytest.mark.routes), "onnx2tf-1.29")
ENVIRONMENTS = (*ONNX2TF_ENVS, "torch-2.13", "litert-runtime")


def _convert(offline: list[str], env: str, mode: str) -> dict[str, Any]:
    command = ["convert", "zoo:mobilenet_v2", "--backend", "onnx2tf", "--env", env, "--quant", mode, "--json"]
    out = subprocess.run(
        [*offline, sys.executable, "-m", "liteport", *command],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    print(json.dumps({k: doc.get(k) for k in ("status", "error", "metrics")}, default=str)[:2000])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return doc


def _common_checks(doc: dict[str, Any], env: str) -> None:
    assert doc["status"] == "ok", doc.get("error")
    assert doc["backend"] == "onnx2tf" and doc["environment"] == env
    facts = doc["facts"]
    assert facts["transpose_ops"] == 0 and "TRANSPOSE" not in facts["op_counts"]
    assert facts["input_layout"] == "NHWC"
    assert facts["inputs"][0]["shape"] == [1, 224, 224, 3]
    assert facts["latency_ms"] > 0
    workdir = Path(doc["workdir"])
    assert (workdir / SAMPLE_FILE).is_file(), "the job's calibration data stands in for onnx2tf's download"
    log = (workdir / "onnx2tf.log").read_text(encoding="utf-8", errors="replace")
    assert "Max retries exceeded" not in log and "NameResolutionError" not in log


@pytest.mark.parametrize("env", MOBILENET_ENVS)
def test_fp32_offline(offline: list[str], env: str) -> None:
    doc = _convert(offline, env, "fp32")
    _common_checks(doc, env)
    assert doc["metrics"]["cosine"] >= 0.9999


@pytest.mark.parametrize("env", MOBILENET_ENVS)
def test_int8_offline(offline: list[str], env: str) -> None:
    doc = _convert(offline, env, "int8")
    _common_checks(doc, env)
    assert doc["facts"]["inputs"][0]["dtype"] == "int8"
    assert doc["metrics"]["sqnr_db"] >= 10 and doc["metrics"]["cosine"] >= 0.95


GELU_MODEL = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 4, 1)).eval()
    return model, (torch.randn(1, 3, 16, 16),)
"""


def test_flex_op_in_the_output_is_unsupported_op_at_the_convert_stage(engine: Any, tmp_path: Path) -> None:
    """Exact GELU exports Erf, which onnx2tf writes as FlexErf: named at convert, not a load failure later."""
    from liteport.plugins import get_plugin_manager
    from liteport.types import ModelSpec

    (tmp_path / "gelu_model.py").write_text(GELU_MODEL, encoding="utf-8")
    backend = get_plugin_manager(strict=True).backends()["onnx2tf"]
    env = next(e for e in backend.environments if e.name == "onnx2tf-1.29")
    attempt = engine.attempt(ModelSpec(ref=f"{tmp_path / 'gelu_model.py'}:build"), backend, env, "fp32")
    print(json.dumps({"status": attempt.status, "error": attempt.cause, "validations": attempt.validations}))
    assert attempt.status == "failed" and attempt.error is not None
    assert attempt.error.kind == "unsupported_op"
    assert "onnx2tf converted to ops LiteRT cannot run: Erf (Flex" in attempt.error.message
    assert not attempt.validations, "the convert stage decides; no validator is asked to load the file"
