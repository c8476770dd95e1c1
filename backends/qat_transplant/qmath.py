"""Pure arithmetic of the transplant (numpy only): layouts, padding, and how PyTorch's qnnpack,
XNNPACK and TFLite's reference kernels round (with the scale fitting built on it).

Kept free of torch and ai_edge_litert so unit tests check it directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# NCHW axis -> NHWC axis, for ops (concat) that name an axis of a 4-D tensor.
NCHW_TO_NHWC_AXIS = (0, 3, 1, 2)


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


# -- requantization as the kernels compute it --------------------------------------------------
#
# PyTorch's qnnpack kernels and XNNPACK both requantize an int32 accumulator in float32:
# rne(f32(acc) x scale), rounding half to even. They derive the scale differently (PyTorch
# multiplies by the reciprocal of the output scale, XNNPACK divides by it), so the same three
# scales can give float32 scales one unit apart, and outputs a step apart next to a tie. The
# transplant writes a weight scale (within SCALE_SLACK of PyTorch's) that makes XNNPACK's scale
# PyTorch's. TFLite's reference kernels use a 31-bit fixed-point multiplier with two roundings
# instead: no choice of scales makes them round like float32 everywhere (README, "QAT transplant").

F32 = np.float32
# How far (relative) a written weight scale may move from PyTorch's: half the validator's 1e-6.
SCALE_SLACK = 5e-7
# Filter value of the depthwise convolutions that average or rescale: a power of two keeps
# XNNPACK's float product exact, and a large one keeps the reference kernels' first rounding fine.
UNIT_WEIGHT = 64
# How far the scale of such a filter may move from the exact average it stands for.
DERIVED_SLACK = 1e-5
_MAX_ULPS = 16
_MAX_ACCUMULATORS = 1 << 22


def qnnpack_scale(input_scale: float, weight_scale: float, output_scale: float) -> np.float32:
    """PyTorch qnnpack's float32 requantization scale of a conv or linear: (w x in) x (1 / out)."""
    product = F32(F32(weight_scale) * F32(input_scale))
    return F32(product * F32(F32(1.0) / F32(output_scale)))


def qnnpack_pool_scale(input_scale: float, output_scale: float, count: int) -> np.float32:
    """PyTorch qnnpack's float32 scale of an average over ``count`` values: in / (out x count)."""
    return F32(F32(input_scale) / F32(F32(output_scale) * F32(count)))


def xnnpack_scale(input_scale: float, weight_scale: float, output_scale: float) -> np.float32:
    """XNNPACK's float32 requantization scale of a conv or fully connected op: in x w / out."""
    return F32(F32(F32(input_scale) * F32(weight_scale)) / F32(output_scale))


def round_fp32(acc: npt.ArrayLike, scale: float) -> npt.NDArray[np.int64]:
    """rne(f32(acc) x scale): the rounding PyTorch's qnnpack and XNNPACK kernels share."""
    product = np.asarray(acc, dtype=np.int64).astype(F32) * F32(scale)
    return np.asarray(np.rint(product), dtype=np.int64)


def fit_scales(
    input_scale: float,
    weight_scales: Sequence[float],
    output_scale: float,
    targets: Sequence[float],
    gain: int = 1,
    weight_slack: float = SCALE_SLACK,
) -> tuple[list[float], float]:
    """Weight scales (and an output scale) near PyTorch's with which XNNPACK rounds as PyTorch does.

    PyTorch computes ``rne(f32(acc) x target)`` per channel; XNNPACK ``rne(f32(gain x acc) x s)``
    with ``s = xnnpack_scale(input_scale, w, output_scale)`` (``gain``: a filter value of
    ``UNIT_WEIGHT`` where PyTorch's is 1). Preferred: every channel's ``s = target / gain``
    exactly, with PyTorch's output scale, else with an output scale a few units away (a scale
    may be unreachable from the weight scale alone); failing that, the output scale that leaves
    the fewest channels inexact, and for those the weight scale whose rounding disagrees with
    PyTorch's on the fewest accumulators. The output scale
    stays within ``SCALE_SLACK`` (relative) of PyTorch's, weight scales within ``weight_slack``
    (wider for filters the transplant derives itself).
    """
    weights = np.asarray(weight_scales, dtype=np.float64)
    want = np.asarray(targets, dtype=F32) / F32(gain)
    ulps = max(_MAX_ULPS, int(weight_slack / 6e-8))
    grid = np.stack(
        [_near_grid(F32(w), float(w), ulps, weight_slack) for w in weights]
    )  # (channels, candidates)
    best: tuple[int, np.float32, Any] | None = None
    for out in _near_grid(F32(output_scale), float(output_scale)):
        if np.isnan(out):
            continue
        hits = _xnnpack_grid(input_scale, grid, out) == want[:, None]
        missing = int(np.count_nonzero(~hits.any(axis=1)))
        if best is None or missing < best[0]:
            best = (missing, out, hits)
        if missing == 0:
            break
    assert best is not None
    _, out, hits = best
    fitted = []
    for row, target, hit in zip(grid, targets, hits):
        if hit.any():
            fitted.append(float(row[hit.argmax()]))
        else:  # no exact scale for this channel: the one that rounds differently least often
            fitted.append(_fewest_disagreements(input_scale, row, float(out), float(target), gain))
    return fitted, float(out)


