"""The ``tflite-ptq`` quantizer: TFLiteConverter post-training quantization of a SavedModel.

Registered through the ``liteport`` entry-point group. A backend whose convert stage returns
``artifacts["saved_model"]`` and whose ``BackendInfo.quantizer`` is ``"tflite-ptq"`` (onnx-tf,
and any later backend that goes through a SavedModel) gets its .tflite made here, in the
backend's own environment, so the TensorFlow that made the SavedModel also converts it.
Modes and their converter settings are described in ``quantize``. Nothing heavy is imported
here; TensorFlow is imported inside the hook.
"""

from __future__ import annotations

from collections.abc import Iterator

from liteport import __version__
from liteport.api import Job, QuantizerInfo, Result, hookimpl

NAME = "tflite-ptq"
MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")


@hookimpl
def liteport_quantizers() -> Iterator[QuantizerInfo]:
    yield QuantizerInfo(
        name=NAME,
        version=__version__,
        modes=MODES,
        description="TFLiteConverter.from_saved_model: float16 weights, dynamic range, full int8, 16x8",
    )


@hookimpl
def liteport_quantize(job: Job) -> Result:
    from liteport.backends.tflite_ptq.quantize import run  # imports TensorFlow

    return run(job)
