"""ai-edge-torch converts real zoo models in real environments, judged by the shared runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from liteport.pipeline import Engine
from liteport.types import Attempt, ModelSpec

ENVIRONMENTS = ["litert-torch-0.10", "ai-edge-torch-nightly"]


def _attempt(engine: Engine, model: str, env: str, mode: str, **options: object) -> Attempt:
    backend = engine.pm.backends()["ai-edge-torch"]
    environment = next(e for e in backend.environments if e.name == env)
    attempt = engine.attempt(ModelSpec(ref=f"zoo:{model}"), backend, environment, mode, options=options)
    print(json.dumps({k: attempt.to_dict()[k] for k in ("status", "error", "metrics")}, default=str)[:2000])
    return attempt


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("model", ["tiny_cnn", "mobilenet_v2"])
def test_fp32_matches_pytorch(engine: Engine, env: str, model: str) -> None:
    attempt = _attempt(engine, model, env, "fp32")
    assert attempt.status == "ok", attempt.cause
    assert attempt.metrics["cosine"] >= 0.9999
    assert attempt.lock_hash and attempt.environment == env
    assert attempt.facts["op_counts"].get("TRANSPOSE", 0) == attempt.facts["transpose_ops"]
    assert attempt.facts["latency_ms"] > 0 and attempt.facts["size_bytes"] > 0


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("model", ["tiny_cnn", "mobilenet_v2"])
def test_int8_passes_int8_thresholds(engine: Engine, env: str, model: str) -> None:
    attempt = _attempt(engine, model, env, "int8")
    assert attempt.status == "ok", attempt.cause
    assert attempt.metrics["sqnr_db"] >= 10
    assert attempt.facts["op_counts"], "the op inventory is recorded"


def test_channels_last_removes_the_input_transpose(engine: Engine) -> None:
    nchw = _attempt(engine, "mobilenet_v2", "litert-torch-0.10", "fp32")
    nhwc = _attempt(engine, "mobilenet_v2", "litert-torch-0.10", "fp32", channels_last=True)
    assert nhwc.status == "ok", nhwc.cause
    assert nhwc.facts["input_layout"] == "NHWC"
    assert nhwc.facts["transpose_ops"] < nchw.facts["transpose_ops"]


def test_cli_json_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "liteport", "convert", "zoo:tiny_cnn", "--quant", "dynamic", "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    doc = json.loads(out.stdout)
    assert out.returncode == 0, out.stderr
    assert doc["status"] == "ok"
    assert doc["backend"] == "ai-edge-torch" and doc["environment"] == "litert-torch-0.10"
    for key in ("sqnr_db", "cosine", "max_abs"):
        assert key in doc["metrics"]
    assert doc["versions"]["litert-torch"] == "0.10.0"
    assert "transpose_ops" in doc["facts"] and "latency_ms" in doc["facts"]


UNSUPPORTED = """
import torch
from torch import nn


class Dedup(nn.Module):
    def forward(self, x):
        return torch.unique(x.round()).float().sum().reshape(1) + x.mean()


def build():
    return Dedup(), (torch.randn(1, 16),)
"""


def test_unsupported_op_is_one_line_and_exit_1(tmp_path: Path) -> None:
    model = tmp_path / "dedup.py"
    model.write_text(UNSUPPORTED)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "liteport",
            "convert",
            f"{model}:build",
            "--quant",
            "fp32",
            "--env",
            "litert-torch-0.10",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "failed"
    assert doc["error"]["kind"] == "unsupported_op"
    assert "unique" in doc["error"]["message"] and "\n" not in doc["error"]["message"]
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "liteport",
            "convert",
            f"{model}:build",
            "--quant",
            "fp32",
            "--env",
            "litert-torch-0.10",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert table.returncode == 1
    assert "unsupported_op" in table.stdout and "Traceback" not in table.stdout + table.stderr
