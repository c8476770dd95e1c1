"""The third-party nobuco backend converts mobilenet_v2 with no network access: NHWC, 0 TRANSPOSE, validated.

Environments are built first (that needs the package index); every conversion then runs inside
``unshare -n``. CI runs the "no converter found" path on a one-conv model (and tiny_cnn in every
mode through the conformance suite, test_conformance.py); mobilenet_v2 in fp32 and int8 is marked
``routes`` and runs in ``nox -s routes`` (about 4 minutes, kept out of CI for time).
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
    importlib.util.find_spec("liteport_nobuco") is None,
    reason="liteport-nobuco is not installed on the host (pip install -e plugins/liteport-nobuco)",
)

ENV = "nobuco-0.17"
ENVIRONMENTS = (ENV, "torch-2.13", "litert-runtime")
NO_CONVERTER = Path(__file__).resolve().parents[2] / "plugins/liteport-nobuco/tests/no_converter.py"


def _convert(offline: list[str], model: str, mode: str) -> tuple[int, dict[str, Any]]:
    command = ["convert", model, "--backend", "nobuco", "--env", ENV, "--quant", mode, "--json"]
    out = subprocess.run(
        [*offline, sys.executable, "-m", "liteport", *command],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    print(json.dumps({k: doc.get(k) for k in ("status", "error", "metrics")}, default=str)[:2000])
    return out.returncode, doc


def _mobilenet_checks(code: int, doc: dict[str, Any]) -> None:
    assert code == 0 and doc["status"] == "ok", doc.get("error")
    assert doc["backend"] == "nobuco" and doc["environment"] == ENV
    facts = doc["facts"]
    assert facts["transpose_ops"] == 0 and "TRANSPOSE" not in facts["op_counts"]
    assert facts["input_layout"] == "NHWC" and facts["inputs"][0]["shape"] == [1, 224, 224, 3]
    assert facts["converter"] == "nobuco 0.17.0" and facts["torchvision"] == "liteport stand-in"
    assert facts["latency_ms"] > 0
    assert (Path(doc["workdir"]) / "nobuco.log").is_file()


@pytest.mark.routes
def test_mobilenet_v2_fp32_offline(offline: list[str]) -> None:
    code, doc = _convert(offline, "zoo:mobilenet_v2", "fp32")
    _mobilenet_checks(code, doc)
    assert doc["metrics"]["cosine"] >= 0.9999


@pytest.mark.routes
def test_mobilenet_v2_int8_offline(offline: list[str]) -> None:
    code, doc = _convert(offline, "zoo:mobilenet_v2", "int8")
    _mobilenet_checks(code, doc)
    assert doc["facts"]["inputs"][0]["dtype"] == "int8"
    assert doc["metrics"]["sqnr_db"] >= 10 and doc["metrics"]["cosine"] >= 0.95


def test_op_without_converter_is_unsupported_op(offline: list[str]) -> None:
    code, doc = _convert(offline, f"{NO_CONVERTER}:build", "fp32")
    assert code == 1 and doc["status"] == "failed"
    assert doc["error"]["kind"] == "unsupported_op"
    assert "nobuco has no converter for torch.erfinv" in doc["error"]["message"]
    assert "\n" not in doc["error"]["message"]


def test_a_torch_export_program_is_refused_in_one_line(offline: list[str], tmp_path: Path) -> None:
    """nobuco traces module calls; a .pt2 holds none (measured: its tracer fails in the GraphModule)."""
    import torch

    from liteport import zoo

    module, inputs = zoo.get("tiny_cnn")()
    program = tmp_path / "tiny_cnn.pt2"
    torch.export.save(torch.export.export(module, inputs), str(program))
    code, doc = _convert(offline, str(program), "fp32")
    assert code == 1 and doc["status"] == "failed"
    assert doc["error"]["kind"] == "converter_error"
    assert "a torch.export program (.pt2) has none" in doc["error"]["message"]
    assert "\n" not in doc["error"]["message"]
