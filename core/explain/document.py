"""The ``liteport-explain/1`` document: what ``liteport explain --json`` prints and matrix cells carry.

Top level::

    schema            "liteport-explain/1"
    model, backend, environment, mode, status, cause    the attempt explained
    output            {cosine, sqnr_db, max_abs, top1}: the model output against PyTorch
    reference         "float" (the PyTorch model) or "int8" (PyTorch's int8 model, qat)
    samples           validation samples compared per layer
    thresholds        {sqnr_db, added_db}: a layer diverges below sqnr_db after adding >= added_db
    coverage          {matched, fused, passthrough, unmatched, dropped, fraction, how: {evidence: n}}
    anchor            null, or the fp32 conversion whose matches were borrowed {environment, tflite, coverage}
    layers            [{module, type, status, aliases, shape, fused_into?, tensor, how, layout, cosine,
                        sqnr_db, max_abs, sqnr_in_db, added_db, ops, flag}] in execution order
    first_divergent   null, or {module, type, tensor, cosine, sqnr_db, max_abs, sqnr_in_db, added_db,
                        ops: [{index, op, outputs: [quantization], constants: [quantization]}], hint}
    notes             [text]: dropped layers and other caveats
    error             present when there was nothing to compare (no .tflite, a stage failed)

``module`` is the dotted PyTorch module path (``blocks.3.2``; a repeated call ``path#2``; the
model itself ``(model)``); ``fraction`` is matched / (matched + unmatched): fused modules (folded
into the next op), pass-throughs and dropped ones are counted but not in the fraction.
Host side: plain Python, no numpy.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

SCHEMA = "liteport-explain/1"
COLUMNS = ("module", "ops", "cosine", "SQNR dB", "added dB", "flag")


def empty(error: str) -> dict[str, Any]:
    """The document's per-layer part when nothing could be compared."""
    return {"layers": [], "first_divergent": None, "coverage": None, "error": error}


