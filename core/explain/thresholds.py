"""Per-layer thresholds per mode, and the bar a value-only match must clear.

A layer *diverges* when its SQNR against PyTorch is below ``sqnr_db`` **and** it added at least
``added_db`` itself (the SQNR of what it received minus its own). Both are needed: error grows
layer by layer in any quantized network (a random-weight MobileNetV2 int8 ends its feature
extractor near 2 dB while its pooled output is fine), so a floor alone blames healthy layers,
while a healthy layer adds only a little. Calibrated on the zoo and planted-fault models like the
output thresholds (README, "Where it drifts"); ``--layer-threshold sqnr=..,added=..`` overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from liteport.errors import UsageError


@dataclass(frozen=True)
class LayerThresholds:
    sqnr_db: float  # a layer below this floor ...
    added_db: float  # ... that lost at least this much itself diverges

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def describe(self) -> str:
        return f"SQNR < {self.sqnr_db:g} dB and added >= {self.added_db:g} dB"

    def updated(self, overrides: str | Mapping[str, Any] | None) -> LayerThresholds:
        """A copy with ``sqnr=..,added=..`` (or a mapping with those keys) applied."""
        if not overrides:
            return self
        pairs: dict[str, Any] = (
            dict(item.split("=", 1) for item in overrides.split(",") if item.strip())
            if isinstance(overrides, str)
            else dict(overrides)
        )
        changes: dict[str, float] = {}
        for key, value in pairs.items():
            field = {
                "sqnr": "sqnr_db",
                "sqnr_db": "sqnr_db",
                "added": "added_db",
                "added_db": "added_db",
            }.get(key.strip())
            if field is None:
                raise UsageError(f"unknown layer threshold {key!r}", hint="use sqnr=DB and/or added=DB")
            try:
                changes[field] = float(value)
            except ValueError:
                raise UsageError(f"layer threshold {key}={value!r} is not a number") from None
        return replace(self, **changes)


_DEFAULTS = {
    "fp32": LayerThresholds(sqnr_db=40.0, added_db=20.0),
    "fp16": LayerThresholds(sqnr_db=25.0, added_db=10.0),
    "dynamic": LayerThresholds(sqnr_db=15.0, added_db=8.0),
    "int8": LayerThresholds(sqnr_db=15.0, added_db=8.0),
    "int16x8": LayerThresholds(sqnr_db=25.0, added_db=8.0),
    "qat": LayerThresholds(sqnr_db=15.0, added_db=8.0),
}


def layer_thresholds(mode: str) -> LayerThresholds:
    return _DEFAULTS.get(mode, _DEFAULTS["int8"])


@dataclass(frozen=True)
class ValueMatch:
    """A tensor found by values alone must agree this well with the module's output."""

    cosine: float
    sqnr_db: float


# Only float conversions are matched by values: in quantized modes the broken layer would be the
# one that fails to match, so those borrow the matches of the float conversion instead.
VALUE_MATCH = {
    "fp32": ValueMatch(cosine=0.9999, sqnr_db=50.0),
    "fp16": ValueMatch(cosine=0.999, sqnr_db=30.0),
}
FLOAT_MODES = tuple(VALUE_MATCH)
