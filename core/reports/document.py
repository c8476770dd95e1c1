"""Matrix reports rendered from journals: ``matrix.json``, ``matrix.md``, ``matrix.html``.

``matrix.json`` schema (``"schema": "liteport-matrix/1"``)::

    generated     ISO time the report was rendered
    summary       {"cells": int, "by_status": {status: int}}
    models        [ModelRef, ...] (row order)
    model_names   {ModelRef: short name}: ``zoo:resnet`` -> ``resnet``, ``/long/path/net.py:build`` ->
                  ``net.py:build`` (more of the path when two would look alike); reports show the
                  short name with the full reference on hover
    recommended   {"pick": "fastest", "routes": {ModelRef: {mode: {"backend", "environment", "key",
                  "latency_ms", "size_bytes", "sqnr_db"} or null}}}: per model and mode the route
                  ``liteport convert --pick fastest`` would keep, the fastest valid (ok) cell
    environment_summary {name: {"backend", "cells", "valid", "invalid", "failed", "unsupported"}}:
                  per environment, how its cells ended ("failed" counts failed, timeout, crashed
                  and env_error)
    columns       [{"backend", "environment", "mode"}, ...] (column order)
    cells         [{"key", "model", "backend", "environment", "mode", "status", "cause",
                    "error_kind", "metrics": {cosine, sqnr_db, max_abs, top1},
                    "facts": {size_bytes, latency_ms, transpose_ops, quantize_ops,
                              dequantize_ops, custom_ops, flex_ops},
                    "timings": {convert_s, total_s}, "lock_hash", "log_excerpt", "finished",
                    "explain": null or liteport.explain.document.compact(...) (matrix --explain),
                    "node": {"hostname", "ray_node_id" (--executor ray), "ip"} or null (older
                            journals), "lost_on": [node, ...] nodes lost while running it,
                    "model_name": the short name,
                    "slower_than_fp32": null, or for an ok int8 cell slower than the ok fp32 cell of
                            the same route: {"fp32_latency_ms", "ratio", "ops_outside_delegate":
                            the ops the runtime ran outside its delegate, when the facts name them}}]
    environments  {name: {"lock_hash", "versions": {package: version}}}
    nodes         {label: {"hostname", "ray_node_id", "cells": int, "by_status": {status: int}}}:
                  where the cells ran (label: hostname, or hostname/first 8 of the Ray node id)
    coverage      {mode: {"models": int, "chain": int, "environments": {name: int},
                  "with_rewrites": {name: int}}}: valid (ok) models per environment as its converter
                  does them ("environments"), also counting those valid only after a graph rewrite
                  ("with_rewrites"), and for the chain: valid in at least one environment, rewrites
                  included (what `liteport convert` with the default chain finds)

Cells also carry ``"rewrites"`` (graph rewrites applied before the attempt that decided the cell)
and ``facts.onnx_opset`` / ``facts.onnx_exporter`` for ONNX backends.

Every renderer works from this one document, so the three files always agree.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from liteport.types import MODES

SCHEMA = "liteport-matrix/1"
STATUS_ORDER = ("ok", "invalid", "failed", "unsupported", "timeout", "crashed", "env_error")
METRIC_KEYS = ("cosine", "sqnr_db", "max_abs", "top1")
FACT_KEYS = (
    "size_bytes",
    "latency_ms",
    "transpose_ops",
    "quantize_ops",
    "dequantize_ops",
    "custom_ops",
    "flex_ops",
    "onnx_opset",
    "onnx_exporter",
    "ops_outside_delegate",
)
FAILED_STATUSES = ("failed", "timeout", "crashed", "env_error")
PICK = "fastest"  # the --pick whose choice the report recommends
TIMING_KEYS = ("convert_s", "total_s")


def build(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report document for journal ``entries`` (already merged, one per cell key)."""
    cells = [_cell(entry) for entry in entries]
    models = list(dict.fromkeys(c["model"] for c in cells))
    names = short_names(models)
    for cell in cells:
        cell["model_name"] = names[cell["model"]]
    flag_slower_int8(cells)
    columns = sorted({(c["backend"], c["environment"], c["mode"]) for c in cells}, key=_column_order)
    environments: dict[str, dict[str, Any]] = {}
    for entry in entries:
        attempt = entry["attempt"]
        if attempt.get("lock_hash") and attempt.get("versions"):
            environments[attempt["environment"]] = {
                "lock_hash": attempt["lock_hash"],
                "versions": dict(sorted(attempt["versions"].items())),
            }
    counts = Counter(c["status"] for c in cells)
    return {
        "schema": SCHEMA,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": {"cells": len(cells), "by_status": {s: counts[s] for s in STATUS_ORDER if counts[s]}},
        "models": models,
        "model_names": names,
        "recommended": {"pick": PICK, "routes": recommended(cells)},
        "environment_summary": environment_summary(cells),
        "columns": [{"backend": b, "environment": e, "mode": m} for b, e, m in columns],
        "cells": cells,
        "environments": dict(sorted(environments.items())),
        "coverage": coverage(cells),
        "nodes": nodes(cells),
    }


