"""The transplant's model of how PyTorch (qnnpack), XNNPACK and TFLite's reference kernels round,
and the scale fitting built on it (numpy and torch only; the TFLite side is checked op by op in
tests/integration/test_qat_ops.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.ao.nn.quantized as nnq

from liteport.backends.qat_transplant import qmath
from liteport.stages.qat_reference import quantized_engine

F32 = np.float32


def _qnnpack_conv_outputs(
    input_scale: float, weight_scale: float, output_scale: float
) -> tuple[np.ndarray, ...]:
    """PyTorch's qnnpack 1x1 conv on every accumulator 127 a + b (a, b in -128..127), no bias."""
    with quantized_engine("qnnpack"):
        conv = nnq.Conv2d(2, 1, 1)
        weight = torch._make_per_tensor_quantized_tensor(
            torch.tensor([[[[127]], [[1]]]], dtype=torch.int8), weight_scale, 0
        )
        conv.set_weight_bias(weight, None)
        conv.scale, conv.zero_point = output_scale, 128
        a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
        pixels = np.stack([a.reshape(-1), b.reshape(-1)]).astype(np.uint8).reshape(1, 2, 1, -1)
        x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(pixels), input_scale, 128)
        out = conv(x).int_repr().numpy().reshape(-1).astype(np.int64) - 128
    acc = 127 * (a.reshape(-1) - 128) + (b.reshape(-1) - 128)
    return acc, out