def anchor_entry(anchor: Any, coverage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the document says about the float conversion that lent its matches (an Attempt or None)."""
    if anchor is None:
        return None
    return {
        "environment": anchor.environment,
        "status": anchor.status,
        "tflite": anchor.tflite,
        "coverage": dict(coverage) if coverage else None,
    }


def command(model: str, mode: str, backend: str | None = None, environment: str | None = None) -> str:
    """The ``liteport explain`` command line for one cell."""
    argv = ["liteport", "explain", model, "--quant", mode]
    if backend:
        argv += ["--backend", backend]
    if environment:
        argv += ["--env", environment]
    return shlex.join(argv)


def table_rows(doc: Mapping[str, Any], *, every: bool = False) -> list[list[str]]:
    """Rows of the per-layer table in execution order: matched layers, or every module with ``every``."""
    first = (doc.get("first_divergent") or {}).get("module")
    rows = []
    for layer in doc.get("layers") or []:
        status = layer.get("status")
        if status != "matched" and not every:
            continue
        if status != "matched":
            where = f"→ {layer['fused_into']}" if layer.get("fused_into") else ""
            rows.append([layer["module"], status + (f" {where}" if where else ""), "", "", "", ""])
            continue
        flag = "◀ first divergent" if layer["module"] == first else ("below" if layer.get("flag") else "")
        rows.append(
            [
                layer["module"],
                "+".join(_collapse(layer.get("ops") or [])),
                _number(layer.get("cosine"), 4),
                _number(layer.get("sqnr_db"), 1),
                _number(layer.get("added_db"), 1),
                flag,
            ]
        )
    return rows


def summary_lines(doc: Mapping[str, Any]) -> list[str]:
    """What a person reads under the table: coverage, the verdict, the first divergent layer."""
    lines = []
    if doc.get("error"):
        return [f"nothing to compare: {doc['error']}"]
    coverage = doc.get("coverage") or {}
    how = ", ".join(f"{k} {v}" for k, v in (coverage.get("how") or {}).items())
    matched, producing = coverage.get("matched", 0), coverage.get("matched", 0) + coverage.get("unmatched", 0)
    lines.append(
        f"matched {matched} of {producing} "
        f"modules that produce a tensor ({100 * float(coverage.get('fraction') or 0):.0f}%; {how}); "
        f"{coverage.get('fused', 0)} fused into the next op, {coverage.get('passthrough', 0)} pass-through"
        + (f", {coverage['dropped']} dropped" if coverage.get("dropped") else "")
    )
    anchor = doc.get("anchor")
    if anchor:
        lines.append(
            f"names were not enough: matches borrowed from the fp32 conversion ({anchor.get('environment')})"
        )
    thresholds = doc.get("thresholds") or {}
    first = doc.get("first_divergent")
    if first is None:
        floor, added = thresholds.get("sqnr_db", 0), thresholds.get("added_db", 0)
        lines.append(f"no layer diverges (SQNR < {floor:g} dB after adding >= {added:g} dB)")
    else:
        lines.append(
            f"first divergent: {first['module']} ({first.get('type')}): "
            f"SQNR {_number(first.get('sqnr_db'), 1)} dB, "
            f"added {_number(first.get('added_db'), 1)} dB, cosine {_number(first.get('cosine'), 4)}"
        )
        for op in first.get("ops") or []:
            lines.append("  " + describe_op(op))
        if first.get("hint"):
            lines.append(f"hint: {first['hint']}")
    lines.extend(f"note: {note}" for note in doc.get("notes") or [])
    return lines


def describe_op(op: Mapping[str, Any]) -> str:
    """``#12 CONV_2D -> int8 scale 0.0146 zp -3; weights per-channel x16 [0.001 .. 0.02]``."""
    parts = [f"#{op['index']} {op['op']}"]
    for out in op.get("outputs") or []:
        parts.append("-> " + _quantization(out))
    constants = [
        _quantization(c) for c in op.get("constants") or [] if c.get("scale") or c.get("per_channel")
    ]
    text = " ".join(parts)
    return text + ("; constants " + ", ".join(constants) if constants else "")


def compact(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a matrix cell keeps: the curve (matched layers only), the first divergent layer, coverage."""
    first = doc.get("first_divergent")
    return {
        "schema": SCHEMA,
        "first_divergent": first.get("module") if first else None,
        "hint": first.get("hint") if first else None,
        "fraction": (doc.get("coverage") or {}).get("fraction"),
        "thresholds": doc.get("thresholds"),
        "error": doc.get("error"),
        "layers": [
            {
                "module": layer["module"],
                "ops": "+".join(_collapse(layer.get("ops") or [])),
                "sqnr_db": layer.get("sqnr_db"),
                "added_db": layer.get("added_db"),
                "cosine": layer.get("cosine"),
                "flag": bool(layer.get("flag")),
            }
            for layer in doc.get("layers") or []
            if layer.get("status") == "matched"
        ],
    }


def _quantization(entry: Mapping[str, Any]) -> str:
    dtype = entry.get("dtype") or "?"
    if entry.get("scale"):
        return f"{dtype} scale {entry['scale']:.4g} zp {entry.get('zero_point', 0)}"
    channel = entry.get("per_channel")
    if channel:
        return (
            f"{dtype} per-channel x{channel['channels']} (axis {channel['axis']}) "
            f"scale {channel['scale_min']:.3g}..{channel['scale_max']:.3g}"
        )
    return str(dtype)


def _collapse(ops: Sequence[str]) -> list[str]:
    """``[PAD, CONV_2D, CONV_2D]`` -> ``[PAD, CONV_2D x2]``."""
    found: list[list[Any]] = []
    for op in ops:
        if found and found[-1][0] == op:
            found[-1][1] += 1
        else:
            found.append([op, 1])
    return [f"{op} x{n}" if n > 1 else str(op) for op, n in found]


def _number(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value)
