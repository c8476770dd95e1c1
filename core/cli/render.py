"""Human-readable output: the verdict table of an attempt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from liteport.cli.common import stdout_console
from liteport.types import Attempt

STATUS_STYLE = {
    "ok": "bold green",
    "invalid": "bold yellow",
    "failed": "bold red",
    "unsupported": "dim",
    "timeout": "bold magenta",
    "crashed": "bold red",
    "env_error": "bold red",
}


def fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def human_size(size: Any) -> str:
    if not isinstance(size, (int, float)):
        return "-"
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def verdict_rows(attempt: Attempt) -> list[tuple[str, str]]:
    """(label, value) pairs shown for an attempt, in order."""
    m: Mapping[str, Any] = attempt.metrics
    f: Mapping[str, Any] = attempt.facts
    t: Mapping[str, Any] = attempt.timings
    ops: Mapping[str, Any] = f.get("op_counts") or {}
    rows = [
        ("status", attempt.status),
        ("backend", f"{attempt.backend} in {attempt.environment} ({attempt.runtime})"),
        ("mode", attempt.mode + (" channels-last" if attempt.options.get("channels_last") else "")),
    ]
    if attempt.rewrites:  # the model was rewritten before this attempt: say how, and why
        rows.append(("rewrites", ", ".join(attempt.rewrites)))
        if f.get("rewritten_from"):
            rows.append(("rewritten after", str(f["rewritten_from"])))
    if f.get("onnx_opset"):
        rows.append(("ONNX", f"opset {f['onnx_opset']}, {f.get('onnx_exporter', 'torchscript')} exporter"))
    if attempt.error:
        rows.append(("cause", f"{attempt.error.kind}: {attempt.error.message}"))
    if m:
        rows += [
            ("cosine", fmt(m.get("cosine"), ".6f")),
            ("SQNR", f"{fmt(m.get('sqnr_db'), '.1f')} dB"),
            (
                "max |err|",
                fmt(m.get("max_abs"), ".3g") + f"  (largest |ref| {fmt(m.get('ref_max_abs'), '.3g')})",
            ),
            ("top-1 agreement", fmt(m.get("top1"), ".3f")),
        ]
    if "size_bytes" in f:
        rows.append(("size", human_size(f["size_bytes"])))
    if "latency_ms" in f:
        rows.append(("latency", f"{fmt(f.get('latency_ms'), '.3g')} ms median, 1 thread"))
    if ops:
        rows.append(
            (
                "ops",
                ", ".join(f"{name} {ops.get(name, 0)}" for name in ("TRANSPOSE", "QUANTIZE", "DEQUANTIZE"))
                + f", custom/Flex {f.get('custom_ops', 0) + f.get('flex_ops', 0)}, total {sum(ops.values())}",
            )
        )
    # The model's own I/O tensors only when a validator loaded it; before that facts hold PyTorch's.
    judged = any(status in ("ok", "invalid") for status in attempt.validations.values())
    if judged and f.get("inputs") and f.get("outputs"):
        dtypes = [", ".join(str(t.get("dtype")) for t in f[side]) for side in ("inputs", "outputs")]
        rows.append(("I/O dtypes", f"{dtypes[0]} -> {dtypes[1]}"))
    if "convert_s" in t:
        rows.append(("conversion time", f"{t['convert_s']:.1f} s"))
    if attempt.lock_hash:
        rows.append(("lock", attempt.lock_hash))
    if attempt.workdir:
        rows.append(("work files", attempt.workdir))
    return rows


def print_attempt(attempt: Attempt, *, output: Path | None, verbose: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    console = stdout_console()
    table = Table(show_header=False, title=f"{attempt.model}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in verdict_rows(attempt):
        style = STATUS_STYLE.get(value, "") if label == "status" else ""
        table.add_row(label, Text(value, style=style))
    console.print(table)
    if output:
        console.print(f"wrote {output}")
    if attempt.error and attempt.error.log and Path(attempt.error.log).is_file():
        console.print(f"log: {attempt.error.log}", markup=False)
    if verbose and attempt.error and attempt.error.detail:
        console.print(attempt.error.detail, markup=False)


def print_attempts(attempts: Sequence[Attempt], chosen: Attempt | None, *, pick: str) -> None:
    """The attempts table of a fallback chain: every candidate, its status, cause and figures."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"attempts (pick: {pick})", title_justify="left")
    for column in (
        "",
        "backend",
        "environment",
        "status",
        "cosine",
        "SQNR dB",
        "latency ms",
        "size",
        "time s",
        "cause",
    ):
        table.add_column(column)
    for attempt in attempts:
        m, f, t = attempt.metrics, attempt.facts, attempt.timings
        table.add_row(
            "→" if attempt is chosen else "",
            attempt.backend,
            attempt.environment + (f" ↻ {'+'.join(attempt.rewrites)}" if attempt.rewrites else ""),
            Text(attempt.status, style=STATUS_STYLE.get(attempt.status, "")),
            fmt(m.get("cosine"), ".5f"),
            fmt(m.get("sqnr_db"), ".1f"),
            fmt(f.get("latency_ms"), ".3g"),
            human_size(f.get("size_bytes")),
            fmt(t.get("total_s"), ".1f"),
            Text(attempt.cause),
        )
    stdout_console().print(table)