def short_names(refs: Sequence[str]) -> dict[str, str]:
    """A short, distinct name per ModelRef: the zoo name, or the file's name and factory with as
    many parent folders as it takes to tell two apart."""
    out: dict[str, str] = {}
    for depth in range(1, 64):
        out = {ref: _short(ref, depth) for ref in refs}
        if len(set(out.values())) == len(out):
            return out
    return {ref: ref for ref in refs}


def _short(ref: str, depth: int) -> str:
    if ref.startswith("zoo:"):
        return ref[len("zoo:") :]
    parts = ref.replace("\\", "/").rstrip("/").split("/")
    return "/".join(parts[-depth:]) if len(parts) > depth else ref


def recommended(cells: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any] | None]]:
    """Per model and mode, the fastest valid route (what ``--pick fastest`` keeps), or None."""
    out: dict[str, dict[str, dict[str, Any] | None]] = {}
    for cell in cells:
        out.setdefault(cell["model"], {}).setdefault(cell["mode"], None)
        if cell["status"] != "ok":
            continue
        best = out[cell["model"]][cell["mode"]]
        if best is None or _latency(cell) < _latency(best):
            out[cell["model"]][cell["mode"]] = {
                "backend": cell["backend"],
                "environment": cell["environment"],
                "key": cell["key"],
                "latency_ms": cell["facts"].get("latency_ms"),
                "size_bytes": cell["facts"].get("size_bytes"),
                "sqnr_db": cell["metrics"].get("sqnr_db"),
            }
    return out


def _latency(cell: Mapping[str, Any]) -> float:
    value = (cell.get("facts") or cell).get("latency_ms")
    return float(value) if isinstance(value, (int, float)) else float("inf")


