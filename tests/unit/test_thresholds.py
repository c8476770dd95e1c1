"""Per-mode validation thresholds: defaults, overrides, JSON round trip, judging (pure Python)."""

from __future__ import annotations

import json
import math

import pytest

from liteport.errors import UsageError
from liteport.types import MODES
from liteport.validators.thresholds import Thresholds, default_thresholds, judge, parse_overrides


def test_defaults_cover_every_mode() -> None:
    for mode in MODES:
        assert isinstance(default_thresholds(mode), Thresholds)
    fp32 = default_thresholds("fp32")
    assert fp32.min_cosine == 0.9999 and fp32.max_abs_rel == 1e-4 and fp32.min_sqnr_db is None
    assert default_thresholds("fp16") == Thresholds(min_cosine=0.999, min_sqnr_db=30.0)
    assert default_thresholds("int8").min_sqnr_db == 10.0
    assert default_thresholds("qat") == Thresholds(min_cosine=0.75)
    with pytest.raises(UsageError, match="unknown mode 'int4'"):
        default_thresholds("int4")


def test_parse_overrides() -> None:
    assert parse_overrides("cosine=0.99,sqnr=12") == {"min_cosine": 0.99, "min_sqnr_db": 12.0}
    assert parse_overrides(" top1 = 0.9 , max_abs=off ,") == {"min_top1": 0.9, "max_abs_rel": None}
    assert parse_overrides("min_sqnr_db=20") == {"min_sqnr_db": 20.0}
    assert parse_overrides("") == {}
    assert parse_overrides("sqnr=off,top1=none") == {"min_sqnr_db": None, "min_top1": None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cosin=0.9", "unknown threshold override key 'cosin'"),
        ("cosine", "not KEY=VALUE"),
        ("sqnr=lots", "needs a number"),
        ("cosine=off", "cannot be switched off"),
        ("cosine=1.5", r"\[-1, 1\]"),
        ("top1=2", r"\[0, 1\]"),
        ("max_abs=-1", ">= 0"),
        ("sqnr=nan", "NaN"),
        # An empty value or an infinite limit would switch a check off silently: only 'off' does that.
        ("sqnr=", "needs a value"),
        ("sqnr= ,cosine=0.9", "needs a value"),
        ("sqnr=-inf", "finite"),
        ("max_abs=inf", "finite"),
        ("top1=-inf", "finite"),
    ],
)
def test_parse_overrides_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_overrides(text)


def test_unknown_key_error_lists_the_keys() -> None:
    with pytest.raises(UsageError) as info:
        parse_overrides("psnr=3")
    assert "cosine, max_abs, sqnr, top1" in str(info.value)
    assert info.value.kind == "bad_input"


def test_updated_keeps_mode_defaults() -> None:
    int8 = default_thresholds("int8")
    assert int8.updated("cosine=0.9") == Thresholds(min_cosine=0.9, min_sqnr_db=10.0)
    assert int8.updated({"sqnr": None}) == Thresholds(min_cosine=0.95)
    assert int8.updated(None) is int8
    assert int8.updated(int8.to_dict()) == int8


def test_json_round_trip() -> None:
    for mode in MODES:
        th = default_thresholds(mode)
        assert Thresholds.from_dict(json.loads(json.dumps(th.to_dict()))) == th
    assert Thresholds.from_dict({"cosine": 0.5}) == Thresholds(min_cosine=0.5)
    with pytest.raises(UsageError, match="min_cosine"):
        Thresholds.from_dict({"sqnr": 3})
    with pytest.raises(UsageError, match="unknown thresholds key 'bogus'"):
        Thresholds.from_dict({"min_cosine": 0.5, "bogus": 1})
    with pytest.raises(UsageError, match="needs a number"):
        Thresholds.from_dict({"min_cosine": True})


def test_thresholds_are_frozen() -> None:
    th = default_thresholds("fp32")
    with pytest.raises(AttributeError):
        th.min_cosine = 0.1  # type: ignore[misc]


def _out(**values: float | None) -> dict[str, float | None]:
    base: dict[str, float | None] = {
        "cosine": 1.0,
        "max_abs": 0.0,
        "ref_max_abs": 1.0,
        "sqnr_db": 200.0,
        "top1": 1.0,
    }
    base.update(values)
    return base


def test_judge_fp32() -> None:
    th = default_thresholds("fp32")
    assert judge(th, [_out()]) == []
    assert judge(th, [_out(), _out(cosine=0.9812)]) == ["output 1: cosine 0.9812 < 0.9999"]
    # max_abs scales with the largest reference magnitude above 1, not below.
    assert judge(th, [_out(max_abs=4e-4, ref_max_abs=5.0)]) == []
    assert judge(th, [_out(max_abs=2e-4, ref_max_abs=0.3)]) == ["output 0: max_abs 0.0002 > 0.0001"]


def test_judge_shows_enough_digits() -> None:
    (miss,) = judge(default_thresholds("fp32"), [_out(cosine=0.99989)])
    assert miss == "output 0: cosine 0.99989 < 0.9999"


def test_judge_quantized_and_missing_values() -> None:
    th = default_thresholds("int8").updated("top1=0.9")
    assert judge(th, [_out(cosine=0.97, sqnr_db=14.0, top1=None)]) == []  # top1 n/a: not checked
    misses = judge(th, [_out(cosine=0.9, sqnr_db=8.5, top1=0.5)])
    assert misses == [
        "output 0: cosine 0.9 < 0.95",
        "output 0: sqnr 8.5 dB < 10 dB",
        "output 0: top1 0.5 < 0.9",
    ]
    # None (not JSON-representable, e.g. NaN) and NaN never pass.
    assert judge(th, [_out(cosine=None)]) == ["output 0: cosine n/a < 0.95"]
    assert judge(th, [_out(sqnr_db=math.nan)]) == ["output 0: sqnr n/a dB < 10 dB"]
    assert judge(th, [{**_out(), "nonfinite": 3}]) == ["output 0: 3 non-finite values"]


def test_describe() -> None:
    assert default_thresholds("fp32").describe() == "cosine >= 0.9999, max_abs <= 0.0001*max(1,|ref|)"
    assert default_thresholds("int8").describe() == "cosine >= 0.95, sqnr >= 10 dB"
