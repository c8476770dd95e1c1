"""The conformance suite (``pytest -p liteport.testing``) against every backend, in real environments.

* ai-edge-torch: on litert-torch-0.10 (the nightly environment has its own integration tests),
  every mode, with the suite's default unsupported-op model (``torch.unique``).
* onnx-tf: on onnx-tf-tf2.15, with the default model (onnx-tf 1.10 has no ``Unique`` handler).
* qat-transplant: its only mode is ``qat``, which needs a QAT-prepared model the suite does not
  build, so the suite itself skips the conversion checks: registration and hooks are checked.
* onnx2tf (third-party, ``plugins/liteport-onnx2tf``): every mode; onnx2tf implements every
  standard ONNX op up to opset 13, so the plugin supplies its own model with a custom-domain op.
  Both of its environments (onnx2tf-2.6, onnx2tf-1.29). Skipped when the plugin is not installed.
* nobuco (third-party, ``plugins/liteport-nobuco``): every mode, with the default model (nobuco's
  ``torch.unique`` converter takes 1-D input only: its assertion is ``unsupported_op``). Skipped
  when the plugin is not installed on the host.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from liteport.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parents[2]
ONNX2TF_UNSUPPORTED = ROOT / "plugins" / "liteport-onnx2tf" / "tests" / "unsupported_op.py"

CASES = {
    "ai-edge-torch": ["--liteport-env", "litert-torch-0.10"],
    "onnx-tf": ["--liteport-env", "onnx-tf-tf2.15"],
    "qat-transplant": [],
    "onnx2tf": ["--liteport-unsupported-model", f"{ONNX2TF_UNSUPPORTED}:build"],
    "nobuco": [],
}
# Out-of-tree backends: the module each one's distribution installs, and where it lives.
PLUGINS = {
    "onnx2tf": ("liteport_onnx2tf", "liteport-onnx2tf"),
    "nobuco": ("liteport_nobuco", "liteport-nobuco"),
}


@pytest.mark.parametrize("backend", list(CASES))
def test_backend_passes_the_conformance_suite(backend: str, tmp_path: Path) -> None:
    module, folder = PLUGINS.get(backend, ("liteport", ""))
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{folder} is not installed on the host (pip install -e plugins/{folder})")
    if backend not in get_plugin_manager().backends():
        pytest.skip(f"backend {backend!r} is not registered in this checkout")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "liteport.testing",
            "-p",
            "no:cacheprovider",
            "-rs",
            "--liteport-backend",
            backend,
            *CASES[backend],
        ],
        cwd=tmp_path,  # only the suite is collected, not this project's tests
        env={**os.environ, "LITEPORT_STRICT_PLUGINS": "0"},
        capture_output=True,
        text=True,
        timeout=7200,
    )
    print(out.stdout[-6000:])
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert " passed" in out.stdout
