"""The ``onnx-tf`` backend: PyTorch -> ONNX -> onnx-tf -> SavedModel -> TFLiteConverter.

The route most tutorials teach, pinned the way it actually works. Registered through the
``liteport`` entry-point group like any third-party plugin; this module imports nothing heavy.

Stages: the core's export stage writes the ONNX file once per model and opset (TorchScript
exporter in the torch environment, at the first of the environments' ``onnx_opsets`` that works:
12, whose Squeeze/Unsqueeze onnx-tf handles, else 13-15 as the exporter advises; dynamo exports
do not run on onnx-tf); the convert hook
runs ``onnx_tf.backend.prepare(model).export_graph(<workdir>/saved_model)``; the
``tflite-ptq`` quantizer then makes the .tflite in the job's mode in the same environment.

Environments (locks in ``locks/``, installed with ``pip install --no-deps -r``):

* ``onnx-tf-tf2.8``: Python 3.9, tensorflow-cpu 2.8.4, onnx-tf 1.10.0, onnx 1.12.0 (the
  tutorials' versions; TF 2.8 needs numpy < 1.24 and protobuf < 3.20).
* ``onnx-tf-tf2.15``: Python 3.11, tensorflow-cpu 2.15.1, onnx-tf 1.10.0, onnx 1.17.0.

Modes: fp32, fp16, dynamic, int8 and int16x8 through ``tflite-ptq``; per-environment limits
are declared in ``environments`` (``EnvironmentSpec.modes``), not discovered by failing.

Layout: onnx-tf keeps PyTorch's NCHW at the model's inputs and outputs and wraps every
convolution in a pair of TRANSPOSEs (NCHW <-> NHWC), so the TRANSPOSE count in the report is
what this route costs. The convert facts carry the SavedModel's input/output names in
PyTorch order for the validator.

Failures (see ``failures``): an ONNX op onnx-tf has no handler version for is found before
conversion and raised as ``unsupported_op`` naming the op, its version and the opset (1.10.0
stops at version 11 of Squeeze/Unsqueeze, hence opset 12 first); any other onnx-tf
failure is ``converter_error`` with onnx-tf's own first error line; the full log stays in
the attempt's ``convert.log``.
"""

from __future__ import annotations

from collections.abc import Iterator

from liteport import __version__
from liteport.api import BackendInfo, Job, Result, hookimpl
from liteport.backends.onnx_tf.environments import ENVIRONMENTS

NAME = "onnx-tf"
MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")


@hookimpl
def liteport_backends() -> Iterator[BackendInfo]:
    yield BackendInfo(
        name=NAME,
        version=__version__,
        environments=ENVIRONMENTS,
        priority=200,  # the ONNX route after the native one
        modes=MODES,
        needs="onnx",
        layouts=("NCHW",),
        quantizer="tflite-ptq",
        shared_convert=True,  # the SavedModel does not depend on the mode: made once, quantized per mode
        description="PyTorch -> ONNX (opset 12-15) -> onnx-tf 1.10 -> SavedModel -> TFLiteConverter",
    )


@hookimpl
def liteport_convert(job: Job) -> Result:
    from liteport.backends.onnx_tf.convert import run  # imports onnx, onnx-tf and TensorFlow

    return run(job)
