"""The pinned environment of the QAT transplant backend (no heavy imports: read on the host)."""

from __future__ import annotations

from pathlib import Path

from liteport.api import EnvironmentSpec

LOCKS = Path(__file__).resolve().parent / "locks"

# torch converts and reads the QAT model; ai-edge-litert brings the TFLite flatbuffer schema.
QAT_TORCH = EnvironmentSpec(
    name="qat-torch-2.13",
    python="3.11",
    lock=str(LOCKS / "qat-torch-2.13.txt"),
    key_packages=("torch", "ai-edge-litert", "flatbuffers", "numpy"),
    modes=("qat",),
    description="torch 2.13 + ai-edge-litert 2.3 flatbuffer schema: writes the int8 graph itself",
)
ENVIRONMENTS = (QAT_TORCH,)
