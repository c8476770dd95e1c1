"""The pinned environment of the nobuco backend.

Kept free of heavy imports: the plugin's registration hook reads it on the host.
"""

from __future__ import annotations

from pathlib import Path

from liteport.api import EnvironmentBuildError, EnvironmentSpec

LOCKS = Path(__file__).resolve().parent / "locks"

NOBUCO_017 = EnvironmentSpec(
    name="nobuco-0.17",
    python="3.11",
    lock=str(LOCKS / "nobuco-0.17.txt"),
    key_packages=("nobuco", "tensorflow-cpu", "keras", "torch", "numpy", "protobuf"),
    description="nobuco 0.17.0 on TensorFlow 2.15.1 and torch 2.13.0 (Python 3.11): PyTorch -> Keras, NHWC",
)
ENVIRONMENTS = (NOBUCO_017,)


def environment_for(name: str | None) -> EnvironmentSpec:
    """The environment a job names or, when it names none (local runtime), the only one there is."""
    if name is None:
        return NOBUCO_017
    for env in ENVIRONMENTS:
        if env.name == name:
            return env
    known = ", ".join(env.name for env in ENVIRONMENTS)
    raise EnvironmentBuildError(f"nobuco has no environment {name!r} (known: {known})")
