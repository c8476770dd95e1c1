"""The ``onnx2tf`` backend: PyTorch -> ONNX (liteport's export stage) -> onnx2tf -> TFLite.

A third-party liteport plugin: it is found through the ``liteport`` entry-point group and uses
only liteport's public API (``liteport.types``, ``liteport.hookspecs``, ``liteport.errors``,
``liteport.stages.workfiles``). This module imports nothing heavy; numpy, onnx and onnx2tf are used
inside the convert hook, in the ``onnx2tf-1.29`` environment.

Environment ``onnx2tf-1.29`` (Python 3.11, ``locks/onnx2tf-1.29.txt``, installed with
``pip install --no-deps -r``): onnx2tf 1.29.24 with the exact pins it declares (TensorFlow
2.19.0, tf-keras 2.19.0, onnx 1.19.1, onnxruntime 1.23.0, onnxsim 0.4.36, numpy 1.26.4).

Input: ``needs="onnx"``, so the pipeline hands the convert job ``job.options["onnx"]`` (the
legacy exporter's opset-13 file, inputs ``input_<i>``, outputs ``output_<j>``) and
``job.options["calibration"]`` (``.npz`` with ``input_<i>`` of shape (C, *input shape)).

Layout: onnx2tf converts NCHW graphs to NHWC end to end, so 4-D inputs and outputs are NHWC
and no TRANSPOSE is left around convolutions; ``facts["input_layout"]`` and
``facts["output_layout"]`` are "NHWC" (the validator transposes only 4-D tensors). Inputs of
rank 3 or 5 are kept in PyTorch's layout (``-kt``).

Modes (one onnx2tf run each; the file onnx2tf writes for the mode becomes ``model.tflite``):

* ``fp32``: ``<name>_float32.tflite``.
* ``fp16``: ``<name>_float16.tflite`` (float16 weights, float32 I/O).
* ``dynamic``: ``-odrqt`` -> ``<name>_dynamic_range_quant.tflite``.
* ``int8``: ``-oiqt -qt per-channel -iqd int8 -oqd int8`` -> ``<name>_full_integer_quant.tflite``
  (int8 I/O), calibrated with the job's own data: ``-cind input_<i> <npy> [0.0] [1.0]`` per
  input, 4-D arrays transposed to NHWC; mean 0 / std 1 leave the data unchanged.
* ``int16x8``: ``-oiqt`` -> ``<name>_integer_quant_with_int16_act.tflite`` (float32 I/O).

Offline: for image-like inputs onnx2tf downloads
``calibration_image_sample_data_20x128x128x3_float32.npy`` unless a file of that name is in its
working directory, even for a float conversion. onnx2tf runs with the attempt folder as its
working directory and the job's own calibration data (NHWC) is written there under that name.

Failures (``failures``): an ONNX op onnx2tf does not implement is ``unsupported_op``, and so is a
written file holding ops LiteRT cannot run (Flex or custom, e.g. ``Erf`` of an exact GELU), named;
anything else is ``converter_error`` with onnx2tf's first error line; full output in ``onnx2tf.log``.
"""

from __future__ import annotations

from collections.abc import Iterator

from liteport.api import BackendInfo, Job, Result, hookimpl
from liteport_onnx2tf import __version__
from liteport_onnx2tf.environments import ENVIRONMENTS

NAME = "onnx2tf"
MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")


@hookimpl
def liteport_backends() -> Iterator[BackendInfo]:
    yield BackendInfo(
        name=NAME,
        version=__version__,
        environments=ENVIRONMENTS,
        modes=MODES,
        needs="onnx",
        layouts=("NHWC",),
        description="PyTorch -> ONNX (opset 13/14/18) -> onnx2tf 1.29: NHWC, no TRANSPOSE around convs",
    )


@hookimpl
def liteport_convert(job: Job) -> Result:
    from liteport_onnx2tf.convert import run  # imports numpy and onnx; onnx2tf runs as a subprocess

    return run(job)
