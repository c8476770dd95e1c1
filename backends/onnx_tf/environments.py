"""The two pinned environments of the onnx-tf backend (TensorFlow 2.8 on Python 3.9, 2.15 on 3.11).

Kept free of heavy imports: the plugin's registration hook reads it on the host, and the
worker imports it on Python 3.9 too.
"""

from __future__ import annotations

from pathlib import Path

from liteport.api import EnvironmentBuildError, EnvironmentSpec

LOCKS = Path(__file__).resolve().parent / "locks"

# onnx-tf 1.10 has Squeeze/Unsqueeze handlers up to version 11 only, so opset 12 (the last with
# version-11 Squeeze/Unsqueeze) comes first: recurrent nets and anything that unsqueezes convert.
# Attention (scaled_dot_product_attention) exports only from opset 14: the exporter's advice picks it.
# Opset 18 (the dynamo exporter's only one) is not offered: IR 10 / ReduceMean-18 break onnx-tf.
ONNX_OPSETS = (12, 13, 14, 15)

KEY_PACKAGES = (
    "tensorflow-cpu",
    "onnx-tf",
    "onnx",
    "tensorflow-addons",
    "tensorflow-probability",
    "protobuf",
    "numpy",
)

TF28 = EnvironmentSpec(
    name="onnx-tf-tf2.8",
    python="3.9",
    lock=str(LOCKS / "onnx-tf-tf2.8.txt"),
    key_packages=KEY_PACKAGES,
    onnx_opsets=ONNX_OPSETS,
    description="onnx-tf 1.10.0 on TensorFlow 2.8.4 (Python 3.9, onnx 1.12): the tutorials' pins",
)
TF215 = EnvironmentSpec(
    name="onnx-tf-tf2.15",
    python="3.11",
    lock=str(LOCKS / "onnx-tf-tf2.15.txt"),
    key_packages=KEY_PACKAGES,
    onnx_opsets=ONNX_OPSETS,
    description="onnx-tf 1.10.0 on TensorFlow 2.15.1 (Python 3.11, onnx 1.17)",
)
# No EnvironmentSpec.modes limits: every mode converts in both environments. TF 2.8's int8 and
# 16x8 files are valid but much slower in a current LiteRT (`nox -s bench` prints the figures).
ENVIRONMENTS = (TF215, TF28)  # in order of preference: the newer TensorFlow is faster, fewer TRANSPOSEs


def environment_for(name: str | None) -> EnvironmentSpec:
    """The environment a job names or, when it names none (local runtime), the one matching this TF."""
    for env in ENVIRONMENTS:
        if env.name == name:
            return env
    if name is not None:
        known = ", ".join(env.name for env in ENVIRONMENTS)
        raise EnvironmentBuildError(f"onnx-tf has no environment {name!r} (known: {known})")
    import tensorflow as tf  # local runtime: pick by the installed TensorFlow

    return TF28 if tf.__version__.startswith("2.8.") else TF215