@pytest.mark.parametrize("seed", range(6))
def test_qnnpack_requantizes_in_float32_with_the_reciprocal_of_the_output_scale(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scales = (float(rng.uniform(0.01, 0.1)), float(rng.uniform(0.001, 0.01)), float(rng.uniform(0.02, 0.2)))
    acc, out = _qnnpack_conv_outputs(*scales)
    expected = np.clip(qmath.round_fp32(acc, float(qmath.qnnpack_scale(*scales))), -128, 127)
    np.testing.assert_array_equal(out, expected)


def test_the_two_float32_scales_can_differ_and_flip_an_output() -> None:
    """A layer of the zoo's earlier (random, chaotic) mobilenet_v2_qat: XNNPACK's scale is one unit
    below PyTorch's, and the accumulator 10382 lands on 45.4999962 (XNNPACK: 45) or 45.5 (PyTorch: 46)."""
    scales = (0.0304883886128664, 0.005340890027582645, 0.037155043333768845)
    pytorch, xnnpack = qmath.qnnpack_scale(*scales), qmath.xnnpack_scale(*scales)
    assert np.nextafter(xnnpack, F32(1)) == pytorch
    assert qmath.round_fp32([10382], float(pytorch))[0] == 46
    assert qmath.round_fp32([10382], float(xnnpack))[0] == 45
    acc, out = _qnnpack_conv_outputs(*scales)
    assert out[acc == 10382][0] == 46


def test_fitted_scales_make_xnnpack_round_like_pytorch() -> None:
    """Almost always exactly; otherwise XNNPACK differs on a handful of accumulators at most."""
    rng = np.random.default_rng(0)
    inexact = 0
    for _ in range(40):
        s_in, s_out = float(rng.uniform(0.01, 0.1)), float(rng.uniform(0.02, 0.2))
        weights = [float(w) for w in rng.uniform(0.001, 0.01, size=3)]
        targets = [float(qmath.qnnpack_scale(s_in, w, s_out)) for w in weights]
        fitted, out = qmath.fit_scales(s_in, weights, s_out, targets)
        assert abs(out / s_out - 1) <= qmath.SCALE_SLACK
        for w, f, t in zip(weights, fitted, targets):
            assert abs(f / w - 1) <= qmath.SCALE_SLACK
            acc = np.arange(-int(257 / t), int(257 / t) + 1)
            got = qmath.round_fp32(acc, float(qmath.xnnpack_scale(s_in, f, out)))
            misses = int(np.count_nonzero(got != qmath.round_fp32(acc, t)))
            assert misses <= 4
            inexact += misses > 0
    assert inexact <= 2


def test_an_unreachable_scale_moves_the_output_scale_a_few_units() -> None:
    """No weight scale gives XNNPACK PyTorch's float32 scale here (the division skips it)."""
    s_in, w, s_out = 0.011487486772239208, 0.00831943191587925, 0.18429599702358246
    target = qmath.qnnpack_scale(s_in, w, s_out)
    grid = qmath._near_grid(F32(w), w, 64, 1e-5)
    assert not any(qmath.xnnpack_scale(s_in, float(c), s_out) == target for c in grid if not np.isnan(c))
    (fitted,), out = qmath.fit_scales(s_in, [w], s_out, [float(target)])
    assert out != float(F32(s_out)) and abs(out / s_out - 1) <= qmath.SCALE_SLACK
    assert qmath.xnnpack_scale(s_in, fitted, out) == target


def test_pooling_filter_scale_averages_like_qnnpack() -> None:
    for count in (4, 36, 49, 196, 256):
        target = qmath.qnnpack_pool_scale(0.05, 0.05, count)
        scale, out = qmath.pool_filter_scale(0.05, 0.05, float(target))
        sums = np.arange(-255 * count, 255 * count + 1)
        got = qmath.round_fp32(sums * qmath.UNIT_WEIGHT, float(qmath.xnnpack_scale(0.05, scale, out)))
        np.testing.assert_array_equal(got, qmath.round_fp32(sums, float(target)))


def test_reference_kernels_round_twice() -> None:
    """gemmlowp's two roundings: 1/4 as multiplier 2**30 with a shift of 1 takes 0.25 to 1 (and
    -0.25 to 0)."""
    assert qmath.quantize_multiplier(0.25) == (1 << 30, -1)
    assert qmath.reference_requantize([1, 2, 6, -1, -2, -6], 0.25).tolist() == [1, 1, 2, 0, -1, -2]
    # Without a right shift only the high multiply rounds: ties up (its nudge for negative
    # products falls just short of one half).
    values = np.arange(-1000, 1000)
    np.testing.assert_array_equal(qmath.reference_requantize(values, 0.75), np.floor(values * 0.75 + 0.5))


def _cat_table(s_in: float, zp_in: int, s_out: float, zp_out: int) -> np.ndarray:
    every = torch._make_per_tensor_quantized_tensor(
        torch.arange(256, dtype=torch.uint8).reshape(1, 1, 1, 256), s_in, zp_in
    )
    moved = torch.ops.quantized.cat([every], dim=1, scale=s_out, zero_point=zp_out)
    return moved.int_repr().numpy().reshape(-1).astype(np.int64) - 128


@pytest.mark.parametrize("seed", range(8))
def test_rescale_reproduces_pytorchs_cat_on_xnnpack(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s_in, s_out = (float(s) for s in rng.uniform(0.01, 0.2, size=2))
    zp_in, zp_out = (int(z) for z in rng.integers(0, 256, size=2))
    fit = qmath.fit_rescale(s_in, zp_in - 128, s_out, zp_out - 128, _cat_table(s_in, zp_in, s_out, zp_out))
    assert fit.misses_xnnpack == 0 and fit.gain in (1, 2, 4, 8, 16, 32, 64)
    assert abs(fit.weight_scale * fit.gain - 1) <= qmath.DERIVED_SLACK


def _add_table(params: list[tuple[float, int]], out: tuple[float, int]) -> np.ndarray:
    a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    qa, qb = (
        torch._make_per_tensor_quantized_tensor(
            torch.from_numpy(g.astype(np.uint8)).reshape(1, 1, 256, 256), s, z
        )
        for g, (s, z) in zip((a, b), params)
    )
    with quantized_engine("qnnpack"):
        result = torch.ops.quantized.add(qa, qb, out[0], out[1])
    return result.int_repr().numpy().reshape(256, 256).astype(np.int64) - 128


def test_add_output_scale_is_fitted_to_pytorchs_table() -> None:
    rng = np.random.default_rng(3)
    misses = []
    for _ in range(6):
        params = [(float(rng.uniform(0.01, 0.1)), int(rng.integers(0, 256))) for _ in range(2)]
        out = (float(rng.uniform(0.02, 0.2)), int(rng.integers(0, 256)))
        table = _add_table(params, out)
        shifted = [(s, z - 128) for s, z in params]
        scale, fast, _ = qmath.fit_add_scale(shifted[0], shifted[1], (out[0], out[1] - 128), table, -128)
        assert abs(scale / out[0] - 1) <= qmath.SCALE_SLACK
        misses.append(fast)
    # XNNPACK's 22-bit multipliers cannot always match: a few input pairs of 65536 at most.
    assert max(misses) <= 3 and misses.count(0) >= 4
