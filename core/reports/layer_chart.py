# ruff: noqa: E501  (JavaScript source)
"""The per-layer SQNR chart of ``liteport explain``, drawn in the browser (matrix.html, explain pages).

``liteportLayerChart(explain)`` returns an inline SVG element: one point per matched layer in
execution order (x) at its SQNR against PyTorch (y, dB), the per-layer SQNR floor dashed, and the
first divergent layer marked and labelled. ``explain`` is a compact explain document
(``liteport.explain.document.compact``) or a full one (its matched ``layers`` are used).
"""

from __future__ import annotations

LAYER_CHART_JS = """
function liteportLayerChart(explain) {
  var NS = 'http://www.w3.org/2000/svg';
  var layers = (explain.layers || []).filter(function (l) {
    return (l.status === undefined || l.status === 'matched') && typeof l.sqnr_db === 'number';
  });
  var first = explain.first_divergent && typeof explain.first_divergent === 'object'
    ? explain.first_divergent.module : explain.first_divergent;
  var floor = explain.thresholds ? explain.thresholds.sqnr_db : null;
  var W = 720, H = 260, L = 48, R = 16, T = 16, B = 40;
  var svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('width', W); svg.setAttribute('height', H);
  svg.setAttribute('class', 'layer-chart'); svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'SQNR per layer');
  svg.setAttribute('data-first-divergent', first || '');
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  }
  if (!layers.length) { el('text', {x: L, y: H / 2, 'font-size': 12}, 'no matched layers'); return svg; }
  var values = layers.map(function (l) { return Math.max(-20, Math.min(l.sqnr_db, 140)); });
  var lo = Math.min.apply(null, values.concat(floor !== null ? [floor] : [])) - 3;
  var hi = Math.max.apply(null, values.concat(floor !== null ? [floor] : [])) + 3;
  function x(i) { return L + (layers.length === 1 ? 0.5 : i / (layers.length - 1)) * (W - L - R); }
  function y(v) { return T + (hi - v) / (hi - lo) * (H - T - B); }
  el('rect', {x: L, y: T, width: W - L - R, height: H - T - B, fill: 'none', stroke: '#ccc'});
  for (var tick = Math.ceil(lo / 10) * 10; tick <= hi; tick += 10) {
    el('text', {x: L - 6, y: y(tick) + 3, 'font-size': 10, 'text-anchor': 'end'}, tick + ' dB');
  }
  if (floor !== null) {
    el('line', {x1: L, x2: W - R, y1: y(floor), y2: y(floor), stroke: '#d9534f', 'stroke-dasharray': '4 3', 'class': 'floor'});
  }
  el('polyline', {points: values.map(function (v, i) { return x(i) + ',' + y(v); }).join(' '), fill: 'none', stroke: '#1f77b4', 'stroke-width': 1.5});
  layers.forEach(function (l, i) {
    var dot = el('circle', {cx: x(i), cy: y(values[i]), r: l.module === first ? 6 : 2.5,
      fill: l.module === first ? '#d9534f' : (l.flag ? '#e0a800' : '#1f77b4'),
      'class': l.module === first ? 'first-divergent' : 'layer', 'data-module': l.module});
    var title = document.createElementNS(NS, 'title');
    title.textContent = l.module + (l.ops ? ' (' + (Array.isArray(l.ops) ? l.ops.join('+') : l.ops) + ')' : '') +
      ': SQNR ' + l.sqnr_db.toFixed(1) + ' dB' + (typeof l.added_db === 'number' ? ', added ' + l.added_db.toFixed(1) + ' dB' : '');
    dot.appendChild(title);
    if (l.module === first) {
      el('text', {x: Math.min(x(i) + 8, W - R - 4), y: y(values[i]) - 8, 'font-size': 11, fill: '#d9534f',
        'text-anchor': x(i) > W - 200 ? 'end' : 'start'}, 'first divergent: ' + l.module);
    }
  });
  el('text', {x: (L + W - R) / 2, y: H - 8, 'font-size': 11, 'text-anchor': 'middle'}, 'layers in execution order (' + layers.length + ' matched)');
  return svg;
}
"""
