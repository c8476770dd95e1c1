"""The report's answers: recommended route per model and mode, environment summaries, the
int8-slower-than-fp32 flag and short model names (matrix.json and matrix.md)."""

from __future__ import annotations

from typing import Any

from journal_entries import entry as _entry  # tests/ is on sys.path (no __init__.py)

from liteport.reports.document import build, short_names
from liteport.reports.markdown import render_markdown

LONG = "/home/someone/projects/vision/models/net.py:build"
OTHER = "/home/someone/projects/audio/models/net.py:build"


def _document() -> dict[str, Any]:
    outside = {"ops_outside_delegate": {"MEAN": 2, "HARD_SWISH": 4}}
    return build(
        [
            _entry("zoo:mobilenet_v2", "litert-torch-0.10", "fp32", "ok", 7.1),
            _entry("zoo:mobilenet_v2", "onnx-tf-tf2.15", "fp32", "ok", 10.0),
            _entry("zoo:mobilenet_v2", "litert-torch-0.10", "int8", "ok", 3.6),
            _entry("zoo:mobilenet_v2", "onnx-tf-tf2.15", "int8", "invalid", 1.0),  # faster, but invalid
            _entry(LONG, "litert-torch-0.10", "fp32", "ok", 140.0),
            _entry(LONG, "litert-torch-0.10", "int8", "ok", 422.0, **outside),
            _entry(LONG, "onnx-tf-tf2.15", "fp32", "failed", None),
            _entry(LONG, "onnx-tf-tf2.15", "int8", "timeout", None),
            _entry(OTHER, "onnx-tf-tf2.15", "int8", "failed", None),
        ]
    )


def test_recommended_route_is_the_fastest_valid_cell() -> None:
    doc = _document()
    assert doc["recommended"]["pick"] == "fastest"
    routes = doc["recommended"]["routes"]
    assert routes["zoo:mobilenet_v2"]["fp32"]["environment"] == "litert-torch-0.10"
    assert routes["zoo:mobilenet_v2"]["int8"]["environment"] == "litert-torch-0.10", "invalid never wins"
    assert routes["zoo:mobilenet_v2"]["int8"]["latency_ms"] == 3.6
    assert routes[OTHER] == {"int8": None}, "a mode with no valid route says so"


def test_environment_summary_counts_valid_invalid_failed() -> None:
    summary = _document()["environment_summary"]
    assert summary["litert-torch-0.10"] == {
        "backend": "ai-edge-torch",
        "cells": 4,
        "valid": 4,
        "invalid": 0,
        "failed": 0,
        "unsupported": 0,
    }
    onnx = summary["onnx-tf-tf2.15"]
    assert (onnx["cells"], onnx["valid"], onnx["invalid"], onnx["failed"]) == (5, 1, 1, 3)


def test_int8_slower_than_fp32_is_flagged_with_the_ops_outside_the_delegate() -> None:
    doc = _document()
    slower = {
        (c["model"], c["environment"]): c["slower_than_fp32"] for c in doc["cells"] if c["mode"] == "int8"
    }
    assert slower[(LONG, "litert-torch-0.10")] == {
        "fp32_latency_ms": 140.0,
        "ratio": 3.01,
        "ops_outside_delegate": {"MEAN": 2, "HARD_SWISH": 4},
    }
    assert slower[("zoo:mobilenet_v2", "litert-torch-0.10")] is None, "int8 faster than fp32: no flag"
    assert slower[(LONG, "onnx-tf-tf2.15")] is None, "no valid fp32 to compare with"


def test_short_names_stay_distinct_and_the_json_keeps_the_full_reference() -> None:
    doc = _document()
    assert doc["model_names"] == {
        "zoo:mobilenet_v2": "mobilenet_v2",
        LONG: "vision/models/net.py:build",
        OTHER: "audio/models/net.py:build",
    }
    assert short_names(["/a/x.py:f"]) == {"/a/x.py:f": "x.py:f"}
    cell = next(c for c in doc["cells"] if c["model"] == LONG)
    assert cell["model_name"] == "vision/models/net.py:build"


def test_markdown_answers_which_route_to_ship() -> None:
    text = render_markdown(_document())
    recommended = text.split("## Recommended route")[1].split("##")[0]
    assert (
        '| <abbr title="zoo:mobilenet_v2">mobilenet_v2</abbr> | '
        "**ai-edge-torch / litert-torch-0.10** (7.10 ms) |" in recommended
    )
    assert "— none valid" in recommended
    assert "| onnx-tf-tf2.15 | onnx-tf | 5 | 1 | 1 | 3 | 0 |" in text.split("## Per environment")[1]
    slower = text.split("## int8 slower than fp32")[1].split("##")[0]
    assert "422.00 ms against fp32 140.00 ms (3.0x)" in slower
    assert "MEAN x2, HARD_SWISH x4" in slower
    assert f'<abbr title="{LONG}">vision/models/net.py:build</abbr>' in text
    assert f"| vision/models/net.py:build | `{LONG}` |" in text.split("## Models")[1]


def test_slower_int8_says_whether_the_ops_outside_the_delegate_were_measured() -> None:
    def slower_line(**facts: Any) -> str:
        doc = build(
            [
                _entry("zoo:resnet", "litert-torch-0.10", "fp32", "ok", 5.0),
                _entry("zoo:resnet", "litert-torch-0.10", "int8", "ok", 9.0, **facts),
            ]
        )
        return render_markdown(doc).split("## int8 slower than fp32")[1].split("##")[0]

    assert "every op ran in the delegate" in slower_line(ops_outside_delegate={})
    assert "do not say which ops" in slower_line()
    assert "ran outside the delegate: MEAN x1" in slower_line(ops_outside_delegate={"MEAN": 1})
