"""The ``ai-edge-torch`` backend: PyTorch to TFLite with Google's AI Edge Torch converters.

Registered through the ``liteport`` entry-point group like any third-party plugin. This
module imports nothing heavy: torch and the converter are imported inside the convert hook.

Environments (locks in ``locks/``, installed with ``pip install --no-deps -r``):

* ``litert-torch-0.10``: ``litert_torch`` 0.10 (torch.export, then its own MLIR converter;
  no TensorFlow), ai-edge-quantizer 0.10, torchao 0.18.
* ``ai-edge-torch-nightly``: ``ai_edge_torch`` 0.8.0.dev20260122, the last release built on
  tf-nightly (torch.export, odml_torch lowering, then TensorFlow's TFLiteConverter).
  Importing it is slow and loads torch_xla2, whose "jax" device claims to be an
  available accelerator and makes every dynamo trace in the process fail (strict
  torch.export, PT2E QAT capture); the PT2E capture below hides that device while it runs.

Modes (the same recipe in both environments):

* ``fp32``: ``convert(module, example_inputs)``.
* ``fp16``: the converter's ``generative.quantize.quant_recipes.full_fp16_recipe()``:
  ai-edge-quantizer casts weights to float16 after conversion; each weight gets a
  DEQUANTIZE to float32, compute and I/O stay float32; the file is about half the size.
* ``dynamic``: on litert-torch the converter's ``full_dynamic_recipe()`` (ai-edge-quantizer after
  conversion, like fp16); on the nightly PT2E with ``PT2EQuantizer`` and
  ``get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)``. Both: int8
  per-channel weights, activations quantized at run time by the hybrid kernels, float32 I/O.
* ``int8``: PT2E static with ``is_per_channel=True``: int8 per-channel symmetric weights,
  per-tensor affine int8 activations from histogram observers run over the calibration set
  (``job.options["calibration"]``: ``.npz`` with ``input_<i>`` of shape (C, *example_shape)).
  The converter folds the input QUANTIZE / output DEQUANTIZE, so the model's I/O is int8.
  The graph is captured with strict (dynamo) torch.export, because only that records the
  source functions the quantizer's ``add`` annotator matches: from a non-strict capture every
  residual ADD stays float (22 extra QUANTIZE/DEQUANTIZE on MobileNetV2); non-strict is the
  fallback when dynamo cannot trace the model.
  ``prepare_pt2e``/``convert_pt2e`` come from ``torchao.quantization.pt2e`` in both
  environments (litert-torch 0.10 no longer uses ``torch.ao``; the nightly's quantizer also
  builds on torchao).

Not offered: ``int16x8`` (the PT2E quantizer has no 16-bit activation config) and ``qat``
(litert-torch cannot convert eager-mode QAT models; that is the QAT transplant backend's job).

Layouts: NCHW by default, like the PyTorch model; the converter then adds a TRANSPOSE after
each 4-D input (and before each 4-D output). With ``job.options["channels_last"]`` the model
is wrapped in the converter's ``to_channel_last_io`` for its 4-D inputs and outputs, so the
model takes (and gives) NHWC and those transposes disappear; ``facts["input_layout"]`` and
``facts["output_layout"]`` say which layout was emitted.

Failures are raised as liteport errors with a one-line message naming the model (see
``failures``): ``unsupported_op`` names the aten op without a lowering (or whose lowering
failed), ``export_error`` is a torch.export failure, ``quantizer_error`` a PT2E or
ai-edge-quantizer failure, ``converter_error`` anything else; the original exception is
chained, so the worker's job log keeps the full traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

from liteport import __version__
from liteport.api import BackendInfo, Job, Result, hookimpl
from liteport.backends.ai_edge_torch.environments import ENVIRONMENTS

NAME = "ai-edge-torch"
MODES = ("fp32", "fp16", "dynamic", "int8")


@hookimpl
def liteport_backends() -> Iterator[BackendInfo]:
    yield BackendInfo(
        name=NAME,
        version=__version__,
        environments=ENVIRONMENTS,
        priority=300,  # the native PyTorch route first
        modes=MODES,
        needs="torch",
        layouts=("NCHW", "NHWC"),
        description="AI Edge Torch: litert-torch 0.10 and the last tf-nightly ai-edge-torch",
    )


@hookimpl
def liteport_convert(job: Job) -> Result:
    from liteport.backends.ai_edge_torch.convert import run  # imports torch and the converter

    return run(job)


@hookimpl
def liteport_tensor_map(job: Job) -> Result:
    from liteport.backends.ai_edge_torch.tensor_map import run  # reads tensor names, no converter import

    return run(job)
