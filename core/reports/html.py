# ruff: noqa: E501  (the page carries its CSS and JS inline: long lines are page source)
"""``matrix.html``: one self-contained page (no network) with the grid, filters, details, chart."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from liteport.reports.document import STATUS_ORDER, cell_index, short_summary
from liteport.reports.layer_chart import LAYER_CHART_JS

COLORS = {
    "ok": "#2e9e4f",
    "invalid": "#e0a800",
    "failed": "#d9534f",
    "unsupported": "#9e9e9e",
    "timeout": "#8e44ad",
    "crashed": "#b03a2e",
    "env_error": "#5d6d7e",
}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.summary span{display:inline-block;margin-right:12px}
.filters{margin:12px 0;display:flex;gap:16px;flex-wrap:wrap;align-items:center}
table.grid{border-collapse:collapse;font-size:12px}
table.grid th,table.grid td{border:1px solid #ddd;padding:4px 6px;text-align:center;white-space:nowrap}
table.grid th.model{text-align:left}
td.cell{cursor:pointer;color:#fff;min-width:70px}
td.cell.hidden{opacity:.08}
td.empty{background:#f6f6f6}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}
#details{position:sticky;top:8px;border:1px solid #ccc;border-radius:6px;padding:10px;margin-top:16px;
  background:#fafafa;max-width:1100px}
#details pre{max-height:240px;overflow:auto;background:#222;color:#eee;padding:8px;font-size:11px}
#details table td{padding:1px 8px 1px 0;text-align:left}
table.envs td,table.envs th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;font-size:12px}
td.cell.recommended{outline:3px solid #1f4e9e;outline-offset:-3px;font-weight:600}
td.cell.slower{background-image:repeating-linear-gradient(45deg,transparent 0 6px,rgba(0,0,0,.18) 6px 9px)}
abbr{text-decoration:underline dotted;cursor:help}
"""

