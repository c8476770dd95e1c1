"""The ``qat-transplant`` backend: PyTorch eager-mode QAT -> int8 TFLite with PyTorch's own
scales and zero points.

No converter carries eager QAT parameters over (litert-torch rejects eager QAT models, an
ONNX route loses them), so this backend writes the int8 graph itself:

1. **Input** (``--quant qat``): a ModelRef whose factory returns an eager QAT model, prepared
   (``prepare_qat``, fake-quant modules, trained) or already ``convert``-ed. Anything else is
   ``bad_input``.
2. **PyTorch's int8 model**: ``torch.ao.quantization.convert`` of a deep copy
   (``liteport.stages.qat_reference.to_int8``). ``convert`` folds BatchNorm into the conv weights and
   quantizes them with the trained weight fake-quant's scales, exactly as PyTorch deploys it.
3. **Extraction**: ``torch.fx`` traces the converted model (quantized modules stay leaves) and
   runs it once on the example inputs, for shapes. Every parameter comes from PyTorch's
   modules: a ``Quantize`` stub's, a conv's or linear's output ``scale``/``zero_point``, its
   ``weight()``'s per-channel (axis 0) or per-tensor scales, a ``QFunctional`` op's ``scale``
   argument; ReLU, ReLU6, pooling and reshape run at their input's parameters, as in PyTorch.
4. **Transplant** (``lower`` -> ``writer``): each node becomes int8 TFLite ops written with
   ai-edge-litert's flatbuffer schema (object API, ``flatbuffer_utils.write_model``):
   int8 weights (OHWI, depthwise 1HWO with quantized_dimension 3), int32 biases with
   ``scale = input scale x weight scale`` and zero point 0, int8 activations and int8 I/O.
   ``quint8`` zero points are shifted by -128 (same scale: ``q_int8 = q_uint8 - 128``);
   ``qint8`` keeps its own; ``reduce_range`` needs no change (it only chose the observer's
   scale; kernels saturate at the full range on both sides). Weights must be symmetric
   (zero point 0), as TFLite's int8 kernels require. PyTorch's symmetric padding becomes SAME
   when TFLite would pad identically, else an explicit PAD (zero point) / PADV2 (-128 for max
   pooling) and VALID. Global average pooling becomes MEAN, which rounds halves to even like
   PyTorch. ReLU/ReLU6 after a conv, linear or add fold into its fused activation.
5. **Layouts**: NHWC inside; NCHW I/O by default (a TRANSPOSE after each 4-D input and
   before each 4-D output), NHWC I/O with ``job.options["channels_last"]``.

Tensor names are PyTorch's (module path; a ``QFunctional``'s path for its op; helper tensors
``<name>:<role>`` carry ``<name>``'s parameters), which is how the ``qparams`` validator
matches every quantized tensor of the file with ``qparams.json`` from the reference stage.

Supported: QuantStub/DeQuantStub, Conv2d (incl. depthwise, strided, dilated, fused BN and
ReLU; ReLU6 folded), Linear (+ReLU), ReLU, ReLU6, Hardtanh(0,6 | -1,1 | 0,1),
FloatFunctional add / add_relu / cat, MaxPool2d, AvgPool2d (no padding),
AdaptiveAvgPool2d (whole windows), flatten / reshape / view, Dropout, Identity. Anything
else fails with one ``unsupported_op`` line naming each offending module and the supported
set, before the model runs.

Environment ``qat-torch-2.13`` (``locks/qat-torch-2.13.txt``): torch 2.13 + ai-edge-litert 2.3
(for the schema only) + numpy; no TensorFlow, no converter.
"""

from __future__ import annotations

from collections.abc import Iterator

from liteport import __version__
from liteport.api import BackendInfo, Job, Result, hookimpl
from liteport.backends.qat_transplant.environments import ENVIRONMENTS

NAME = "qat-transplant"


@hookimpl
def liteport_backends() -> Iterator[BackendInfo]:
    yield BackendInfo(
        name=NAME,
        version=__version__,
        environments=ENVIRONMENTS,
        priority=100,  # qat only, so its place hardly matters
        modes=("qat",),
        needs="qat",
        layouts=("NCHW", "NHWC"),
        description="writes PyTorch's eager-QAT int8 model as int8 TFLite with PyTorch's own qparams",
    )


@hookimpl
def liteport_convert(job: Job) -> Result:
    from liteport.backends.qat_transplant.convert import run  # imports torch

    return run(job)


@hookimpl
def liteport_tensor_map(job: Job) -> Result:
    from liteport.backends.qat_transplant.tensor_map import run  # reads the file's tensor names

    return run(job)
