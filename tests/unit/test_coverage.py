"""The matrix report's coverage (valid models per environment and for the chain) and rewrite marks."""

from __future__ import annotations

from typing import Any

from liteport.cli.render import verdict_rows
from liteport.reports.document import build, short_summary
from liteport.reports.markdown import render_markdown
from liteport.types import Attempt


def _entry(model: str, env: str, mode: str, status: str, rewrites: tuple[str, ...] = ()) -> dict[str, Any]:
    attempt = Attempt(model=model, backend="b", environment=env, mode=mode, status=status, rewrites=rewrites)  # type: ignore[arg-type]
    cell = {"model": model, "backend": "b", "environment": env, "mode": mode, "options": {}}
    return {"key": f"{model}-{env}-{mode}", "cell": cell, "attempt": attempt.to_dict()}


def test_coverage_counts_valid_models_per_environment_and_for_the_chain() -> None:
    entries = [
        _entry("m1", "e1", "fp32", "ok"),
        _entry("m1", "e2", "fp32", "failed"),
        _entry("m2", "e1", "fp32", "invalid"),
        _entry("m2", "e2", "fp32", "ok", rewrites=("gelu-erf-free",)),
        _entry("m3", "e1", "fp32", "failed"),
        _entry("m3", "e2", "fp32", "failed"),
        _entry("m1", "e3", "fp32", "unsupported"),  # an environment without the mode is no column
    ]
    doc = build(entries)
    assert doc["coverage"] == {
        "fp32": {
            "models": 3,
            "chain": 2,
            "environments": {"e1": 1, "e2": 0},  # as the converter does them
            "with_rewrites": {"e1": 1, "e2": 1},
        }
    }
    rewritten = next(c for c in doc["cells"] if c["model"] == "m2" and c["environment"] == "e2")
    assert rewritten["rewrites"] == ["gelu-erf-free"] and "↻ gelu-erf-free" in short_summary(rewritten)
    markdown = render_markdown(doc)
    assert "## Coverage" in markdown and "| fp32 | 3 | 1 | 0 (+1) | **2** |" in markdown


def test_the_verdict_names_the_rewrites_and_the_export() -> None:
    attempt = Attempt(
        model="m",
        backend="onnx-tf",
        environment="onnx-tf-tf2.15",
        mode="fp32",
        status="ok",
        rewrites=("gelu-erf-free",),
        facts={"rewritten_from": "unsupported_op: Erf", "onnx_opset": 12, "onnx_exporter": "torchscript"},
    )
    rows = dict(verdict_rows(attempt))
    assert rows["rewrites"] == "gelu-erf-free" and rows["rewritten after"] == "unsupported_op: Erf"
    assert rows["ONNX"] == "opset 12, torchscript exporter"