def _xnnpack_grid(input_scale: float, weights: npt.NDArray[np.float32], output_scale: Any) -> Any:
    with np.errstate(invalid="ignore"):
        return (F32(input_scale) * weights) / F32(output_scale)


def _near_grid(
    start: np.float32, reference: float, ulps: int = _MAX_ULPS, slack: float = SCALE_SLACK
) -> npt.NDArray[np.float32]:
    """2 x ``ulps`` + 1 float32 values around ``start``, nearest first; NaN where beyond ``slack``."""
    found = [start]
    up = down = start
    for _ in range(ulps):
        up = np.nextafter(up, F32(np.inf), dtype=F32)
        down = np.nextafter(down, F32(-np.inf), dtype=F32)
        found += [up, down]
    grid = np.asarray(found, dtype=F32)
    grid[np.abs(grid.astype(np.float64) - reference) > slack * abs(reference)] = np.nan
    return grid


def _fewest_disagreements(
    input_scale: float, candidates: npt.NDArray[np.float32], output_scale: float, target: float, gain: int
) -> float:
    """The candidate weight scale whose rounding differs from PyTorch's on the fewest accumulators."""
    acc = _near_ties(target)
    expected = round_fp32(acc, target)
    best, fewest = float(candidates[0]), None
    for candidate in candidates:
        if np.isnan(candidate):
            continue
        scale = float(_xnnpack_grid(input_scale, np.asarray([candidate], dtype=F32), output_scale)[0])
        misses = int(np.count_nonzero(round_fp32(acc * gain, scale) != expected))
        if fewest is None or misses < fewest:
            best, fewest = float(candidate), misses
    return best


def _near_ties(scale: float) -> npt.NDArray[np.int64]:
    """Accumulators that land in the int8 range within a few float32 units of a rounding tie:
    the only ones two scales a few units apart can round differently."""
    limit = min(int(np.ceil(257.0 / scale)) if scale > 0 else 0, _MAX_ACCUMULATORS)
    acc = np.arange(-limit, limit + 1, dtype=np.int64)
    product = acc.astype(np.float64) * scale
    gap = np.abs(product - np.floor(product) - 0.5)
    return acc[gap <= 1e-5 * np.maximum(np.abs(product), 1.0)]


def pool_filter_scale(input_scale: float, output_scale: float, target: float) -> tuple[float, float]:
    """(filter scale, output scale) of a depthwise conv of UNIT_WEIGHT filters that, on XNNPACK,
    averages as PyTorch's qnnpack pooling does (``target``: its ``qnnpack_pool_scale``)."""
    start = float(F32(F32(target) / F32(UNIT_WEIGHT)))
    scales, out = fit_scales(input_scale, [start], output_scale, [target], UNIT_WEIGHT, DERIVED_SLACK)
    return scales[0], out


@dataclass(frozen=True)
class Rescale:
    """A 1x1 depthwise conv (filter ``gain``, scale ``weight_scale``) that moves int8 values to
    other parameters; ``misses``: input values each kernel set maps differently from PyTorch."""

    gain: int
    weight_scale: float
    misses_xnnpack: int
    misses_reference: int


def fit_rescale(
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    table: npt.ArrayLike,
) -> Rescale:
    """The rescaling conv whose XNNPACK and reference kernels best reproduce ``table`` (PyTorch's
    int8 output for each int8 input -128..127): fewest XNNPACK misses, then reference misses."""
    want = np.asarray(table, dtype=np.int64)
    centered = np.arange(-128, 128, dtype=np.int64) - int(input_zero_point)
    best: Rescale | None = None
    for gain in (1, 2, 4, 8, 16, 32, UNIT_WEIGHT):
        start = F32(1.0) / F32(gain)  # the filter stands for a weight of 1: gain x scale
        for candidate in _near_grid(start, 1.0 / gain, 64, DERIVED_SLACK):
            if np.isnan(candidate):
                continue
            fast = round_fp32(
                centered * gain, float(xnnpack_scale(input_scale, float(candidate), output_scale))
            )
            exact = float(F32(input_scale)) * float(candidate) / float(F32(output_scale))
            slow = reference_requantize(centered * gain, exact)
            found = Rescale(
                gain,
                float(candidate),
                int(np.count_nonzero(_saturate(fast + output_zero_point) != want)),
                int(np.count_nonzero(_saturate(slow + output_zero_point) != want)),
            )
            if best is None or (found.misses_xnnpack, found.misses_reference) < (
                best.misses_xnnpack,
                best.misses_reference,
            ):
                best = found
            if (best.misses_xnnpack, best.misses_reference) == (0, 0):
                return best
    assert best is not None
    return best


