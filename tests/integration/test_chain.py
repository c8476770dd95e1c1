"""A real fallback chain: the nightly AI Edge Torch lacks an FFT lowering, litert-torch has one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SPECTRUM = """
import torch
from torch import nn


class Spectrum(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(33, 8)

    def forward(self, x):
        return self.proj(torch.fft.rfft(x).abs())


def build():
    torch.manual_seed(0)
    return Spectrum().eval(), (torch.randn(1, 64),)
"""


def _convert(model: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liteport", "convert", f"{model}:build", *args],
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_chain_falls_through_an_unsupported_op(tmp_path: Path) -> None:
    model = tmp_path / "spectrum.py"
    model.write_text(SPECTRUM)
    out = _convert(model, "--chain", "ai-edge-torch-nightly,litert-torch-0.10", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    first, second = doc["attempts"]
    assert (first["environment"], first["status"], first["error"]["kind"]) == (
        "ai-edge-torch-nightly",
        "failed",
        "unsupported_op",
    )
    assert "_fft_r2c" in first["error"]["message"]
    assert (second["environment"], second["status"]) == ("litert-torch-0.10", "ok")
    assert doc["chosen"] == 1 and second["metrics"]["cosine"] >= 0.9999

    alone = _convert(model, "--chain", "ai-edge-torch-nightly")
    assert alone.returncode == 1
    assert "unsupported_op" in alone.stdout and "Traceback" not in alone.stdout + alone.stderr
