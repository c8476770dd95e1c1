"""``matrix.md``: one table per mode (models x backend/environment), causes, environments."""

from __future__ import annotations

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
            lines.append(f"| {model} | " + " | ".join(row) + " |")
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
                f"| {c['model']} | {c['backend']} / {c['environment']} | {c['mode']} | {c['status']} | "
                f"{_esc(c['cause'])} |"
            )
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


def _with_rewrites(per_mode: Mapping[str, Any], env: str) -> str:
    """``12 (+2)``: valid as converted, and how many more a rewrite made valid."""
    plain = per_mode["environments"].get(env)
    if plain is None:
        return ""
    extra = per_mode.get("with_rewrites", {}).get(env, plain) - plain
    return f"{plain} (+{extra})" if extra else str(plain)