SCRIPT = """
(function () {
  var cells = JSON.parse(document.getElementById('cells-data').textContent);
  var byKey = {};
  cells.forEach(function (c) { byKey[c.key] = c; });
  function fmt(v) {
    if (v === null || v === undefined) return '-';
    if (typeof v === 'number') return Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.001) ? v.toExponential(3) : (Math.round(v * 10000) / 10000).toString();
    return String(v);
  }
  function outsideText(ops) {  // null: not measured; {}: nothing fell back; else op -> count
    if (ops === null || ops === undefined) return '; the facts do not say which ops ran outside the delegate';
    var names = Object.keys(ops);
    if (!names.length) return '; every op ran in the delegate';
    return '; ran outside the delegate: ' + names.map(function (k) { return k + ' x' + ops[k]; }).join(', ');
  }
  function show(key) {
    var c = byKey[key];
    var box = document.getElementById('details');
    box.innerHTML = '';
    var title = document.createElement('h2');
    title.textContent = (c.model_name || c.model) + ' \\u00b7 ' + c.backend + ' / ' + c.environment + ' \\u00b7 ' + c.mode + ' \\u2014 ' + c.status;
    box.appendChild(title);
    var ref = document.createElement('p'); ref.className = 'model-ref'; ref.textContent = 'model: ' + c.model; box.appendChild(ref);
    if (c.cause) { var p = document.createElement('p'); p.textContent = c.cause; box.appendChild(p); }
    if (c.slower_than_fp32) {  // quantized, yet slower than float on the same route
      var s = c.slower_than_fp32, warn = document.createElement('p'); warn.className = 'slower-note';
      warn.textContent = '\\ud83d\\udc22 int8 is ' + s.ratio + 'x slower than fp32 (' + fmt(s.fp32_latency_ms) + ' ms) on this route' +
        outsideText(s.ops_outside_delegate);
      box.appendChild(warn);
    }
    var table = document.createElement('table');
    [['metrics', c.metrics], ['facts', c.facts], ['timings', c.timings]].forEach(function (group) {
      Object.keys(group[1]).forEach(function (k) {
        var row = table.insertRow();
        row.insertCell().textContent = k;
        row.insertCell().textContent = fmt(group[1][k]);
      });
    });
    var lock = table.insertRow(); lock.insertCell().textContent = 'lock'; lock.insertCell().textContent = fmt(c.lock_hash);
    if (c.node) {  // provenance: the machine, and the Ray node, the cell ran on
      var node = table.insertRow(); node.insertCell().textContent = 'node';
      node.insertCell().textContent = c.node.hostname + (c.node.ray_node_id ? ' \u00b7 Ray node ' + c.node.ray_node_id : '');
    }
    if (c.lost_on && c.lost_on.length) {
      var lost = table.insertRow(); lost.insertCell().textContent = 'lost on'; lost.insertCell().textContent = c.lost_on.join(', ');
    }
    box.appendChild(table);
    if (c.explain) {  // liteport matrix --explain: where this cell drifts from PyTorch, layer by layer
      var head = document.createElement('h2'); head.textContent = 'Where it drifts (SQNR per layer)'; box.appendChild(head);
      var div = document.createElement('div'); div.id = 'layer-chart'; box.appendChild(div);
      div.appendChild(liteportLayerChart(c.explain));
      var verdict = document.createElement('p');
      verdict.textContent = c.explain.first_divergent ? 'first divergent: ' + c.explain.first_divergent + (c.explain.hint ? ' \u2014 ' + c.explain.hint : '') : (c.explain.error || 'no layer diverges');
      box.appendChild(verdict);
    }
    if (c.log_excerpt) {
      var pre = document.createElement('pre'); pre.textContent = c.log_excerpt; box.appendChild(pre);
    }
  }
  function applyFilters() {
    var statuses = {};
    document.querySelectorAll('input.status-filter').forEach(function (i) { statuses[i.value] = i.checked; });
    var cause = document.getElementById('cause-filter').value;
    var shown = 0;
    document.querySelectorAll('td.cell').forEach(function (td) {
      var c = byKey[td.dataset.key];
      var visible = statuses[c.status] && (cause === '' || c.error_kind === cause);
      td.classList.toggle('hidden', !visible);
      if (visible) shown += 1;
    });
    document.getElementById('shown').textContent = shown + ' of ' + cells.length + ' cells shown';
  }
  document.querySelectorAll('td.cell').forEach(function (td) {
    td.addEventListener('click', function () { show(td.dataset.key); });
  });
  document.querySelectorAll('input.status-filter').forEach(function (i) { i.addEventListener('change', applyFilters); });
  document.getElementById('cause-filter').addEventListener('change', applyFilters);
  applyFilters();
  document.body.setAttribute('data-ready', '1');
})();
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(doc: Mapping[str, Any]) -> str:
    index = cell_index(doc)
    columns = doc["columns"]
    groups: list[tuple[str, int]] = []
    for column in columns:
        label = f"{column['backend']} / {column['environment']}"
        if groups and groups[-1][0] == label:
            groups[-1] = (label, groups[-1][1] + 1)
        else:
            groups.append((label, 1))
    head1 = "".join(f'<th colspan="{n}">{_e(label)}</th>' for label, n in groups)
    head2 = "".join(f"<th>{_e(c['mode'])}</th>" for c in columns)
    names = doc.get("model_names") or {}
    routes = (doc.get("recommended") or {}).get("routes") or {}
    chosen = {r["key"] for per_mode in routes.values() for r in per_mode.values() if r}
    rows = []
    for model in doc["models"]:
        tds = []
        for c in columns:
            cell = index.get((model, c["backend"], c["environment"], c["mode"]))
            if cell is None:
                tds.append('<td class="empty"></td>')
                continue
            tip = (
                f"{cell['status']}: {cell['cause']}"
                if cell["cause"]
                else f"{cell['status']} {short_summary(cell)}"
            )
            classes = "cell" + (" recommended" if cell["key"] in chosen else "")
            classes += " slower" if cell.get("slower_than_fp32") else ""
            if cell["key"] in chosen:
                tip = f"recommended route for {cell['mode']} · {tip}"
            tds.append(
                f'<td class="{classes}" data-key="{_e(cell["key"])}" data-status="{_e(cell["status"])}" '
                f'style="background:{COLORS.get(cell["status"], "#777")}" title="{_e(tip)}">'
                f"{_e(short_summary(cell) or cell['status'])}</td>"
            )
        rows.append(f'<tr><th class="model">{_model(model, names)}</th>{"".join(tds)}</tr>')
    statuses = [s for s in STATUS_ORDER if s in doc["summary"]["by_status"]]
    status_filters = "".join(
        f'<label><input type="checkbox" class="status-filter" value="{s}" checked>'
        f'<span class="swatch" style="background:{COLORS[s]}"></span>{s} ({doc["summary"]["by_status"][s]})</label>'
        for s in statuses
    )
    causes = sorted({c["error_kind"] for c in doc["cells"] if c["error_kind"]})
    cause_options = '<option value="">any cause</option>' + "".join(
        f'<option value="{_e(k)}">{_e(k)}</option>' for k in causes
    )
    env_rows = "".join(
        f"<tr><td>{_e(name)}</td><td><code>{_e(env['lock_hash'])}</code></td>"
        f"<td>{_e(', '.join(f'{k} {v}' for k, v in env['versions'].items()))}</td></tr>"
        for name, env in doc["environments"].items()
    )
    node_rows = "".join(
        f"<tr><td>{_e(label)}</td><td><code>{_e(node.get('ray_node_id') or '-')}</code></td><td>{node['cells']}</td>"
        f"<td>{_e(', '.join(f'{s} {n}' for s, n in node['by_status'].items()))}</td></tr>"
        for label, node in (doc.get("nodes") or {}).items()
    )
    nodes = (
        '<h2>Nodes</h2>\n<table class="envs"><tr><th>node</th><th>Ray node id</th><th>cells</th><th>statuses</th></tr>'
        f"{node_rows}</table>"
        if node_rows
        else ""
    )
    modes = list(dict.fromkeys(c["mode"] for c in columns))
    data = json.dumps(doc["cells"], default=str).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>liteport compatibility matrix</title>
<style>{CSS}</style>
<script>window.addEventListener('error', function (e) {{ document.documentElement.setAttribute('data-js-error', String(e.message)); }});</script>
</head>
<body>
<h1>liteport compatibility matrix</h1>
<div class="summary">{doc["summary"]["cells"]} cells · generated {_e(doc["generated"])}</div>
<div class="filters">{status_filters}<select id="cause-filter">{cause_options}</select><span id="shown"></span></div>
<table class="grid"><thead><tr><th rowspan="2" class="model">model</th>{head1}</tr><tr>{head2}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p class="legend">Outlined: the recommended route per model and mode ({_e((doc.get("recommended") or {}).get("pick", "fastest"))} valid, what <code>liteport convert --pick</code> keeps); hatched 🐢: int8 slower than fp32 on the same route.</p>
<div id="details"><em>Click a cell for its metrics, cause and log excerpt.</em></div>
{_recommended(doc, modes, names)}
{_environment_summary(doc)}
<h2>Latency against error (ok cells)</h2>
{_chart(doc["cells"])}
<h2>Environments</h2>
<table class="envs"><tr><th>environment</th><th>lock</th><th>versions</th></tr>{env_rows}</table>
{nodes}
<script type="application/json" id="cells-data">{data}</script>
<script>{LAYER_CHART_JS}{SCRIPT}</script>
</body></html>
"""


