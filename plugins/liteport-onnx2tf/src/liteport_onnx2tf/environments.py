"""The pinned environment of the onnx2tf backend.

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
    description="onnx2tf 1.29.24 on TensorFlow 2.19.0 (Python 3.11): NHWC output, no TRANSPOSE ops",
)
ENVIRONMENTS = (ONNX2TF_129,)


def environment_for(name: str | None) -> EnvironmentSpec:
    """The environment a job names or, when it names none (local runtime), the only one there is."""
    if name is None:
        return ONNX2TF_129
    for env in ENVIRONMENTS:
        if env.name == name:
            return env
    known = ", ".join(env.name for env in ENVIRONMENTS)
    raise EnvironmentBuildError(f"onnx2tf has no environment {name!r} (known: {known})")
