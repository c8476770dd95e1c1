"""Pure-numpy agreement metrics and tensor helpers of the numeric validator.

Imported only inside worker code (the validator's hook body and unit tests), never by the
host at plugin registration, so the host does not need numpy. Everything is computed in
float64 so the metric itself adds no error to what it measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

# An exact match has infinite SQNR; a finite cap keeps results valid JSON and comparable.
SQNR_CAP_DB = 200.0

# Names of the per-output metrics, in report order.
METRIC_NAMES = ("max_abs", "mean_abs", "rmse", "cosine", "sqnr_db", "top1", "ref_max_abs")

Array = npt.NDArray[Any]


def _f64(a: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return np.asarray(a, dtype=np.float64)


def _check_shapes(ref: Array, out: Array) -> None:
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {list(ref.shape)} vs output {list(out.shape)}")


def max_abs(ref: npt.ArrayLike, out: npt.ArrayLike) -> float:
    r, o = _f64(ref), _f64(out)
    _check_shapes(r, o)
    return float(np.max(np.abs(o - r))) if r.size else 0.0


def mean_abs(ref: npt.ArrayLike, out: npt.ArrayLike) -> float:
    r, o = _f64(ref), _f64(out)
    _check_shapes(r, o)
    return float(np.mean(np.abs(o - r))) if r.size else 0.0


def rmse(ref: npt.ArrayLike, out: npt.ArrayLike) -> float:
    r, o = _f64(ref), _f64(out)
    _check_shapes(r, o)
    return float(np.sqrt(np.mean(np.square(o - r)))) if r.size else 0.0


def cosine(ref: npt.ArrayLike, out: npt.ArrayLike) -> float:
    """Cosine similarity of the flattened arrays; two zero vectors agree (1), one zero vector does not (0)."""
    r, o = _f64(ref).ravel(), _f64(out).ravel()
    _check_shapes(r, o)
    nr, no = float(np.linalg.norm(r)), float(np.linalg.norm(o))
    if not (math.isfinite(nr) and math.isfinite(no)):
        return math.nan
    if nr == 0.0 and no == 0.0:
        return 1.0
    if nr == 0.0 or no == 0.0:
        return 0.0
    # Clip: rounding can push |cos| a hair above 1.
    return float(np.clip(np.dot(r, o) / (nr * no), -1.0, 1.0))


def sqnr_db(ref: npt.ArrayLike, out: npt.ArrayLike) -> float:
    """10*log10(signal power / noise power), capped to +-SQNR_CAP_DB (exact match -> +cap)."""
    r, o = _f64(ref), _f64(out)
    _check_shapes(r, o)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(o))):
        return math.nan
    signal = float(np.sum(np.square(r)))
    noise = float(np.sum(np.square(o - r)))
    if noise == 0.0:
        return SQNR_CAP_DB
    if signal == 0.0:
        return -SQNR_CAP_DB
    return float(np.clip(10.0 * math.log10(signal / noise), -SQNR_CAP_DB, SQNR_CAP_DB))


def top1_agreement(ref: npt.ArrayLike, out: npt.ArrayLike) -> float | None:
    """Fraction of positions whose argmax over the last axis agrees; None without a class axis."""
    r, o = _f64(ref), _f64(out)
    _check_shapes(r, o)
    if r.ndim == 0 or r.shape[-1] <= 1 or r.size == 0:
        return None
    return float(np.mean(np.argmax(r, axis=-1) == np.argmax(o, axis=-1)))


def output_metrics(ref: npt.ArrayLike, out: npt.ArrayLike) -> dict[str, Any]:
    """All per-output metrics for one output over all samples (leading axis = samples)."""
    r, o = _f64(ref), _f64(out)
    _check_shapes(r, o)
    ref_finite = r[np.isfinite(r)]
    return {
        "max_abs": max_abs(r, o),
        "mean_abs": mean_abs(r, o),
        "rmse": rmse(r, o),
        "cosine": cosine(r, o),
        "sqnr_db": sqnr_db(r, o),
        "top1": top1_agreement(r, o),
        "ref_max_abs": float(np.max(np.abs(ref_finite))) if ref_finite.size else 0.0,
        "nonfinite": int(np.count_nonzero(~np.isfinite(o))),
        "shape": [int(d) for d in r.shape],
    }


def worst(outputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate over outputs: the worst value of every metric (NaN is worst of all)."""
    if not outputs:
        return {}

    def pick(name: str, higher_is_better: bool) -> float | None:
        values = [float(m[name]) for m in outputs if m.get(name) is not None]
        if not values:
            return None
        if any(math.isnan(v) for v in values):
            return math.nan
        return min(values) if higher_is_better else max(values)

    return {
        "max_abs": pick("max_abs", False),
        "mean_abs": pick("mean_abs", False),
        "rmse": pick("rmse", False),
        "cosine": pick("cosine", True),
        "sqnr_db": pick("sqnr_db", True),
        "top1": pick("top1", True),
        "ref_max_abs": pick("ref_max_abs", False),
        "nonfinite": sum(int(m.get("nonfinite", 0)) for m in outputs),
    }


def json_safe(value: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) with None, recursively; numpy scalars become Python."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- quantization of I/O tensors -------------------------------------------------------------


def quantize(x: npt.ArrayLike, scale: float, zero_point: int, dtype: npt.DTypeLike) -> Array:
    """Float -> integer with the tensor's own parameters: round half away from zero, like TFLite."""
    target = np.dtype(dtype)
    if scale <= 0:
        raise ValueError(f"cannot quantize with scale {scale}")
    v = _f64(x) / scale
    rounded = np.sign(v) * np.floor(np.abs(v) + 0.5)
    info = np.iinfo(target)
    quantized: Array = np.clip(rounded + zero_point, info.min, info.max).astype(target)
    return quantized


def dequantize(q: npt.ArrayLike, scale: float, zero_point: int) -> npt.NDArray[np.float64]:
    """Integer -> float: (q - zero_point) * scale."""
    return (_f64(q) - float(zero_point)) * float(scale)


def to_input_dtype(x: npt.ArrayLike, dtype: npt.DTypeLike, scale: float = 0.0, zero_point: int = 0) -> Array:
    """Cast a reference input for a TFLite input tensor, quantizing when it is quantized."""
    target = np.dtype(dtype)
    if np.issubdtype(target, np.integer) and scale > 0:
        return quantize(x, scale, zero_point, target)
    return np.asarray(x).astype(target)


def from_output_dtype(y: npt.ArrayLike, scale: float = 0.0, zero_point: int = 0) -> npt.NDArray[np.float64]:
    """A TFLite output as float64, dequantized when it is a quantized integer tensor."""
    arr = np.asarray(y)
    if np.issubdtype(arr.dtype, np.integer) and scale > 0:
        return dequantize(arr, scale, zero_point)
    return arr.astype(np.float64)


# --- layouts ------------------------------------------------------------------------------------


def nchw_to_nhwc(x: Array) -> Array:
    """(N, C, H, W) -> (N, H, W, C); arrays of other ranks are returned unchanged."""
    return np.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 else x


def nhwc_to_nchw(x: Array) -> Array:
    """(N, H, W, C) -> (N, C, H, W); arrays of other ranks are returned unchanged."""
    return np.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x