def _model(ref: str, names: Mapping[str, str]) -> str:
    """The short name, with the full reference on hover."""
    short = names.get(ref, ref)
    return f'<abbr title="{_e(ref)}">{_e(short)}</abbr>' if short != ref else _e(ref)


def _recommended(doc: Mapping[str, Any], modes: Sequence[str], names: Mapping[str, str]) -> str:
    routes = (doc.get("recommended") or {}).get("routes") or {}
    if not routes:
        return ""
    rows = []
    for model in doc["models"]:
        tds = []
        for mode in modes:
            route = routes.get(model, {}).get(mode)
            if route is None:
                none = "none valid" if mode in routes.get(model, {}) else ""
                tds.append(f'<td data-mode="{_e(mode)}" class="none">{none}</td>')
                continue
            latency = route.get("latency_ms")
            timing = f" · {latency:.2f} ms" if isinstance(latency, (int, float)) else ""
            tds.append(
                f'<td data-mode="{_e(mode)}" data-key="{_e(route["key"])}">'
                f"<b>{_e(route['backend'])} / {_e(route['environment'])}</b>{_e(timing)}</td>"
            )
        rows.append(f'<tr data-model="{_e(model)}"><td>{_model(model, names)}</td>{"".join(tds)}</tr>')
    head = "".join(f"<th>{_e(m)}</th>" for m in modes)
    return (
        "<h2>Recommended route</h2>\n"
        f'<table class="envs" id="recommended"><tr><th>model</th>{head}</tr>{"".join(rows)}</table>'
    )


