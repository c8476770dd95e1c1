"""Per-layer rows from a finished match: agreement, added error, the first divergent layer, its ops.

* **added error** of a matched layer = SQNR of what it received minus its own SQNR (dB). What it
  received is the worst of its inputs, each traced back through unmatched producers to a matched
  layer or a model input (whose SQNR is that of the quantized input); a container also received
  what its last matched inner layer gave; an input that no module produced (a functional op in
  ``forward``) falls back to the previous matched layer.
* **first divergent**: the earliest layer in execution order below ``LayerThresholds``.
* **ops**: the TFLite ops between the tensors a layer receives and its own tensor, with the
  quantization of their outputs and weights; a one-line **hint** when one channel dominates a
  per-tensor int8 range among them.

Worker-side only: imports numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from liteport.explain.match import Array, Matcher, agreement, views
from liteport.explain.thresholds import LayerThresholds

HINT_RATIO = 16.0  # the widest channel spans at least this many times the next one ...
HINT_STEPS = 8.0  # ... which is left with at most this many int8 steps


def input_sqnr(matcher: Matcher, reference_inputs: Sequence[Array]) -> dict[str, float]:
    """SQNR of each graph input against the reference input (the cost of quantizing the input)."""
    found: dict[str, float] = {}
    for j, (tensor, ref) in enumerate(zip(matcher.graph.get("inputs") or [], reference_inputs)):
        values = matcher.values.get(int(tensor))
        if values is None:
            continue
        for _, view in views(values, ref.shape[1:]):
            if view.shape == ref.shape:
                sqnr = agreement(ref, view).sqnr_db
                found[f"input_{j}"] = max(sqnr, found.get(f"input_{j}", -math.inf))
    return found


def layer_rows(
    matcher: Matcher, thresholds: LayerThresholds, inputs_sqnr: Mapping[str, float]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One row per distinct module output in execution order, and the first divergent row (or None)."""
    statuses = matcher.statuses()
    matched_tensors = {m.tensor for m in matcher.matches.values()}
    received = _Received(matcher, inputs_sqnr)
    aliases: dict[str, list[str]] = {}
    for module in matcher.modules:
        if module.get("alias_of"):
            aliases.setdefault(matcher.rep(module["key"]), []).append(_label(module))
    rows: list[dict[str, Any]] = []
    previous: float | None = None
    for module in matcher.rows:
        key = module["key"]
        row: dict[str, Any] = {
            "module": _label(module),
            "type": str(module["type"]).rsplit(".", 1)[-1],
            "status": statuses[key],
            "aliases": aliases.get(key, []),
            "shape": module.get("shape"),
        }
        if statuses[key] == "fused":
            row["fused_into"] = next(
                _label(matcher.by_key[k])
                for k in matcher.chain(key, weightless=True)[1:]
                if k in matcher.matches
            )
        match = matcher.matches.get(key)
        if match is not None:
            got = match.agreement
            sqnr_in = received.of(module, previous)
            added = None if sqnr_in is None or not math.isfinite(got.sqnr_db) else sqnr_in - got.sqnr_db
            ops = op_group(matcher.graph, match.tensor, matched_tensors)
            diverges = (not math.isfinite(got.sqnr_db)) or (
                got.sqnr_db < thresholds.sqnr_db and added is not None and added >= thresholds.added_db
            )
            row.update(
                tensor=str(matcher.tensors[match.tensor]["name"]),
                tensor_index=match.tensor,
                how=match.how,
                layout=match.layout,
                cosine=got.cosine,
                sqnr_db=got.sqnr_db,
                max_abs=got.max_abs,
                sqnr_in_db=sqnr_in,
                added_db=added,
                ops=[matcher.graph["ops"][i]["op"] for i in ops],
                op_indices=ops,
                flag=bool(diverges),
            )
            if math.isfinite(got.sqnr_db):
                previous = got.sqnr_db
        rows.append(row)
    first = next((row for row in rows if row.get("flag")), None)
    return rows, first


def _label(module: Mapping[str, Any]) -> str:
    return str(module["key"])  # the dotted path, "path#2" for a second call, "(model)" for the model


class _Received:
    """The SQNR a layer received: see the module docstring."""

    def __init__(self, matcher: Matcher, inputs_sqnr: Mapping[str, float]) -> None:
        self.matcher = matcher
        self.inputs = inputs_sqnr
        self.memo: dict[str, list[float]] = {}

    def of(self, module: Mapping[str, Any], previous: float | None) -> float | None:
        found: list[float] = []
        unknown = False
        for source in module.get("inputs") or []:
            traced = self._trace(source)
            found += traced
            unknown = unknown or not traced
        if not module.get("leaf"):
            inner = self._last_inner(module)
            if inner is not None:
                found.append(inner)
        if (unknown or not found) and previous is not None:
            found.append(previous)
        return min(found) if found else None

    def _trace(self, source: str | None, depth: int = 0) -> list[float]:
        if source is None or depth > 64:
            return []
        if source in self.inputs:
            return [self.inputs[source]]
        if source not in self.matcher.by_key:
            return []
        key = self.matcher.rep(source)
        match = self.matcher.matches.get(key)
        if match is not None:
            return [match.agreement.sqnr_db] if math.isfinite(match.agreement.sqnr_db) else []
        if key not in self.memo:
            self.memo[key] = []  # a cycle through in-place ops ends here
            self.memo[key] = [
                v for s in self.matcher.by_key[key].get("inputs") or [] for v in self._trace(s, depth + 1)
            ]
        return self.memo[key]

    def _last_inner(self, module: Mapping[str, Any]) -> float | None:
        prefix = f"{module['path']}." if module["path"] else ""
        mine = self.matcher.order[module["key"]]
        inner = [
            m
            for m in self.matcher.modules[:mine]
            if m["key"] in self.matcher.matches and str(m["path"]).startswith(prefix) and m["path"]
        ]
        if not inner:
            return None
        sqnr = self.matcher.matches[inner[-1]["key"]].agreement.sqnr_db
        return sqnr if math.isfinite(sqnr) else None


