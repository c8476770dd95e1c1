"""Built-in models defined in the project (no downloads), referenced as ``zoo:NAME``.

This module holds only plain metadata so ``liteport zoo list`` stays instant: torch is
imported when a factory is first needed (``get``, ``ZOO``), from ``liteport.zoo.models``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable

from liteport.errors import BadInput

if TYPE_CHECKING:
    import torch

    Factory = Callable[[], tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]

# name -> description, example input shapes (batch 1) and what converter traps it covers.
# Keep in step with liteport.zoo.models.ZOO (tests check that the two agree).
MODELS: dict[str, dict[str, Any]] = {
    "tiny_cnn": {
        "description": "three conv+BN+ReLU layers, max pooling, strided conv, global pool, linear head",
        "inputs": ((1, 3, 32, 32),),
        "covers": ("conv", "batchnorm", "relu", "maxpool", "strided conv", "avgpool", "linear"),
    },
    "mobilenet_v2": {
        "description": "MobileNetV2 width 1.0, 1000 classes (inverted residuals, depthwise, ReLU6)",
        "inputs": ((1, 3, 224, 224),),
        "covers": ("depthwise conv", "strided conv", "relu6", "residual add", "batchnorm", "avgpool"),
    },
    "resnet": {
        "description": "ResNet-18 layout at half width (32-256 channels), 100 classes",
        "inputs": ((1, 3, 64, 64),),
        "covers": ("7x7 strided conv", "maxpool", "residual add", "1x1 downsample", "batchnorm"),
    },
    "hardswish_se": {
        "description": "MobileNetV3-style blocks (hardswish, squeeze-excite, hardsigmoid), upsample + concat",
        "inputs": ((1, 3, 64, 64),),
        "covers": ("hardswish", "hardsigmoid", "squeeze-excite", "5x5 depthwise", "upsample", "concat"),
    },
    "attention_encoder": {
        "description": "2-layer pre-LN transformer encoder on 1x16x64 embeddings (4 heads, GELU MLP)",
        "inputs": ((1, 16, 64),),
        "covers": ("layernorm", "matmul attention", "softmax", "gelu", "reshape/transpose"),
    },
    "lstm": {
        "description": "2-layer LSTM over a 1x20x16 sequence, linear head on the last step (10 outputs)",
        "inputs": ((1, 20, 16),),
        "covers": ("lstm", "slice", "linear"),
    },
    # zoo v2 (issue 14): the families real users bring, each covering a route's known trap
    "sdpa_encoder": {
        "description": "2-layer transformer on F.scaled_dot_product_attention, 1x16x64 (tanh GELU MLP)",
        "inputs": ((1, 16, 64),),
        "covers": ("scaled_dot_product_attention (ONNX opset >= 14)", "layernorm", "tanh gelu"),
    },
    "gru": {
        "description": "2-layer GRU over a 1x20x16 sequence, linear head on the last step (10 outputs)",
        "inputs": ((1, 20, 16),),
        "covers": ("gru (linear_before_reset)", "squeeze/unsqueeze", "slice"),
    },
    "groupnorm_net": {
        "description": "residual conv blocks with GroupNorm(8) and SiLU, 1x3x32x32, 10 classes",
        "inputs": ((1, 3, 32, 32),),
        "covers": ("group norm", "silu", "residual add", "mean pooling"),
    },
    "gelu_mixer": {
        "description": "MLP-Mixer (2 blocks, 4x4 patches) with exact erf GELU, 1x3x32x32, 10 classes",
        "inputs": ((1, 3, 32, 32),),
        "covers": ("exact gelu (Erf)", "token-mixing transpose", "layernorm", "patch conv"),
    },
    "logsoftmax_head": {
        "description": "small CNN whose head adds a learned log-prior to log_softmax, 1x3x32x32, 10 classes",
        "inputs": ((1, 3, 32, 32),),
        "covers": ("int8 LOG_SOFTMAX (output scale 16/256)", "add after log_softmax", "conv", "batchnorm"),
    },
    "unet": {
        "description": "two-level U-Net, 1x3x64x64 -> 1x2x64x64 (transposed conv and bilinear up, skips)",
        "inputs": ((1, 3, 64, 64),),
        "covers": ("transposed conv", "bilinear upsample", "skip concat", "maxpool", "dense output"),
    },
    "multi_io": {
        "description": "image 1x3x32x32 + vector 1x8 in; class logits 1x10 and embedding 1x16 out",
        "inputs": ((1, 3, 32, 32), (1, 8)),
        "covers": ("two inputs", "two outputs", "squeeze", "l2 normalize", "concat"),
    },
    "adaptive_maxpool": {
        "description": "CNN whose head is adaptive_max_pool2d to 4x4 (from 16x16), 1x3x32x32, 10 classes",
        "inputs": ((1, 3, 32, 32),),
        "covers": ("adaptive max pooling", "strided conv", "flatten"),
    },
    # Eager-mode QAT variants (liteport.zoo.qat): "qat" marks them; see names() for why unlisted.
    "tiny_cnn_qat": {
        "description": "tiny_cnn prepared for QAT (qnnpack qconfig: per-tensor weights), briefly trained",
        "inputs": ((1, 3, 32, 32),),
        "covers": ("fused conv-bn-relu", "maxpool", "adaptive avgpool", "linear", "quant stubs"),
        "qat": True,
    },
    "mobilenet_v2_qat": {
        "description": "MobileNetV2 64x64, 100 classes, QAT-prepared (qnnpack qconfig), briefly trained",
        "inputs": ((1, 3, 64, 64),),
        "covers": ("depthwise conv", "strided conv", "relu6", "FloatFunctional add"),
        "qat": True,
    },
    "resnet_qat": {
        "description": "resnet QAT-prepared (x86 qconfig: reduce_range, per-channel), briefly trained",
        "inputs": ((1, 3, 64, 64),),
        "covers": ("7x7 strided conv", "padded maxpool", "FloatFunctional add", "relu after add"),
        "qat": True,
    },
    "dw_residual_qat": {
        "description": "strided stem, depthwise+pointwise branch added back, global pool, Linear head; "
        "QAT (qnnpack), briefly trained",
        "inputs": ((1, 3, 32, 32),),
        "covers": ("depthwise conv", "FloatFunctional add without ReLU", "global avgpool", "linear head"),
        "qat": True,
    },
    "dw_residual2_qat": {
        "description": "dw_residual_qat with two blocks, width 24, 28x28 (global pool over 14x14); "
        "QAT (qnnpack), briefly trained",
        "inputs": ((1, 3, 28, 28),),
        "covers": ("depthwise conv", "FloatFunctional add without ReLU", "global avgpool", "linear head"),
        "qat": True,
    },
    "tiny_cnn_qat_float": {
        "description": "float twin of tiny_cnn_qat: same trained weights, no fake quantization",
        "inputs": ((1, 3, 32, 32),),
        "covers": ("post-training int8 of a QAT model",),
        "qat": True,
    },
    "mobilenet_v2_qat_float": {
        "description": "float twin of mobilenet_v2_qat: same trained weights, no fake quantization",
        "inputs": ((1, 3, 64, 64),),
        "covers": ("post-training int8 of a QAT model",),
        "qat": True,
    },
    "resnet_qat_float": {
        "description": "float twin of resnet_qat: same trained weights, no fake quantization",
        "inputs": ((1, 3, 64, 64),),
        "covers": ("post-training int8 of a QAT model",),
        "qat": True,
    },
    "qat_unsupported": {
        "description": "QAT model with a GELU, which the qat-transplant backend refuses",
        "inputs": ((1, 3, 32, 32),),
        "covers": ("unsupported_op in qat-transplant",),
        "qat": True,
    },
}


def names() -> list[str]:
    """Names of the built-in float models, in a stable order.

    The QAT variants resolve as ``zoo:NAME`` like any other but are not listed here (nor by
    ``describe``), which would train each in the float zoo's model checks; ``qat_names`` lists them.
    """
    return [name for name, meta in MODELS.items() if not meta.get("qat")]


def qat_names() -> list[str]:
    """Names of the eager-mode QAT variants and their float twins."""
    return [name for name, meta in MODELS.items() if meta.get("qat")]


def describe() -> list[tuple[str, str, tuple[tuple[int, ...], ...]]]:
    """(name, one-line description, example input shapes) per model; never imports torch."""
    return [(name, MODELS[name]["description"], tuple(MODELS[name]["inputs"])) for name in names()]


def get(name: str) -> Factory:
    """The factory of zoo model ``name``; raises BadInput naming the known models."""
    if name not in MODELS:
        raise BadInput(f"unknown zoo model {name!r}", hint=f"known: {', '.join(MODELS)}")
    if MODELS[name].get("qat"):
        from liteport.zoo.qat import ZOO as factories  # imports torch
    else:
        from liteport.zoo.models import ZOO as factories  # imports torch

    factory: Factory = factories[name]
    return factory


class _LazyZoo(Mapping[str, "Factory"]):
    """Read-only name -> factory mapping that imports torch only on item access."""

    def __getitem__(self, name: str) -> Factory:
        if name not in MODELS:
            raise KeyError(name)
        return get(name)

    def __contains__(self, name: object) -> bool:  # Mapping's default would build the model
        return name in MODELS

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __len__(self) -> int:
        return len(names())


ZOO: Mapping[str, Factory] = _LazyZoo()