def _environment_summary(doc: Mapping[str, Any]) -> str:
    summary = doc.get("environment_summary") or {}
    if not summary:
        return ""
    keys = ("cells", "valid", "invalid", "failed", "unsupported")
    rows = "".join(
        f'<tr data-environment="{_e(name)}"><td>{_e(name)}</td><td>{_e(row["backend"])}</td>'
        + "".join(f'<td data-count="{k}">{row[k]}</td>' for k in keys)
        + "</tr>"
        for name, row in summary.items()
    )
    head = "".join(f"<th>{k}</th>" for k in keys)
    return (
        "<h2>Per environment</h2>\n"
        f'<table class="envs" id="env-summary"><tr><th>environment</th><th>backend</th>{head}</tr>{rows}</table>'
    )


def _chart(cells: Sequence[Mapping[str, Any]]) -> str:
    """Inline SVG scatter: median latency (log x) against 1 - cosine (log y), one dot per ok cell."""
    points = []
    for c in cells:
        latency, cosine = c["facts"].get("latency_ms"), c["metrics"].get("cosine")
        if (
            c["status"] == "ok"
            and isinstance(latency, (int, float))
            and isinstance(cosine, (int, float))
            and latency > 0
        ):
            points.append((c, float(latency), max(1.0 - float(cosine), 1e-9)))
    if not points:
        return "<p><em>No ok cells to plot.</em></p>"
    width, height, pad = 720, 320, 48
    xs = [math.log10(p[1]) for p in points]
    ys = [math.log10(p[2]) for p in points]
    x0, x1 = min(xs) - 0.1, max(xs) + 0.1
    y0, y1 = min(ys) - 0.3, max(ys) + 0.3

    def sx(v: float) -> float:
        return pad + (v - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(v: float) -> float:
        return height - pad - (v - y0) / (y1 - y0) * (height - 2 * pad)

    modes = sorted({p[0]["mode"] for p in points})
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    color = {m: palette[i % len(palette)] for i, m in enumerate(modes)}
    dots = "".join(
        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{color[c["mode"]]}" fill-opacity="0.8">'
        f"<title>{_e(c['model'])} · {_e(c['backend'])}/{_e(c['environment'])} · {_e(c['mode'])}: "
        f"{lat:.2f} ms, 1-cos {err:.2e}</title></circle>"
        for (c, lat, err), x, y in zip(points, xs, ys)
    )
    decades = [d for d in range(math.floor(x0), math.ceil(x1) + 1) if x0 <= d <= x1]
    # Within one decade there is no round tick to show: label the extremes instead.
    ends = [] if decades else [min(xs), max(xs)]
    ticks = [
        f'<text x="{sx(v):.1f}" y="{height - pad + 16}" font-size="10" text-anchor="middle">{10.0**v:.3g} ms</text>'
        for v in ends
    ]
    for decade in range(math.floor(x0), math.ceil(x1) + 1):
        if x0 <= decade <= x1:
            ticks.append(
                f'<text x="{sx(decade):.1f}" y="{height - pad + 16}" font-size="10" text-anchor="middle">'
                f"{10.0**decade:g} ms</text>"
            )
    for decade in range(math.floor(y0), math.ceil(y1) + 1):
        if y0 <= decade <= y1:
            ticks.append(
                f'<text x="{pad - 6}" y="{sy(decade):.1f}" font-size="10" text-anchor="end">1e{decade}</text>'
            )
    legend = "".join(
        f'<text x="{width - pad + 4}" y="{pad + 14 * i}" font-size="11" fill="{color[m]}">● {_e(m)}</text>'
        for i, m in enumerate(modes)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 80}" height="{height}" role="img" '
        f'aria-label="latency against error">'
        f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="none" stroke="#ccc"/>'
        f"{''.join(ticks)}{dots}{legend}"
        f'<text x="{width / 2}" y="{height - 8}" font-size="11" text-anchor="middle">median latency (log)</text>'
        f'<text x="12" y="{height / 2}" font-size="11" transform="rotate(-90 12 {height / 2})" '
        f'text-anchor="middle">1 - cosine (log)</text></svg>'
    )
