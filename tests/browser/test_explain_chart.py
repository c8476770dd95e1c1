"""matrix.html of a matrix run with ``--explain``: clicking an invalid cell shows the per-layer SQNR chart.

The journal entries are what ``liteport matrix --explain`` writes (an invalid cell carries the
compact explain document); the click is a real mouse event through the DevTools protocol, and the
test waits on the page's load event and on the chart's appearance, never on time.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from cdp import opened  # pytest puts this folder (no __init__.py) on sys.path
from test_report_page import CHROMIUM, FLAGS

from liteport.reports import build, write_reports

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (nox -s browser)"
)

LAYERS = [
    ("stem.2", 38.5, 2.2),
    ("blocks.0.conv.2", 36.3, 2.2),
    ("blocks.0.project", 34.9, 1.4),
    ("blocks.0", 34.9, 0.0),
    ("blocks.1.act", 32.7, -0.4),
    ("blocks.1.project", 0.1, 32.6),
    ("blocks.2", 0.6, -0.6),
    ("head", 0.1, 1.2),
]


def _explain() -> dict[str, Any]:
    return {
        "schema": "liteport-explain/1",
        "first_divergent": "blocks.1.project",
        "hint": "one channel (0) holds 100.0% of the int8 range of blocks.1.act's tensor",
        "fraction": 1.0,
        "thresholds": {"sqnr_db": 15.0, "added_db": 8.0},
        "error": None,
        "layers": [
            {
                "module": m,
                "ops": "CONV_2D",
                "sqnr_db": s,
                "added_db": a,
                "cosine": 0.9,
                "flag": m == "blocks.1.project",
            }
            for m, s, a in LAYERS
        ],
    }


def _entries() -> list[dict[str, Any]]:
    entries = []
    for i, (mode, status) in enumerate((("fp32", "ok"), ("int8", "invalid"))):
        entry: dict[str, Any] = {
            "key": f"k{i}",
            "cell": {
                "model": "planted_fault.py:shallow",
                "backend": "ai-edge-torch",
                "environment": "litert-torch-0.10",
                "mode": mode,
            },
            "attempt": {
                "status": status,
                "error": {"kind": "validation_failed", "message": "output 0: cosine 0.1578 < 0.95"}
                if status == "invalid"
                else None,
                "environment": "litert-torch-0.10",
                "lock_hash": "abc",
                "versions": {"torch": "2.13.0"},
                "metrics": {
                    "cosine": 1.0 if status == "ok" else 0.16,
                    "sqnr_db": 130.0 if status == "ok" else 0.1,
                },
                "facts": {"latency_ms": 0.5},
                "timings": {"total_s": 30.0},
            },
            "log_excerpt": None,
        }
        if status == "invalid":
            entry["explain"] = _explain()
        entries.append(entry)
    return entries


def test_clicking_an_invalid_cell_shows_the_layer_chart_with_the_first_divergent_layer(
    tmp_path: Path,
) -> None:
    assert CHROMIUM is not None
    page = write_reports(build(_entries()), tmp_path / "report")[2]
    with opened(CHROMIUM, FLAGS, page, tmp_path / "profile") as browser:
        assert (
            browser.evaluate("document.querySelector('svg.layer-chart')") is None
        )  # nothing before the click
        browser.click(*browser.center('td.cell[data-status="invalid"]'))
        chart = browser.wait_for(
            "var svg = document.querySelector('#details svg.layer-chart'); if (!svg) return null;"
            " return {first: svg.getAttribute('data-first-divergent'),"
            "         points: svg.querySelectorAll('circle').length,"
            "         marked: svg.querySelector('circle.first-divergent').getAttribute('data-module'),"
            "         label: svg.textContent, floor: !!svg.querySelector('line.floor'),"
            "         text: document.getElementById('details').textContent};"
        )
    assert chart["first"] == chart["marked"] == "blocks.1.project"
    assert chart["points"] == len(LAYERS) and chart["floor"]
    assert "first divergent: blocks.1.project" in chart["label"]
    assert "one channel (0) holds" in chart["text"]
    keep = Path(__file__).parent.parent.parent / "build" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(page, keep / "matrix-explain.html")  # for a person to look at after CI