def op_group(graph: Mapping[str, Any], tensor: int, matched: set[int]) -> list[int]:
    """Ops from the tensors a layer receives (matched ones, inputs, constants) up to ``tensor``."""
    tensors = {int(k): v for k, v in graph["tensors"].items()}
    ops = graph["ops"]
    start = tensors[tensor].get("producer")
    found: list[int] = []
    stack = [start] if start is not None else []
    while stack:
        index = int(stack.pop())
        if index in found:
            continue
        found.append(index)
        for source in ops[index]["inputs"]:
            producer = tensors.get(int(source), {}).get("producer")
            if producer is not None and int(source) not in matched:
                stack.append(producer)
    return sorted(found)


def describe_ops(graph: Mapping[str, Any], indices: Sequence[int]) -> list[dict[str, Any]]:
    """Each op of a layer with the quantization of its output and of its constant inputs."""
    tensors = {int(k): v for k, v in graph["tensors"].items()}
    described = []
    for index in indices:
        op = graph["ops"][index]
        entry: dict[str, Any] = {"index": index, "op": op["op"], "outputs": [], "constants": []}
        for t in op["outputs"]:
            if int(t) in tensors:
                entry["outputs"].append(_quant(tensors[int(t)]))
        for t in op["inputs"]:
            info = tensors.get(int(t))
            if info is not None and info.get("constant"):
                entry["constants"].append(_quant(info))
        described.append(entry)
    return described


def _quant(info: Mapping[str, Any]) -> dict[str, Any]:
    scales = [float(s) for s in info.get("scales") or []]
    entry: dict[str, Any] = {"name": info["name"], "dtype": info.get("dtype"), "shape": info.get("shape")}
    if len(scales) == 1:
        entry["scale"] = scales[0]
        entry["zero_point"] = int((info.get("zero_points") or [0])[0])
    elif scales:
        entry["per_channel"] = {
            "channels": len(scales),
            "axis": info.get("axis", 0),
            "scale_min": min(scales),
            "scale_max": max(scales),
        }
    return entry


def dominant_channel_hint(
    graph: Mapping[str, Any],
    values: Mapping[int, Array],
    indices: Sequence[int],
    labels: Mapping[int, str] | None = None,
) -> str | None:
    """One line when one channel takes a per-tensor int8 range and leaves the others a few steps."""
    tensors = {int(k): v for k, v in graph["tensors"].items()}
    seen: list[int] = []
    for index in indices:
        op = graph["ops"][index]
        for t in [*op["inputs"], *op["outputs"]]:
            if int(t) in values and int(t) not in seen:
                seen.append(int(t))
    best: tuple[float, str] | None = None
    for t in seen:
        info = tensors[t]
        scales = info.get("scales") or []
        x = values[t]
        if len(scales) != 1 or str(info.get("dtype")) not in ("int8", "uint8") or x.ndim < 3:
            continue
        scale = float(scales[0])
        # Steps each channel spans; channels are the last axis of TFLite activations.
        flat = x.reshape(-1, x.shape[-1])
        spans = (flat.max(axis=0) - flat.min(axis=0)) / scale
        if spans.size < 2:
            continue
        order = np.argsort(spans)[::-1]
        top, second = float(spans[order[0]]), float(spans[order[1]])
        if top >= HINT_RATIO * max(second, 1e-9) and second <= HINT_STEPS:
            share = 100.0 * (1.0 - second / top)
            what = (
                f"{labels[t]}'s tensor" if labels and t in labels else f"tensor '{_short(str(info['name']))}'"
            )
            rest = (
                "are quantized to a single value"
                if second < 1.0
                else f"span at most {second:.0f} of its {top:.0f} steps"
            )
            line = (
                f"one channel ({int(order[0])}) holds {share:.1f}% of the int8 range of {what} "
                f"(scale {scale:.3g}); the other {spans.size - 1} channels {rest}"
            )
            if best is None or share > best[0]:
                best = (share, line)
    return best[1] if best else None


def _short(name: str, limit: int = 60) -> str:
    first = name.split(";")[0]
    return first if len(first) <= limit else "…" + first[-(limit - 1) :]
