# ruff: noqa: E501  (READ_PAGE is page script: long lines are page source)
"""matrix.html answers "which route should I ship?": the recommended route per model and mode, the
per-environment summary, the int8-slower-than-fp32 flag, and short model names with the full
reference on hover. Real mouse events through the DevTools protocol; the test waits on the page's
load event and on the details box changing, never on time."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from cdp import opened  # pytest puts this folder (no __init__.py) on sys.path
from journal_entries import entry as _entry  # tests/ is on sys.path (no __init__.py)
from test_report_page import CHROMIUM, FLAGS

from liteport.reports import build, write_reports

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (nox -s browser)"
)

CONVNEXT = "/home/someone/projects/vision/models/convnext_like.py:build"


def _entries() -> list[dict[str, Any]]:
    return [
        _entry("zoo:mobilenet_v2", "litert-torch-0.10", "fp32", "ok", 7.1),
        _entry("zoo:mobilenet_v2", "onnx-tf-tf2.15", "fp32", "ok", 10.0),
        _entry("zoo:mobilenet_v2", "litert-torch-0.10", "int8", "ok", 3.6),
        _entry("zoo:mobilenet_v2", "onnx-tf-tf2.15", "int8", "invalid", 1.0),
        _entry(CONVNEXT, "litert-torch-0.10", "fp32", "ok", 140.0),
        _entry(CONVNEXT, "litert-torch-0.10", "int8", "ok", 422.0, ops_outside_delegate={"GELU": 3}),
        _entry(CONVNEXT, "onnx-tf-tf2.15", "fp32", "failed", None),
        _entry(CONVNEXT, "onnx-tf-tf2.15", "int8", "failed", None),
    ]


# Reads what a person sees: the recommended table, the environment summary, the grid's flags.
READ_PAGE = """(function () {
  var routes = {};
  document.querySelectorAll('#recommended tr[data-model]').forEach(function (tr) {
    tr.querySelectorAll('td[data-mode]').forEach(function (td) {
      routes[tr.getAttribute('data-model') + ' ' + td.getAttribute('data-mode')] = td.textContent;
    });
  });
  var envs = {};
  document.querySelectorAll('#env-summary tr[data-environment]').forEach(function (tr) {
    var row = {};
    tr.querySelectorAll('td[data-count]').forEach(function (td) { row[td.getAttribute('data-count')] = +td.textContent; });
    envs[tr.getAttribute('data-environment')] = row;
  });
  var outlined = Array.prototype.map.call(document.querySelectorAll('td.cell.recommended'), function (td) { return td.dataset.key; });
  var slower = Array.prototype.map.call(document.querySelectorAll('td.cell.slower'), function (td) { return [td.dataset.key, td.textContent]; });
  var rows = Array.prototype.map.call(document.querySelectorAll('table.grid tbody th.model'), function (th) { return th.textContent; });
  return {routes: routes, envs: envs, outlined: outlined.sort(), slower: slower, rows: rows};
})()"""


def test_report_names_the_route_to_ship_and_flags_slow_int8(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    page = write_reports(build(_entries()), tmp_path / "report")[2]
    with opened(CHROMIUM, FLAGS, page, tmp_path / "profile") as browser:
        assert browser.evaluate("document.documentElement.getAttribute('data-js-error')") is None
        seen = browser.evaluate(READ_PAGE)

        # hover over the short model name: the element under the pointer carries the full reference
        x, y = browser.center("table.grid th.model abbr[title$='convnext_like.py:build']")
        browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        hovered = browser.evaluate(
            f"(function () {{ var el = document.elementFromPoint({x}, {y});"
            " while (el && !el.title) el = el.parentElement; return el && el.title; })()"
        )

        browser.click(*browser.center("td.cell.slower"))
        details = browser.wait_for(
            "var note = document.querySelector('#details .slower-note'); if (!note) return null;"
            " return {note: note.textContent, ref: document.querySelector('#details .model-ref').textContent,"
            "         title: document.querySelector('#details h2').textContent};"
        )

    routes = seen["routes"]
    assert routes["zoo:mobilenet_v2 fp32"] == "ai-edge-torch / litert-torch-0.10 · 7.10 ms"
    assert routes["zoo:mobilenet_v2 int8"].startswith("ai-edge-torch / litert-torch-0.10"), (
        "invalid never wins"
    )
    assert routes[f"{CONVNEXT} int8"] == "ai-edge-torch / litert-torch-0.10 · 422.00 ms"
    assert seen["outlined"] == sorted(
        [
            "zoo:mobilenet_v2|litert-torch-0.10|fp32",
            "zoo:mobilenet_v2|litert-torch-0.10|int8",
            f"{CONVNEXT}|litert-torch-0.10|fp32",
            f"{CONVNEXT}|litert-torch-0.10|int8",
        ]
    )
    assert seen["envs"]["litert-torch-0.10"] == {
        "cells": 4,
        "valid": 4,
        "invalid": 0,
        "failed": 0,
        "unsupported": 0,
    }
    assert seen["envs"]["onnx-tf-tf2.15"] == {
        "cells": 4,
        "valid": 1,
        "invalid": 1,
        "failed": 2,
        "unsupported": 0,
    }
    assert seen["slower"] == [[f"{CONVNEXT}|litert-torch-0.10|int8", "🐢 3.0x fp32 · 422.00 ms · 30 dB"]]
    assert seen["rows"] == ["mobilenet_v2", "convnext_like.py:build"]
    assert hovered == CONVNEXT
    assert "int8 is 3.01x slower than fp32 (140 ms)" in details["note"] and "GELU x3" in details["note"]
    assert details["ref"] == f"model: {CONVNEXT}"
    assert details["title"].startswith("convnext_like.py:build")
    keep = Path(__file__).parent.parent.parent / "build" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(page, keep / "matrix-answers.html")  # for a person to look at after CI
