"""Pass/fail thresholds of the numeric validator, per quantization mode.

Pure Python (no numpy): the host parses and reports thresholds, workers judge with them,
and a stored result can be re-judged later from its metrics alone (``judge``), which is how
thresholds get calibrated on the zoo. Defaults follow DESIGN.md "Validation defaults".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from liteport.errors import UsageError
from liteport.types import MODES


# Plain frozen dataclass (not types.record): mypy understands it, and Python 3.9 workers run it.
@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Minimum agreement a converted model must reach with PyTorch, checked per output.

    ``max_abs_rel`` bounds max_abs by ``max_abs_rel * max(1, largest |reference|)``;
    ``None`` disables a check (cosine is always checked).
    """

    min_cosine: float
    max_abs_rel: float | None = None
    min_sqnr_db: float | None = None
    min_top1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Thresholds | None = None) -> Thresholds:
        """Build from field names or short keys; keys missing from ``data`` come from ``base``.

        Without ``base``, ``min_cosine`` is required and the optional checks default to off.
        """
        changes = _normalize(data, source="thresholds")
        if base is None:
            if "min_cosine" not in changes:
                raise UsageError("thresholds need min_cosine (or cosine)")
            base = Thresholds(min_cosine=float(changes["min_cosine"]))
        return dataclasses.replace(base, **changes)

    def updated(self, overrides: Mapping[str, Any] | str | None) -> Thresholds:
        """These thresholds with ``overrides`` (a mapping or a "cosine=0.99,sqnr=12" string) applied."""
        if overrides is None:
            return self
        changes = parse_overrides(overrides) if isinstance(overrides, str) else overrides
        return Thresholds.from_dict(changes, base=self)

    def describe(self) -> str:
        """One line for reports, e.g. "cosine >= 0.9999, max_abs <= 0.0001*max(1,|ref|)"."""
        parts = [f"cosine >= {self.min_cosine:g}"]
        if self.max_abs_rel is not None:
            parts.append(f"max_abs <= {self.max_abs_rel:g}*max(1,|ref|)")
        if self.min_sqnr_db is not None:
            parts.append(f"sqnr >= {self.min_sqnr_db:g} dB")
        if self.min_top1 is not None:
            parts.append(f"top1 >= {self.min_top1:g}")
        return ", ".join(parts)


# Calibrated on the zoo with `nox -s survey` (the worst passing figures are in the README's
# thresholds section): the limits sit below random-weight MobileNetV2's quantization error, a
# property of the random model (DESIGN.md), not of a converter, and still catch a broken model
# (cosine ~0 or NaN). int16x8 keeps int8 weights and measured like dynamic.
_DEFAULTS: dict[str, Thresholds] = {
    "fp32": Thresholds(min_cosine=0.9999, max_abs_rel=1e-4),
    "fp16": Thresholds(min_cosine=0.999, min_sqnr_db=30.0),
    "dynamic": Thresholds(min_cosine=0.97, min_sqnr_db=12.0),
    "int8": Thresholds(min_cosine=0.95, min_sqnr_db=10.0),
    "int16x8": Thresholds(min_cosine=0.97, min_sqnr_db=12.0),
    # qat is judged against the fake-quant model, which PyTorch's own int8 model already departs from
    # (random-weight mobilenet_v2_qat: cosine 0.818 for PyTorch int8 and the transplant alike);
    # agreement with PyTorch's int8 model is the qparams validator's job.
    "qat": Thresholds(min_cosine=0.75),
}

# Short keys people type on the command line, mapped to field names.
ALIASES: dict[str, str] = {
    "cosine": "min_cosine",
    "cos": "min_cosine",
    "max_abs": "max_abs_rel",
    "maxabs": "max_abs_rel",
    "sqnr": "min_sqnr_db",
    "sqnr_db": "min_sqnr_db",
    "top1": "min_top1",
}
_FIELDS = ("min_cosine", "max_abs_rel", "min_sqnr_db", "min_top1")
_OFF = ("none", "off", "null")  # never "": an empty value is a typo, not a request to switch a check off


def default_thresholds(mode: str) -> Thresholds:
    """The default thresholds of a quantization mode (one of liteport.types.MODES)."""
    try:
        return _DEFAULTS[mode]
    except KeyError:
        raise UsageError(f"unknown mode {mode!r} for thresholds", hint="modes: " + ", ".join(MODES)) from None


def parse_overrides(text: str) -> dict[str, float | None]:
    """Parse "cosine=0.99,sqnr=12,top1=off" into field-name -> value changes.

    Apply with ``default_thresholds(mode).updated(text)``.
    """
    pairs: dict[str, Any] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"threshold override {item!r} is not KEY=VALUE", hint=_keys_hint())
        pairs[key.strip()] = value.strip()
    return _normalize(pairs, source="threshold override")


