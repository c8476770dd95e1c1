"""The ``nobuco`` backend: PyTorch -> Keras (nobuco) -> SavedModel -> TFLiteConverter (``tflite-ptq``).

A third-party liteport plugin: found through the ``liteport`` entry-point group, it imports only
liteport's public API (``liteport.api``) and nothing heavy here; torch, nobuco and TensorFlow are
imported inside the convert hook, in the ``nobuco-0.17`` environment.

Environment ``nobuco-0.17`` (Python 3.11, ``locks/nobuco-0.17.txt``, installed with
``pip install --no-deps -r``): nobuco 0.17.0, tensorflow-cpu 2.15.1 (Keras 2.15), torch 2.13.0
(the CPU build liteport's reference uses), numpy 1.26.4. nobuco imports torchvision without
declaring it; a stand-in provides the few names it needs (``torchvision_stand_in``).

Input: ``needs="torch"``: the convert hook loads the user's module with
``liteport.api.load_model(job.model)``; there is no ONNX step.

Output: nobuco traces the module and builds a Keras model, moving 4-D tensors to NHWC with as
few transpositions as it can; the hook saves it as a SavedModel (``serving_default``:
``input_<i>`` -> ``output_<j>``) and returns ``artifacts["saved_model"]`` with
``facts["input_names"]`` / ``["output_names"]``, and the ``tflite-ptq`` quantizer makes the
.tflite for every mode (fp32, fp16 weights, dynamic range, full int8 with int8 I/O, 16x8) in the
same environment.

Layout: 4-D inputs and outputs are NHWC (``facts["input_layout"] == "NHWC"``; the validator
transposes only 4-D tensors); tensors of other ranks keep PyTorch's order.

Failures (``failures``): an op without a nobuco converter (``no converter found``) or one whose
converter rejects the way it is used (an assertion: ``torch.unique`` of a non-1-D tensor) is
``unsupported_op`` naming the op; anything else is ``converter_error``; nobuco's full output is
in ``nobuco.log`` in the attempt folder.
"""

from __future__ import annotations

from collections.abc import Iterator

from liteport.api import BackendInfo, Job, Result, hookimpl
from liteport_nobuco import __version__
from liteport_nobuco.environments import ENVIRONMENTS

NAME = "nobuco"
MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")


@hookimpl
def liteport_backends() -> Iterator[BackendInfo]:
    yield BackendInfo(
        name=NAME,
        version=__version__,
        environments=ENVIRONMENTS,
        modes=MODES,
        needs="torch",
        layouts=("NHWC",),
        quantizer="tflite-ptq",
        description="PyTorch -> Keras (nobuco 0.17, NHWC) -> SavedModel -> TFLiteConverter",
    )


@hookimpl
def liteport_convert(job: Job) -> Result:
    from liteport_nobuco.convert import run  # imports torch, nobuco and TensorFlow

    return run(job)
