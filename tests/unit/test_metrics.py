"""Metrics, I/O quantization and layout helpers of the numeric validator (numpy only)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from liteport.validators import metrics


def test_identical_arrays_agree_perfectly() -> None:
    x = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    m = metrics.output_metrics(x, x.copy())
    assert m["max_abs"] == 0.0 and m["mean_abs"] == 0.0 and m["rmse"] == 0.0
    assert m["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert m["sqnr_db"] == metrics.SQNR_CAP_DB  # exact match: finite cap, not inf
    assert m["top1"] == 1.0
    assert m["ref_max_abs"] == pytest.approx(float(np.max(np.abs(x))))
    assert m["nonfinite"] == 0 and m["shape"] == [4, 10]


def test_known_errors() -> None:
    ref = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = ref + np.array([[0.0, 0.5, -1.0, 0.0]])
    assert metrics.max_abs(ref, out) == 1.0
    assert metrics.mean_abs(ref, out) == pytest.approx(0.375)
    assert metrics.rmse(ref, out) == pytest.approx(math.sqrt(1.25 / 4))
    # signal 30, noise 1.25 -> 10*log10(24)
    assert metrics.sqnr_db(ref, out) == pytest.approx(10 * math.log10(24.0))
    expected_cos = float(np.dot(ref.ravel(), out.ravel()) / (np.linalg.norm(ref) * np.linalg.norm(out)))
    assert metrics.cosine(ref, out) == pytest.approx(expected_cos)


def test_cosine_edge_cases() -> None:
    z = np.zeros(5)
    assert metrics.cosine(z, z) == 1.0
    assert metrics.cosine(z, np.ones(5)) == 0.0
    assert metrics.cosine(np.ones(5), -np.ones(5)) == pytest.approx(-1.0)
    assert math.isnan(metrics.cosine(np.ones(3), np.array([1.0, np.nan, 1.0])))


def test_sqnr_is_inf_safe() -> None:
    z = np.zeros(4)
    assert metrics.sqnr_db(z, z) == metrics.SQNR_CAP_DB
    assert metrics.sqnr_db(z, np.ones(4)) == -metrics.SQNR_CAP_DB
    tiny = np.ones(4) + 1e-300  # noise underflows to zero in float64
    assert math.isfinite(metrics.sqnr_db(np.ones(4), tiny))
    assert math.isnan(metrics.sqnr_db(np.ones(2), np.array([np.inf, 1.0])))


def test_top1() -> None:
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    out = np.array([[0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.6, 0.4]])
    assert metrics.top1_agreement(ref, out) == 0.75
    assert metrics.top1_agreement(np.ones((3, 1)), np.ones((3, 1))) is None  # no class axis
    assert metrics.top1_agreement(np.ones(3), np.ones(3)) == 1.0  # last axis is the class axis
    assert metrics.top1_agreement(np.float64(1.0), np.float64(1.0)) is None


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.output_metrics(np.zeros((2, 3)), np.zeros((3, 2)))


def test_worst_over_outputs_and_json_safety() -> None:
    a = metrics.output_metrics(np.ones((2, 3)), np.ones((2, 3)))
    b = metrics.output_metrics(np.array([[1.0, 2.0]]), np.array([[1.0, 2.5]]))
    w = metrics.worst([a, b])
    assert w["cosine"] == b["cosine"] and w["max_abs"] == 0.5 and w["sqnr_db"] == b["sqnr_db"]
    assert w["top1"] == 1.0 and w["ref_max_abs"] == 2.0
    c = metrics.output_metrics(np.ones(3), np.array([1.0, np.nan, 1.0]))
    w = metrics.worst([a, c])
    assert math.isnan(w["cosine"]) and w["nonfinite"] == 1
    safe = metrics.json_safe({"w": w, "x": [np.float32(1.5), math.inf, (np.int64(3),)]})
    json.dumps(safe, allow_nan=False)
    assert safe["w"]["cosine"] is None and safe["x"] == [1.5, None, [3]]
    assert metrics.worst([]) == {}


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
def test_quantize_round_trip(dtype: type) -> None:
    info = np.iinfo(dtype)
    scale, zero_point = 0.05, (128 if dtype is np.uint8 else 3 if dtype is np.int8 else 0)
    lo, hi = (info.min - zero_point) * scale, (info.max - zero_point) * scale
    x = np.linspace(lo, hi, 101)
    q = metrics.quantize(x, scale, zero_point, dtype)
    assert q.dtype == np.dtype(dtype)
    assert np.max(np.abs(metrics.dequantize(q, scale, zero_point) - x)) <= scale / 2 + 1e-9


def test_quantize_rounds_half_away_from_zero_and_clips() -> None:
    q = metrics.quantize(np.array([0.5, 1.5, -0.5, -1.5, 1000.0, -1000.0]), 1.0, 0, np.int8)
    assert q.tolist() == [1, 2, -1, -2, 127, -128]
    with pytest.raises(ValueError):
        metrics.quantize(np.zeros(2), 0.0, 0, np.int8)


def test_input_and_output_dtype_helpers() -> None:
    x = np.array([0.1, -0.2], dtype=np.float32)
    assert metrics.to_input_dtype(x, np.float32).dtype == np.float32
    assert metrics.to_input_dtype(x, np.int8, 0.1, 0).tolist() == [1, -2]
    # Integer tensors without quantization parameters (token ids) are cast, not quantized.
    assert metrics.to_input_dtype(np.array([3.0, 7.0]), np.int64).tolist() == [3, 7]
    y = metrics.from_output_dtype(np.array([10, -6], dtype=np.int8), 0.5, -6)
    assert y.dtype == np.float64 and y.tolist() == [8.0, 0.0]
    assert metrics.from_output_dtype(np.array([4], dtype=np.int32)).tolist() == [4.0]


def test_layout_transposes() -> None:
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    nhwc = metrics.nchw_to_nhwc(x)
    assert nhwc.shape == (2, 4, 5, 3)
    assert nhwc[1, 2, 3, 0] == x[1, 0, 2, 3]
    assert np.array_equal(metrics.nhwc_to_nchw(nhwc), x)
    v = np.arange(6).reshape(2, 3)
    assert metrics.nchw_to_nhwc(v) is v and metrics.nhwc_to_nchw(v) is v
