"""matrix.html in headless Chromium: it renders the grid, runs its script without errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from liteport.reports import build, write_reports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (nox -s browser installs it)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _entry(i: int, model: str, env: str, mode: str, status: str, kind: str | None = None) -> dict[str, Any]:
    error = {"kind": kind, "message": f"{kind} on {model} <b>not markup</b>", "log": None} if kind else None
    return {
        "key": f"k{i}",
        "cell": {"model": model, "backend": "ai-edge-torch", "environment": env, "mode": mode},
        "attempt": {
            "status": status,
            "error": error,
            "environment": env,
            "lock_hash": "abc123",
            "versions": {"torch": "2.13.0"},
            "metrics": {"cosine": 0.99 + i / 1000, "sqnr_db": 20.0 + i} if status == "ok" else {},
            "facts": {"latency_ms": 1.0 + i, "size_bytes": 1000 * i} if status == "ok" else {},
            "timings": {"total_s": 2.0},
        },
        "log_excerpt": "Traceback (most recent call last):\n  ...\nRuntimeError: boom" if kind else None,
    }


def _document() -> dict[str, Any]:
    rows = [
        ("zoo:tiny_cnn", "ok", None),
        ("zoo:mobilenet_v2", "invalid", "validation_failed"),
        ("zoo:lstm", "failed", "unsupported_op"),
        ("zoo:resnet", "timeout", "timeout"),
        ("zoo:attention_encoder", "crashed", "crashed"),
        ("zoo:hardswish_se", "unsupported", "unsupported"),
    ]
    entries = []
    for i, (model, status, kind) in enumerate(rows):
        for j, env in enumerate(("litert-torch-0.10", "ai-edge-torch-nightly")):
            for k, mode in enumerate(("fp32", "int8")):
                ok = (j + k) % 2 == 0 or status == "ok"
                entries.append(
                    _entry(i * 4 + j * 2 + k, model, env, mode, "ok" if ok else status, None if ok else kind)
                )
    return build(entries)


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )


def test_page_renders_grid_without_script_errors(tmp_path: Path) -> None:
    doc = _document()
    paths = write_reports(doc, tmp_path / "report")
    page = paths[2].as_uri()
    dom = _chromium("--dump-dom", page, profile=tmp_path / "p1").stdout
    assert 'data-ready="1"' in dom, "the page script did not finish"
    assert 'data-js-error="' not in dom, "a script error was recorded"
    assert dom.count('class="cell') == len(doc["cells"]) == 24
    assert "24 of 24 cells shown" in dom
    assert "&lt;b&gt;not markup&lt;/b&gt;" in dom  # causes are escaped, never injected

    shot = tmp_path / "matrix.png"
    result = _chromium("--window-size=1400,1000", f"--screenshot={shot}", page, profile=tmp_path / "p2")
    assert shot.exists() and shot.stat().st_size > 20_000, result.stderr[-2000:]
    keep = Path(__file__).parent.parent.parent / "build" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, keep / "matrix.png")  # for a person to look at after CI
