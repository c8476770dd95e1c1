"""The two pinned environments of the AI Edge Torch backend and the converter package in each.

Kept free of heavy imports: the plugin's registration hook reads it on the host.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from liteport.api import EnvironmentBuildError, EnvironmentSpec

LOCKS = Path(__file__).resolve().parent / "locks"

LITERT_TORCH = EnvironmentSpec(
    name="litert-torch-0.10",
    python="3.11",
    lock=str(LOCKS / "litert-torch-0.10.txt"),
    key_packages=(
        "torch",
        "litert-torch",
        "litert-converter",
        "ai-edge-litert",
        "ai-edge-quantizer",
        "torchao",
        "numpy",
    ),
    description="litert-torch 0.10 (MLIR converter, no TensorFlow), torch 2.13",
)
AI_EDGE_TORCH_NIGHTLY = EnvironmentSpec(
    name="ai-edge-torch-nightly",
    python="3.11",
    lock=str(LOCKS / "ai-edge-torch-nightly.txt"),
    key_packages=(
        "torch",
        "ai-edge-torch-nightly",
        "tf-nightly",
        "ai-edge-litert",
        "ai-edge-quantizer-nightly",
        "torch-xla2",
        "torchao",
        "numpy",
    ),
    description="last AI Edge Torch built on tf-nightly (TFLiteConverter), torch 2.13",
)
ENVIRONMENTS = (LITERT_TORCH, AI_EDGE_TORCH_NIGHTLY)

# The importable converter package of each environment; both expose the same API surface.
PACKAGES = {LITERT_TORCH.name: "litert_torch", AI_EDGE_TORCH_NIGHTLY.name: "ai_edge_torch"}


def environment_for(name: str | None) -> EnvironmentSpec:
    """The environment a job names or, when it names none (local runtime), the one installed here."""
    for env in ENVIRONMENTS:
        if env.name == name:
            return env
    if name is not None:
        known = ", ".join(env.name for env in ENVIRONMENTS)
        raise EnvironmentBuildError(f"ai-edge-torch has no environment {name!r} (known: {known})")
    for env in ENVIRONMENTS:
        if importlib.util.find_spec(PACKAGES[env.name]) is not None:
            return env
    raise EnvironmentBuildError("neither litert_torch nor ai_edge_torch is installed in this environment")
