"""``liteport explain --html FILE``: one self-contained page with the per-layer chart and table."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from liteport.explain import document
from liteport.reports.layer_chart import LAYER_CHART_JS

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:18px;margin:0 0 8px}
table{border-collapse:collapse;font-size:12px;margin-top:12px}
td,th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left;white-space:nowrap}
td.num{text-align:right} tr.first td{color:#b03a2e;font-weight:bold}
pre{background:#f6f6f6;padding:8px;font-size:12px;white-space:pre-wrap}
"""


def render_explain_html(doc: Mapping[str, Any]) -> str:
    first = (doc.get("first_divergent") or {}).get("module")
    rows = []
    for row in document.table_rows(doc, every=True):
        cells = "".join(
            f'<td class="{"num" if i in (2, 3, 4) else ""}">{html.escape(value)}</td>'
            for i, value in enumerate(row)
        )
        rows.append(f'<tr class="{"first" if row[0] == first else ""}">{cells}</tr>')
    header = "".join(f"<th>{html.escape(c)}</th>" for c in document.COLUMNS)
    cell = f"{doc.get('backend')} / {doc.get('environment')} · {doc.get('mode')}"
    title = f"{doc.get('model')} · {cell} · {doc.get('status')}"
    summary = html.escape("\n".join(document.summary_lines(doc)))
    data = json.dumps(document.compact(doc), default=str).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>liteport explain: {html.escape(title)}</title>
<style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div id="chart"></div>
<pre>{summary}</pre>
<table><tr>{header}</tr>{"".join(rows)}</table>
<script type="application/json" id="explain-data">{data}</script>
<script>{LAYER_CHART_JS}
document.getElementById('chart').appendChild(
  liteportLayerChart(JSON.parse(document.getElementById('explain-data').textContent)));
document.body.setAttribute('data-ready', '1');
</script>
</body></html>
"""
