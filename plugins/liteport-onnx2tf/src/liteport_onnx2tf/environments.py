"""The pinned environments of the onnx2tf backend: the 2.x line (Python 3.12) and 1.29 (Python 3.11).

Kept free of heavy imports: the plugin's registration hook reads it on the host.
"""

from __future__ import annotations

from pathlib import Path

from liteport.api import EnvironmentBuildError, EnvironmentSpec

LOCKS = Path(__file__).resolve().parent / "locks"

ONNX2TF_129 = EnvironmentSpec(
    name="onnx2tf-1.29",
    python="3.11",
    lock=str(LOCKS / "onnx2tf-1.29.txt"),
    key_packages=("onnx2tf", "tensorflow", "tf-keras", "onnx", "onnxruntime", "onnxsim", "numpy"),
    # 13 as measured first; 14 for attention (scaled_dot_product_attention); 18 admits the dynamo export
    onnx_opsets=(13, 14, 18),
    description="onnx2tf 1.29.24 on TensorFlow 2.19.0 (Python 3.11): NHWC output, no TRANSPOSE ops",
)
ONNX2TF_26 = EnvironmentSpec(
    name="onnx2tf-2.6",
    python="3.12",  # onnx2tf 2.x is served only to Python >= 3.12
    lock=str(LOCKS / "onnx2tf-2.6.txt"),
    key_packages=(
        "onnx2tf",
        "tensorflow",
        "tf-keras",
        "onnx",
        "onnxruntime",
        "onnxsim",
        "ai-edge-litert",
        "numpy",
    ),
    onnx_opsets=(13, 14, 18),
    description="onnx2tf 2.6.9 on TensorFlow 2.21.0 (Python 3.12); fp32 by its own flatbuffer writer",
)
# In order of preference: the current 2.x line first, 1.29 for comparison (and for Python 3.11 only).
ENVIRONMENTS = (ONNX2TF_26, ONNX2TF_129)


def environment_for(name: str | None) -> EnvironmentSpec:
    """The environment a job names or, when it names none (local runtime), the one of this onnx2tf."""
    if name is None:
        from importlib import metadata  # local runtime: pick by the installed onnx2tf

        return ONNX2TF_129 if metadata.version("onnx2tf").startswith("1.") else ONNX2TF_26
    for env in ENVIRONMENTS:
        if env.name == name:
            return env
    known = ", ".join(env.name for env in ENVIRONMENTS)
    raise EnvironmentBuildError(f"onnx2tf has no environment {name!r} (known: {known})")