def judge(thresholds: Thresholds, outputs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Check per-output metrics; return one message per missed threshold (empty when all pass).

    Each mapping holds cosine, max_abs, ref_max_abs, sqnr_db and top1 (None when not computed);
    a missing or non-finite value counts as a miss, so NaN outputs can never pass.
    """
    misses: list[str] = []
    for index, metrics in enumerate(outputs):
        label = f"output {index}"
        nonfinite = int(metrics.get("nonfinite") or 0)
        if nonfinite:
            # NaN/inf outputs make every other metric meaningless: one clear message instead.
            misses.append(f"{label}: {nonfinite} non-finite values")
            continue
        cosine = _number(metrics.get("cosine"))
        if not cosine >= thresholds.min_cosine:
            misses.append(
                f"{label}: cosine {_fmt(cosine, thresholds.min_cosine)} < {thresholds.min_cosine:g}"
            )
        if thresholds.max_abs_rel is not None:
            limit = thresholds.max_abs_rel * max(1.0, _number(metrics.get("ref_max_abs"), default=1.0))
            max_abs = _number(metrics.get("max_abs"))
            if not max_abs <= limit:
                misses.append(f"{label}: max_abs {_fmt(max_abs, limit)} > {limit:.4g}")
        if thresholds.min_sqnr_db is not None:
            sqnr = _number(metrics.get("sqnr_db"))
            if not sqnr >= thresholds.min_sqnr_db:
                misses.append(
                    f"{label}: sqnr {_fmt(sqnr, thresholds.min_sqnr_db)} dB < {thresholds.min_sqnr_db:g} dB"
                )
        # top-1 only exists for outputs with a class axis; elsewhere the check does not apply.
        if thresholds.min_top1 is not None and metrics.get("top1") is not None:
            top1 = _number(metrics.get("top1"))
            if not top1 >= thresholds.min_top1:
                misses.append(f"{label}: top1 {_fmt(top1, thresholds.min_top1)} < {thresholds.min_top1:g}")
    return misses


def _normalize(data: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Map aliases to field names and check every value; unknown keys are errors."""
    changes: dict[str, Any] = {}
    for raw_key, raw_value in data.items():
        key = str(raw_key).strip().lower().replace("-", "_")
        field = key if key in _FIELDS else ALIASES.get(key)
        if field is None:
            raise UsageError(f"unknown {source} key {raw_key!r}", hint=_keys_hint())
        changes[field] = _value(field, raw_key, raw_value, source)
    return changes


def _value(field: str, key: Any, value: Any, source: str) -> float | None:
    # cosine is always checked; every other check can be switched off, but only by saying so.
    off_hint = "cosine=-1 accepts anything" if field == "min_cosine" else f"{key}=off switches the check off"
    if isinstance(value, str) and not value.strip():
        raise UsageError(f"{source} {key!r} needs a value", hint=f"give a number; {off_hint}")
    if value is None or (isinstance(value, str) and value.strip().lower() in _OFF):
        if field == "min_cosine":
            raise UsageError(
                f"{source} {key!r} cannot be switched off", hint="use cosine=-1 to accept anything"
            )
        return None
    if isinstance(value, bool):
        raise UsageError(f"{source} {key!r} needs a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source} {key!r} needs a number or 'off', got {value!r}") from None
    if math.isnan(number):
        raise UsageError(f"{source} {key!r} cannot be NaN")
    if math.isinf(number):  # an infinite limit passes or fails everything: say 'off' instead
        raise UsageError(f"{source} {key!r} must be finite, got {number:g}", hint=off_hint)
    if field == "min_cosine" and not -1.0 <= number <= 1.0:
        raise UsageError(f"{source} {key!r} must lie in [-1, 1], got {number:g}")
    if field == "min_top1" and not 0.0 <= number <= 1.0:
        raise UsageError(f"{source} {key!r} must lie in [0, 1], got {number:g}")
    if field == "max_abs_rel" and number < 0:
        raise UsageError(f"{source} {key!r} must be >= 0, got {number:g}")
    return number


def _keys_hint() -> str:
    return "keys: cosine, max_abs, sqnr, top1 (or " + ", ".join(_FIELDS) + "); 'off' disables one"


def _number(value: Any, default: float = math.nan) -> float:
    """A metric as float; None (not computed / not JSON-representable) becomes ``default``."""
    if value is None:
        return default
    return float(value)


def _fmt(value: float, limit: float) -> str:
    """``value`` with just enough digits to differ visibly from ``limit`` (0.99989 vs 0.9999)."""
    if math.isnan(value):
        return "n/a"
    for digits in range(4, 13):
        text = f"{value:.{digits}g}"
        if text != f"{limit:.{digits}g}":
            return text
    return repr(value)
