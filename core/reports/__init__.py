"""Matrix reports: ``matrix.json``, ``matrix.md`` and ``matrix.html``, all rendered from one document.

The document and its schema are in ``liteport.reports.document``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from liteport.matrix.journal import merge
from liteport.reports.document import build
from liteport.reports.html import render_html
from liteport.reports.markdown import render_markdown

__all__ = ["build", "entries_from", "write_reports"]


def write_reports(document: Mapping[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "matrix.json", out_dir / "matrix.md", out_dir / "matrix.html"]
    paths[0].write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    paths[1].write_text(render_markdown(document), encoding="utf-8")
    paths[2].write_text(render_html(document), encoding="utf-8")
    return paths


def entries_from(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return merge(paths)
