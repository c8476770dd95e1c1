"""Environments the core itself needs, whatever plugins are installed."""

from __future__ import annotations

from pathlib import Path

from liteport.types import EnvironmentSpec

_LOCKS = Path(__file__).parent.parent / "locks"  # core/locks: package data of liteport itself

# The reference stage runs PyTorch here so every backend is judged against the same outputs.
REFERENCE_ENV = EnvironmentSpec(
    name="torch-2.13",
    python="3.11",
    lock=str(_LOCKS / "torch-2.13.txt"),
    key_packages=("torch", "numpy", "onnx", "onnxruntime"),
    description="PyTorch reference outputs and ONNX export",
)
