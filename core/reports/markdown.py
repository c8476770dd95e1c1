"""``matrix.md``: one table per mode (models x backend/environment), causes, environments."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from liteport.reports.document import cell_index, short_summary

ICON = {
    "ok": "✅",
    "invalid": "⚠️",
    "failed": "❌",
    "unsupported": "🚫",
    "timeout": "⏱️",
    "crashed": "💥",
    "env_error": "🧱",
}


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Mapping[str, Any]) -> str:
    index = cell_index(doc)
    summary = doc["summary"]
    counts = " · ".join(f"{ICON.get(s, '')} {s} {n}" for s, n in summary["by_status"].items())
    lines = [
        "# liteport compatibility matrix",
        "",
        f"{summary['cells']} cells, generated {doc['generated']}: {counts}",
        "",
        "Cells: status, median latency (1 thread) and SQNR against PyTorch; the cause when not ok.",
    ]
    coverage = doc.get("coverage") or {}
    if coverage:  # valid models per environment and for the chain (valid in some environment)
        envs = sorted({e for per_mode in coverage.values() for e in per_mode["environments"]})
        lines += [
            "",
            "## Coverage",
            "",
            "Valid models per environment as its converter does them (+ those valid after a graph"
            " rewrite), and for the chain: valid in any environment, rewrites included.",
            "",
        ]
        lines.append("| mode | models | " + " | ".join(envs) + " | chain |")
        lines.append("|---" * (len(envs) + 3) + "|")
        for mode, per_mode in coverage.items():
            valid = [_with_rewrites(per_mode, e) for e in envs]
            figures = [mode, str(per_mode["models"]), *valid, f"**{per_mode['chain']}**"]
            lines.append("| " + " | ".join(figures) + " |")
    modes = list(dict.fromkeys(c["mode"] for c in doc["columns"]))
    names = doc.get("model_names") or {m: m for m in doc["models"]}
    lines += recommended_section(doc, modes, names)
    lines += environment_summary_section(doc)
    lines += slower_int8_section(doc, names)
    for mode in modes:
        columns = [c for c in doc["columns"] if c["mode"] == mode]
        lines += ["", f"## {mode}", ""]
        lines.append(
            "| model | " + " | ".join(f"{c['backend']} / {c['environment']}" for c in columns) + " |"
        )
        lines.append("|---" * (len(columns) + 1) + "|")
        for model in doc["models"]:
            row = []
            for c in columns:
                cell = index.get((model, c["backend"], c["environment"], mode))
                row.append(
                    "" if cell is None else f"{ICON.get(cell['status'], '')} {_esc(short_summary(cell))}"
                )
            lines.append(f"| {model_label(model, names)} | " + " | ".join(row) + " |")
    problems = [c for c in doc["cells"] if c["status"] != "ok"]
    if problems:
        lines += [
            "",
            "## Causes",
            "",
            "| model | backend / environment | mode | status | cause |",
            "|---|---|---|---|---|",
        ]
        for c in problems:
            lines.append(
                f"| {model_label(c['model'], names)} | {c['backend']} / {c['environment']} | {c['mode']} | "
                f"{c['status']} | "
                f"{_esc(c['cause'])} |"
            )
    if any(names[m] != m for m in doc["models"]):
        lines += ["", "## Models", "", "| name | reference |", "|---|---|"]
        lines += [f"| {_esc(names[m])} | `{_esc(m)}` |" for m in doc["models"]]
    if doc["environments"]:
        lines += ["", "## Environments", "", "| environment | lock | versions |", "|---|---|---|"]
        for name, env in doc["environments"].items():
            versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
            lines.append(f"| {name} | `{env['lock_hash']}` | {_esc(versions)} |")
    if doc.get("nodes"):  # provenance: where the cells ran (one row per machine or Ray node)
        lines += ["", "## Nodes", "", "| node | Ray node id | cells | statuses |", "|---|---|---|---|"]
        for label, node in doc["nodes"].items():
            statuses = ", ".join(f"{s} {n}" for s, n in node["by_status"].items())
            lines.append(
                f"| {_esc(label)} | `{node.get('ray_node_id') or '-'}` | {node['cells']} | {statuses} |"
            )
    lost = [c for c in doc["cells"] if c.get("lost_on")]
    if lost:
        lines += ["", "Cells whose node was lost while they ran (then retried, or given up as crashed):", ""]
        for c in lost:
            lines.append(
                f"- {c['model']} · {c['backend']} / {c['environment']} · {c['mode']}: lost on "
                f"{', '.join(c['lost_on'])}; {c['status']}"
            )
    return "\n".join(lines) + "\n"


def model_label(ref: str, names: Mapping[str, str]) -> str:
    """The short name, with the full reference as its hover text when they differ."""
    short = names.get(ref, ref)
    if short == ref:
        return _esc(ref)
    return f'<abbr title="{html.escape(ref, quote=True)}">{_esc(html.escape(short))}</abbr>'


def recommended_section(doc: Mapping[str, Any], modes: list[str], names: Mapping[str, str]) -> list[str]:
    """Per model and mode, the route to ship: the one ``liteport convert --pick fastest`` keeps."""
    routes = (doc.get("recommended") or {}).get("routes") or {}
    if not routes:
        return []
    pick = doc["recommended"].get("pick", "fastest")
    lines = [
        "",
        "## Recommended route",
        "",
        f"Per model and mode, the {pick} valid route (what `liteport convert --pick {pick}` keeps).",
        "",
        "| model | " + " | ".join(modes) + " |",
        "|---" * (len(modes) + 1) + "|",
    ]
    for model in doc["models"]:
        row = []
        for mode in modes:
            route = routes.get(model, {}).get(mode)
            if route is None:
                row.append("— none valid" if mode in routes.get(model, {}) else "")
                continue
            latency = route.get("latency_ms")
            timing = f" ({latency:.2f} ms)" if isinstance(latency, (int, float)) else ""
            row.append(f"**{route['backend']} / {route['environment']}**{timing}")
        lines.append(f"| {model_label(model, names)} | " + " | ".join(row) + " |")
    return lines


def environment_summary_section(doc: Mapping[str, Any]) -> list[str]:
    summary = doc.get("environment_summary") or {}
    if not summary:
        return []
    lines = [
        "",
        "## Per environment",
        "",
        "| environment | backend | cells | valid | invalid | failed | unsupported |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        figures = [row[k] for k in ("cells", "valid", "invalid", "failed", "unsupported")]
        lines.append(f"| {name} | {row['backend']} | " + " | ".join(str(n) for n in figures) + " |")
    return lines


def slower_int8_section(doc: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """int8 cells that run slower than fp32 on the same route, and the ops that ran outside the delegate."""
    slower = [c for c in doc["cells"] if c.get("slower_than_fp32")]
    if not slower:
        return []
    lines = ["", "## int8 slower than fp32", "", "Quantized, yet slower than float on the same route:", ""]
    for c in slower:
        flag = c["slower_than_fp32"]
        ops = flag.get("ops_outside_delegate")
        if ops:
            outside = "; ran outside the delegate: " + _ops(ops)
        elif ops is not None:  # measured: nothing fell back, the delegate's own int8 kernels are slower
            outside = "; every op ran in the delegate"
        else:  # an older journal, or a validator that does not measure it
            outside = "; the facts do not say which ops ran outside the delegate"
        lines.append(
            f"- 🐢 {model_label(c['model'], names)} · {c['backend']} / {c['environment']}: int8 "
            f"{c['facts']['latency_ms']:.2f} ms against fp32 {flag['fp32_latency_ms']:.2f} ms "
            f"({flag['ratio']:.1f}x){outside}"
        )
    return lines


def _ops(ops: Any) -> str:
    if isinstance(ops, Mapping):
        return _esc(", ".join(f"{name} x{count}" for name, count in ops.items()))
    return _esc(", ".join(str(op) for op in ops))


def _with_rewrites(per_mode: Mapping[str, Any], env: str) -> str:
    """``12 (+2)``: valid as converted, and how many more a rewrite made valid."""
    plain = per_mode["environments"].get(env)
    if plain is None:
        return ""
    extra = per_mode.get("with_rewrites", {}).get(env, plain) - plain
    return f"{plain} (+{extra})" if extra else str(plain)