def environment_summary(cells: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per environment: how many of its cells were valid, invalid, failed (or unsupported)."""
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        row = out.setdefault(
            cell["environment"],
            {"backend": cell["backend"], "cells": 0, "valid": 0, "invalid": 0, "failed": 0, "unsupported": 0},
        )
        row["cells"] += 1
        status = cell["status"]
        column = "valid" if status == "ok" else "failed" if status in FAILED_STATUSES else status
        row[column] += 1
    return dict(sorted(out.items()))


def flag_slower_int8(cells: Sequence[dict[str, Any]]) -> None:
    """Mark each ok int8 cell that runs slower than the ok fp32 cell of its route (``slower_than_fp32``)."""
    fp32 = {
        (c["model"], c["backend"], c["environment"]): c
        for c in cells
        if c["mode"] == "fp32" and c["status"] == "ok"
    }
    for cell in cells:
        cell["slower_than_fp32"] = None
        base = fp32.get((cell["model"], cell["backend"], cell["environment"]))
        if cell["mode"] != "int8" or cell["status"] != "ok" or base is None:
            continue
        latency, reference = _latency(cell), _latency(base)
        if latency < float("inf") and 0 < reference < latency:
            cell["slower_than_fp32"] = {
                "fp32_latency_ms": reference,
                "ratio": round(latency / reference, 2),
                "ops_outside_delegate": cell["facts"].get("ops_outside_delegate"),
            }


def node_label(node: Mapping[str, Any] | None) -> str:
    """``hostname``, or ``hostname/<first 8 of the Ray node id>`` for a cell run on Ray; "" when unknown."""
    if not node:
        return ""
    ray_id = str(node.get("ray_node_id") or "")
    return f"{node.get('hostname', '?')}/{ray_id[:8]}" if ray_id else str(node.get("hostname", "?"))


def nodes(cells: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Provenance: each node the cells ran on, with how many cells and their statuses."""
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        label = node_label(cell.get("node"))
        if not label:
            continue
        node = cell["node"]
        row = out.setdefault(
            label,
            {
                "hostname": node.get("hostname"),
                "ray_node_id": node.get("ray_node_id"),
                "cells": 0,
                "by_status": {},
            },
        )
        row["cells"] += 1
        row["by_status"][cell["status"]] = row["by_status"].get(cell["status"], 0) + 1
    return dict(sorted(out.items()))


def coverage(cells: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per mode: valid models per environment (as its converter does them, and with rewrites) and
    for the chain (valid somewhere, rewrites included), of how many."""
    out: dict[str, dict[str, Any]] = {}
    for mode in dict.fromkeys(c["mode"] for c in cells):
        here = [c for c in cells if c["mode"] == mode]
        offered = [c for c in here if c["status"] != "unsupported"]  # an env that lacks the mode is no column
        valid = [c for c in offered if c["status"] == "ok"]
        environments = sorted({c["environment"] for c in offered})
        plain = [c for c in valid if not c.get("rewrites")]  # a rewrite is tried only after a failure
        out[mode] = {
            "models": len({c["model"] for c in here}),
            "chain": len({c["model"] for c in valid}),
            "environments": {
                e: len({c["model"] for c in plain if c["environment"] == e}) for e in environments
            },
            "with_rewrites": {
                e: len({c["model"] for c in valid if c["environment"] == e}) for e in environments
            },
        }
    return out


def _column_order(column: tuple[str, str, str]) -> tuple[str, str, int]:
    backend, env, mode = column
    return backend, env, MODES.index(mode) if mode in MODES else len(MODES)


def _cell(entry: Mapping[str, Any]) -> dict[str, Any]:
    cell, attempt = entry["cell"], entry["attempt"]
    error = attempt.get("error") or {}
    return {
        "key": entry["key"],
        "model": cell["model"],
        "backend": cell["backend"],
        "environment": cell["environment"],
        "mode": cell["mode"],
        "status": attempt["status"],
        "error_kind": error.get("kind"),
        "cause": f"{error['kind']}: {error['message']}" if error else "",
        "metrics": {k: attempt.get("metrics", {}).get(k) for k in METRIC_KEYS},
        "facts": {k: attempt.get("facts", {}).get(k) for k in FACT_KEYS},
        "timings": {k: attempt.get("timings", {}).get(k) for k in TIMING_KEYS},
        "lock_hash": attempt.get("lock_hash"),
        "log_excerpt": entry.get("log_excerpt"),
        "finished": entry.get("finished"),
        "explain": entry.get("explain"),  # per-layer data of an invalid cell (matrix --explain)
        "node": entry.get("node"),  # provenance: the machine (and Ray node) it ran on
        "lost_on": list(entry.get("lost_on") or []),
        "rewrites": list(attempt.get("rewrites") or []),
    }


def cell_index(document: Mapping[str, Any]) -> dict[tuple[str, str, str, str], Mapping[str, Any]]:
    return {(c["model"], c["backend"], c["environment"], c["mode"]): c for c in document["cells"]}


def short_summary(cell: Mapping[str, Any]) -> str:
    """A few words for a grid cell: latency and SQNR when ok, the error kind otherwise."""
    if cell["status"] == "ok":
        slower = cell.get("slower_than_fp32")
        parts = [f"🐢 {slower['ratio']:.1f}x fp32"] if slower else []
        latency = cell["facts"].get("latency_ms")
        sqnr = cell["metrics"].get("sqnr_db")
        if isinstance(latency, (int, float)):
            parts.append(f"{latency:.2f} ms")
        if isinstance(sqnr, (int, float)):
            parts.append(f"{sqnr:.0f} dB" if sqnr < 99 else "99+ dB")  # fp32 SQNR is capped at 200
        if cell.get("rewrites"):
            parts.append("↻ " + "+".join(cell["rewrites"]))
        return " · ".join(parts)
    return str(cell.get("error_kind") or cell["status"])
