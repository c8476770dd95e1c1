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
    return "\n".join(lines) + "\n"