def _saturate(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.clip(values, -128, 127)


# -- TFLite's reference kernels: gemmlowp fixed point ------------------------------------------


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: ``real = multiplier x 2**(shift - 31)``, multiplier in [2**30, 2**31)."""
    if real == 0:
        return 0, 0
    fraction, shift = math.frexp(real)
    multiplier = round(fraction * (1 << 31))
    if multiplier == 1 << 31:
        multiplier //= 2
        shift += 1
    return multiplier, shift


def reference_requantize(acc: npt.ArrayLike, real_multiplier: float) -> npt.NDArray[np.int64]:
    """TFLite's MultiplyByQuantizedMultiplier (reference kernels): a rounding doubling high
    multiply, then a rounding right shift; two roundings, both half away from zero."""
    multiplier, shift = quantize_multiplier(real_multiplier)
    left, right = max(shift, 0), max(-shift, 0)
    x = np.asarray(acc, dtype=np.int64) * (1 << left)
    product = x * multiplier
    nudge = np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    high = _div_trunc(product + nudge, 1 << 31)
    if right == 0:
        return high
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + ((high & mask) > threshold)


def _div_trunc(numerator: npt.NDArray[np.int64], denominator: int) -> npt.NDArray[np.int64]:
    """Integer division rounding toward zero (C semantics)."""
    quotient = np.abs(numerator) // denominator
    return np.where(numerator < 0, -quotient, quotient)


# -- ADD ---------------------------------------------------------------------------------------


def xnnpack_add(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    a_params: tuple[float, int],
    b_params: tuple[float, int],
    out: tuple[float, int],
) -> npt.NDArray[np.int64]:
    """XNNPACK's int8 ADD (before clamping): 22-bit multipliers of in/out, a 2**(20 - e) shift."""
    (sa, za), (sb, zb), (so, zo) = a_params, b_params, out
    a_out, b_out = F32(F32(sa) / F32(so)), F32(F32(sb) / F32(so))
    exponent = int(np.asarray(max(a_out, b_out), dtype=F32).view(np.uint32) >> 23) - 127
    shift = 20 - exponent
    a_mult, b_mult = int(np.rint(float(a_out) * 2.0**shift)), int(np.rint(float(b_out) * 2.0**shift))
    bias = (1 << (shift - 1)) - a_mult * int(za) - b_mult * int(zb)
    acc = bias + np.asarray(a, dtype=np.int64) * a_mult + np.asarray(b, dtype=np.int64) * b_mult
    return (acc >> shift) + int(zo)


def reference_add(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    a_params: tuple[float, int],
    b_params: tuple[float, int],
    out: tuple[float, int],
) -> npt.NDArray[np.int64]:
    """TFLite's reference int8 ADD (before clamping): inputs shifted left 20 bits, rescaled to twice
    the larger input scale, summed, rescaled to the output, each step gemmlowp fixed point."""
    (sa, za), (sb, zb), (so, zo) = ((float(F32(s)), int(z)) for s, z in (a_params, b_params, out))
    twice = 2 * max(sa, sb)
    left = 1 << 20
    scaled_a = reference_requantize((np.asarray(a, dtype=np.int64) - za) * left, sa / twice)
    scaled_b = reference_requantize((np.asarray(b, dtype=np.int64) - zb) * left, sb / twice)
    return reference_requantize(scaled_a + scaled_b, twice / (left * so)) + zo


def fit_add_scale(
    a_params: tuple[float, int],
    b_params: tuple[float, int],
    out: tuple[float, int],
    table: npt.ArrayLike,
    low: int,
) -> tuple[float, int, int]:
    """(output scale, XNNPACK misses, reference misses) of the output scale within SCALE_SLACK of
    PyTorch's that makes both kernel sets' ADD closest to ``table`` (PyTorch's int8 result for every
    pair of int8 inputs, a x b = 256 x 256), fewest XNNPACK misses first; ``low``: the fused
    activation's lower bound."""
    want = np.asarray(table, dtype=np.int64)
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    best: tuple[int, int, float] | None = None
    for scale in _near_grid(F32(out[0]), float(out[0])):
        if np.isnan(scale):
            continue
        params = (float(scale), out[1])
        fast = np.clip(xnnpack_add(a, b, a_params, b_params, params), low, 127)
        slow = np.clip(reference_add(a, b, a_params, b_params, params), low, 127)
        found = (int(np.count_nonzero(fast != want)), int(np.count_nonzero(slow != want)), float(scale))
        if best is None or found[:2] < best[:2]:
            best = found
        if best[:2] == (0, 0):
            break
    assert best is not None
    return best[2], best[0], best[1]
