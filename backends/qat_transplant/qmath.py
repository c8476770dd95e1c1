"""Pure arithmetic of the transplant (numpy only): layouts, padding and bias requantization.

Kept free of torch and ai_edge_litert so unit tests check it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# NCHW axis -> NHWC axis, for ops (concat) that name an axis of a 4-D tensor.
NCHW_TO_NHWC_AXIS = (0, 3, 1, 2)


def quantize_bias(
    bias: npt.ArrayLike, input_scale: float, weight_scales: Sequence[float]
) -> tuple[npt.NDArray[np.int32], list[float]]:
    """int32 bias and its per-channel scales: ``scale = input scale x weight scale``, zero point 0.

    ``weight_scales`` has one scale per output channel, or one for the whole tensor.
    """
    values = np.asarray(bias, dtype=np.float64).reshape(-1)
    w = np.asarray(weight_scales, dtype=np.float64).reshape(-1)
    scales = float(input_scale) * (w if w.size > 1 else np.full(values.size, w[0]))
    if scales.size != values.size:
        raise ValueError(f"{values.size} bias values but {scales.size} weight scales")
    q = np.clip(np.round(values / scales), INT32_MIN, INT32_MAX).astype(np.int32)
    out_scales = [float(s) for s in scales] if w.size > 1 else [float(scales[0])]
    return q, out_scales


def conv_filter(weight: npt.NDArray[Any], depthwise: bool) -> npt.NDArray[Any]:
    """PyTorch OIHW filter as TFLite wants it: OHWI for CONV_2D, 1HWO for DEPTHWISE_CONV_2D."""
    if depthwise:
        return np.ascontiguousarray(weight.transpose(1, 2, 3, 0))  # (O, 1, H, W) -> (1, H, W, O)
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1))


@dataclass(frozen=True)
class Padding:
    """How to express PyTorch's symmetric padding in TFLite: "VALID", "SAME", or "VALID" after an
    explicit PAD of ``pads`` ((top, bottom), (left, right))."""

    mode: str
    pads: tuple[tuple[int, int], tuple[int, int]] | None = None


def _out_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def choose_padding(
    size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    pad: Sequence[int],
    dilation: Sequence[int],
) -> Padding:
    """TFLite padding that computes exactly PyTorch's windows over an (H, W) input.

    SAME is used only when TFLite would put the same padding before the data as PyTorch does and
    yield the same output size (the extra bottom/right row TFLite may add is then never read
    differently); otherwise an explicit PAD with PyTorch's padding, then VALID.
    """
    if all(p == 0 for p in pad):
        return Padding("VALID")
    same = True
    for n, k, s, p, d in zip(size, kernel, stride, pad, dilation):
        out = _out_size(n, k, s, p, d)
        tf_out = -(-n // s)
        total = max((tf_out - 1) * s + (k - 1) * d + 1 - n, 0)
        if tf_out != out or total // 2 != p:
            same = False
    if same:
        return Padding("SAME")
    return Padding("VALID", ((int(pad[0]), int(pad[0])), (int(pad[1]), int(pad[1]))))


def nhwc_shape(shape: Sequence[int]) -> list[int]:
    """(N, C, H, W) -> [N, H, W, C]; other ranks unchanged."""
    dims = [int(d) for d in shape]
    return [dims[0], dims[2], dims[3], dims[1]] if len(dims) == 4 else dims


def nhwc_axis(axis: int, rank: int) -> int:
    """An NCHW axis of a rank-``rank`` tensor as the NHWC tensor's axis (identity unless 4-D)."""
    axis = axis + rank if axis < 0 else axis
    return NCHW_TO_NHWC_AXIS[axis] if rank == 4 else axis
