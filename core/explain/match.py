# Over 400 lines on purpose: the matching rules run in one order of evidence over shared candidates.
"""Which TFLite tensor holds which PyTorch module's output.

Inputs: the activations manifest of the torch side (``liteport.stages.activations``: one entry
per module call in execution order, with aliases, inputs and arrays) and the graph of the TFLite
side (``liteport.stages.layers``: op outputs with names, shapes, producers, dequantized values).

Order of evidence, never a guess presented as a match:

1. **names**: the backend's tensor map (``liteport_tensor_map``) or the default spellings of
   ``liteport.explain.names``; the named module's tensor may hold the output of a module the
   converter folded into it (BatchNorm, activation), so the candidates are the module and its
   *fold chain* and the best-agreeing one with a compatible shape is taken;
2. **graph outputs**: output ``j`` holds the module that produced the model's output ``j``;
3. **values**, float modes only: a tensor whose values agree with the module's output
   (``thresholds.VALUE_MATCH``);
4. **the float anchor**, quantized modes: the matches of the same backend's fp32 conversion,
   carried over by tensor name, else by position in the aligned op sequences.

Shapes are compared as they are, channels-last against channels-first (always both: C=H=W
happens), or with size-1 axes dropped. Worker-side only: imports numpy.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from liteport.explain import names
from liteport.explain.thresholds import FLOAT_MODES, VALUE_MATCH

Array = npt.NDArray[Any]

# Module kinds a converter folds into the op before them: normalisation goes into the weights,
# activations become the op's fused activation function.
FOLDABLE = frozenset(
    {
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "ReLU",
        "ReLU6",
        "Hardtanh",
        "Hardswish",
        "Hardsigmoid",
        "SiLU",
        "GELU",
        "Sigmoid",
        "Tanh",
        "LeakyReLU",
        "ELU",
        "PReLU",
        "Identity",
    }
)
SKIPPED_OPS = ("QUANTIZE", "DEQUANTIZE")  # a quantized graph adds these around float islands
STATUSES = ("matched", "fused", "passthrough", "unmatched", "dropped")
SQNR_CAP_DB = 200.0


@dataclass(frozen=True)
class Agreement:
    cosine: float
    sqnr_db: float
    max_abs: float


@dataclass(frozen=True)
class Match:
    tensor: int
    how: str  # "hook" | "name" | "output" | "value" | "anchor"
    layout: str  # "same" | "NHWC" | "squeezed"
    agreement: Agreement


def agreement(ref: Array, got: Array) -> Agreement:
    """Cosine, SQNR (dB, capped) and max |error| over all samples, in float64."""
    r = np.asarray(ref, dtype=np.float64).ravel()
    o = np.asarray(got, dtype=np.float64).ravel()
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(o))):
        return Agreement(cosine=math.nan, sqnr_db=math.nan, max_abs=math.inf)
    nr, no = float(np.linalg.norm(r)), float(np.linalg.norm(o))
    if nr == 0.0 or no == 0.0:
        cos = 1.0 if nr == no else 0.0
    else:
        cos = float(np.clip(np.dot(r, o) / (nr * no), -1.0, 1.0))
    noise = float(np.sum(np.square(o - r)))
    signal = float(np.sum(np.square(r)))
    if noise == 0.0:
        sqnr = SQNR_CAP_DB
    elif signal == 0.0:
        sqnr = -SQNR_CAP_DB
    else:
        sqnr = float(np.clip(10.0 * math.log10(signal / noise), -SQNR_CAP_DB, SQNR_CAP_DB))
    return Agreement(cosine=cos, sqnr_db=sqnr, max_abs=float(np.max(np.abs(o - r))) if r.size else 0.0)


def views(values: Array, shape: Sequence[int]) -> list[tuple[str, Array]]:
    """``values`` (samples, *tflite shape) seen in the PyTorch per-sample ``shape``, each way that fits."""
    got, want = list(values.shape[1:]), [int(d) for d in shape]
    found: list[tuple[str, Array]] = []
    if got == want:
        found.append(("same", values))
    if len(got) == len(want) >= 3:
        moved = np.moveaxis(values, -1, 2)  # channels-last -> channels-first; axis 0 holds samples
        if list(moved.shape[1:]) == want:
            found.append(("NHWC", moved))
    if (
        not found
        and math.prod(got) == math.prod(want)
        and [d for d in got if d != 1] == [d for d in want if d != 1]
    ):
        found.append(("squeezed", values.reshape((values.shape[0], *want))))
    return found


class Matcher:
    """Matches one TFLite graph against the captured module outputs; see the module docstring."""

    def __init__(
        self,
        manifest: Mapping[str, Any],
        activations: Mapping[str, Array],
        graph: Mapping[str, Any],
        values: Mapping[int, Array],
        mode: str,
    ) -> None:
        self.manifest = manifest
        self.activations = activations
        self.graph = graph
        self.values = values
        self.mode = mode
        self.modules: list[dict[str, Any]] = list(manifest["modules"])
        self.by_key = {m["key"]: m for m in self.modules}
        self.order = {m["key"]: i for i, m in enumerate(self.modules)}
        self.rows = [m for m in self.modules if m.get("array") or m.get("dropped")]
        self.tensors: dict[int, dict[str, Any]] = {int(k): v for k, v in graph["tensors"].items()}
        self.produced = [t for t, info in self.tensors.items() if info.get("producer") is not None]
        self.consumers: dict[str, list[str]] = {}
        for m in self.modules:
            for source in m.get("inputs") or []:
                if source in self.by_key:
                    self.consumers.setdefault(source, []).append(m["key"])
        self.first_call: dict[str, str] = {}
        for m in self.modules:
            self.first_call.setdefault(m["path"], m["key"])
        self.matches: dict[str, Match] = {}
        # Name claims a float conversion's values contradict (onnx2tf 2.x names a tensor after the
        # op that consumes it): taken only where no value match says otherwise.
        self.weak: list[tuple[str, int, str]] = []

    # -- structure of the PyTorch side ---------------------------------------------------------

    def rep(self, key: str) -> str:
        """The module call that computed the tensor ``key`` returned (containers alias a child)."""
        seen = 0
        module = self.by_key[key]
        while module.get("alias_of") in self.by_key and seen < len(self.modules):
            module = self.by_key[module["alias_of"]]
            seen += 1
        return str(module["key"])

    def chain(self, key: str, weightless: bool = False) -> list[str]:
        """``key`` and the foldable modules that consume its output one after the other.

        With ``weightless`` any leaf without weights of its own counts too (a constant scale a
        converter folds into the convolution before it): only to tell fused modules apart.
        """
        found, current = [key], key
        while True:
            nxt = [
                n
                for n in self.consumers.get(current, [])
                if (self._foldable(n) or (weightless and self._weightless(n)))
                and not self.by_key[n].get("alias_of")  # an Identity between them computes nothing
                and self.by_key[n].get("shape") == self.by_key[current].get("shape")
            ]
            if len(nxt) != 1 or not self._next_computation(current, nxt[0]):
                return found
            current = nxt[0]
            found.append(current)

    def _weightless(self, key: str) -> bool:
        module = self.by_key[key]
        return bool(module.get("leaf")) and module.get("weights") is False

    def _foldable(self, key: str) -> bool:
        module = self.by_key[key]
        return bool(module.get("leaf")) and str(module["type"]).rsplit(".", 1)[-1] in FOLDABLE

    def _next_computation(self, a: str, b: str) -> bool:
        # Between a and b only containers may close (they alias a child): b runs right after a.
        between = self.modules[self.order[a] + 1 : self.order[b]]
        return self.order[b] > self.order[a] and all(m.get("alias_of") for m in between)

    # -- evidence --------------------------------------------------------------------------------

    def score(self, key: str, tensor: int) -> tuple[str, Agreement] | None:
        """How ``tensor`` agrees with module ``key`` in its best-fitting layout; None if no shape fits."""
        module = self.by_key[key]
        array = module.get("array")
        if not array or tensor not in self.values or module.get("shape") is None:
            return None
        ref = self.activations[array]
        best: tuple[str, Agreement] | None = None
        for layout, view in views(self.values[tensor], module["shape"]):
            if view.shape[0] != ref.shape[0]:
                continue
            found = agreement(ref.reshape(view.shape), view)
            if best is None or _better(found, best[1]):
                best = (layout, found)
        return best

    def claim(self, key: str, tensor: int, how: str) -> bool:
        scored = self.score(key, tensor)
        if scored is None:
            return False
        layout, found = scored
        previous = self.matches.get(key)
        if previous is not None:
            if _better(previous.agreement, found):
                return False
            if not _better(found, previous.agreement) and self._producer(previous.tensor) <= self._producer(
                tensor
            ):
                return False  # as good: keep the earlier op's tensor (the TRANSPOSE after it copies it)
        self.matches[key] = Match(tensor=tensor, how=how, layout=layout, agreement=found)
        return True

    def _producer(self, tensor: int) -> int:
        producer = self.tensors[tensor].get("producer")
        return int(producer) if producer is not None else -1

    def match_names(self, tensor_map: Mapping[str, str] | None = None) -> None:
        """Tensors whose name spells a module: the backend's map first, the default spellings for the rest."""
        table = names.key_table(m["path"] for m in self.modules)
        for tensor in self.produced:
            name = str(self.tensors[tensor]["name"])
            if tensor_map and name in tensor_map:
                paths, how = [str(tensor_map[name])], "hook"
            else:
                paths, how = names.modules_in_name(name, table)[:1], "name"
            for path in paths:
                key = self.first_call.get(path)
                if key is None:
                    continue
                scored = [(c, self.score(c, tensor)) for c in self.chain(self.rep(key))]
                fitting = [(c, s) for c, s in scored if s is not None]
                if fitting:
                    best = max(fitting, key=lambda item: _rank(item[1][1]))
                    if self._agrees(best[1][1]):
                        self.claim(best[0], tensor, how)
                    else:  # kept for after the value search: the name may say what consumes it
                        self.weak.append((best[0], tensor, how))

    def match_outputs(self) -> None:
        """Graph output ``j`` holds what produced the model's output ``j``."""
        for key, tensor in zip(self.manifest.get("outputs") or [], self.graph.get("outputs") or []):
            if key in self.by_key and self.rep(key) not in self.matches:
                self.claim(self.rep(key), int(tensor), "output")

    def match_values(self) -> None:
        """Float modes: a module still unmatched takes the tensor that agrees best, above the bar."""
        bar = VALUE_MATCH.get(self.mode)
        if bar is None:
            return
        for row in self.rows:
            key = row["key"]
            if key in self.matches or row.get("passthrough") or not row.get("array"):
                continue
            best: tuple[int, Agreement] | None = None
            for tensor in self.produced:
                if not self._may_agree(key, tensor, bar.cosine):
                    continue
                scored = self.score(key, tensor)
                if scored is None:
                    continue
                found = scored[1]
                agrees = found.cosine >= bar.cosine and found.sqnr_db >= bar.sqnr_db
                if agrees and (best is None or _better(found, best[1])):
                    best = (tensor, found)
            if best is not None:
                self.claim(key, best[0], "value")

    def _may_agree(self, key: str, tensor: int, cosine: float) -> bool:
        """A cheap look at a strided sample of the values before the full comparison."""
        module = self.by_key[key]
        ref = self.activations[module["array"]]
        for _, view in views(self.values[tensor], module["shape"]):
            if view.shape[0] != ref.shape[0]:
                continue
            step = max(1, ref.size // 4096)
            sample = agreement(
                ref.reshape(view.shape).ravel()[::step], np.ascontiguousarray(view).ravel()[::step]
            )
            if sample.cosine >= cosine - 0.01:
                return True
        return False

    def borrow(self, anchor: Matcher) -> None:
        """Carry the float conversion's matches over: same tensor name, else same aligned op position."""
        by_name: dict[str, list[int]] = {}
        for tensor in self.produced:
            by_name.setdefault(str(self.tensors[tensor]["name"]), []).append(tensor)
        aligned = aligned_tensors(anchor.graph, self.graph)
        for key, match in anchor.matches.items():
            if key in self.matches or key not in self.by_key:
                continue
            same = by_name.get(str(anchor.tensors[match.tensor]["name"]), [])
            target = same[0] if len(same) == 1 else aligned.get(match.tensor)
            if target is not None:
                self.claim(key, target, "anchor")

    def match_all(self, tensor_map: Mapping[str, str] | None = None, anchor: Matcher | None = None) -> None:
        self.match_names(tensor_map)
        self.match_outputs()
        if self.mode in FLOAT_MODES:
            self.match_values()
        taken = {m.tensor for m in self.matches.values()}
        for key, tensor, how in self.weak:  # a real drift in a float model: the name is all there is
            if key not in self.matches and tensor not in taken:
                self.claim(key, tensor, how)
        if anchor is not None:
            self.borrow(anchor)

    def _agrees(self, found: Agreement) -> bool:
        """In a float mode, whether values confirm a name (always, in quantized modes)."""
        bar = VALUE_MATCH.get(self.mode)
        return bar is None or (found.cosine >= bar.cosine and found.sqnr_db >= bar.sqnr_db)

    # -- verdicts --------------------------------------------------------------------------------

    def statuses(self) -> dict[str, str]:
        """matched · fused (a later module of its fold chain holds it) · passthrough · dropped · unmatched."""
        found: dict[str, str] = {}
        for row in self.rows:
            key = row["key"]
            if key in self.matches:
                found[key] = "matched"
            elif row.get("dropped"):
                found[key] = "dropped"
            elif row.get("passthrough"):
                found[key] = "passthrough"
            elif any(k in self.matches for k in self.chain(key, weightless=True)[1:]):
                found[key] = "fused"
            else:
                found[key] = "unmatched"
        return found

    def coverage(self) -> dict[str, Any]:
        """Counts per status and the matched fraction of the modules that produce a tensor."""
        counts = dict.fromkeys(STATUSES, 0)
        for status in self.statuses().values():
            counts[status] += 1
        producing = counts["matched"] + counts["unmatched"]
        how: dict[str, int] = {}
        for match in self.matches.values():
            how[match.how] = how.get(match.how, 0) + 1
        return {
            **counts,
            "fraction": counts["matched"] / producing if producing else 1.0,
            "how": dict(sorted(how.items())),
        }


def aligned_tensors(anchor: Mapping[str, Any], target: Mapping[str, Any]) -> dict[int, int]:
    """Anchor tensor -> target tensor, op by op from the graph inputs: same op kind, same output
    shapes, and inputs that are themselves aligned (QUANTIZE/DEQUANTIZE pass their input's on).

    The op sequences (difflib) propose the pairs where an op's inputs alone do not single one out;
    a proposal whose inputs are not aligned is dropped, so a shifted stretch is never taken.
    """
    a_tensors = {int(k): v for k, v in anchor["tensors"].items()}
    b_tensors = {int(k): v for k, v in target["tensors"].items()}
    b_to_a: dict[int, int] = {
        int(b): int(a) for a, b in zip(anchor.get("inputs") or [], target.get("inputs") or [])
    }

    def flowing(
        graph_tensors: Mapping[int, Mapping[str, Any]], inputs: Any, op: Mapping[str, Any]
    ) -> list[int]:
        graph_inputs = {int(t) for t in inputs or []}
        return [
            int(t)
            for t in op["inputs"]
            if int(t) in graph_inputs or (graph_tensors.get(int(t)) or {}).get("producer") is not None
        ]

    def shapes(graph_tensors: Mapping[int, Mapping[str, Any]], op: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(tuple((graph_tensors.get(int(t)) or {}).get("shape") or ()) for t in op["outputs"])

    by_inputs: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for op in anchor["ops"]:
        key = (op["op"], tuple(flowing(a_tensors, anchor.get("inputs"), op)), shapes(a_tensors, op))
        by_inputs.setdefault(key, []).append(op)
    proposed = _sequence_pairs(anchor, target, a_tensors, b_tensors)
    for op in target["ops"]:
        sources = flowing(b_tensors, target.get("inputs"), op)
        mapped = [b_to_a.get(t) for t in sources]
        if op["op"] in SKIPPED_OPS:
            if len(mapped) == 1 and mapped[0] is not None and len(op["outputs"]) == 1:
                b_to_a[int(op["outputs"][0])] = mapped[0]
            continue
        found = by_inputs.get((op["op"], tuple(mapped), shapes(b_tensors, op)), []) if all(mapped) else []
        # After a stretch the graphs build differently, only the sequence can pick the thread up again.
        partner = found[0] if len(found) == 1 else proposed.get(int(op["index"]))
        if (
            partner is None
            or partner["op"] != op["op"]
            or shapes(a_tensors, partner) != shapes(b_tensors, op)
        ):
            continue
        fed = flowing(a_tensors, anchor.get("inputs"), partner)
        if len(fed) != len(mapped) or any(m is not None and m != a for m, a in zip(mapped, fed)):
            continue  # fed by something else than what is aligned: a shifted stretch
        for a_tensor, b_tensor in zip(partner["outputs"], op["outputs"]):
            b_to_a.setdefault(int(b_tensor), int(a_tensor))
    produced = {int(t) for op in target["ops"] if op["op"] not in SKIPPED_OPS for t in op["outputs"]}
    found_pairs: dict[int, int] = {}
    for b, a in b_to_a.items():
        if b in produced:
            found_pairs.setdefault(a, b)
    return found_pairs


def _sequence_pairs(
    anchor: Mapping[str, Any],
    target: Mapping[str, Any],
    a_tensors: Mapping[int, Mapping[str, Any]],
    b_tensors: Mapping[int, Mapping[str, Any]],
) -> dict[int, Mapping[str, Any]]:
    """Target op index -> anchor op, where the op sequences (kind and output shapes) line up."""

    def signature(
        graph: Mapping[str, Any], tensors: Mapping[int, Mapping[str, Any]]
    ) -> tuple[list[Any], list[Any]]:
        ops = [op for op in graph["ops"] if op["op"] not in SKIPPED_OPS]
        return ops, [
            (op["op"], *(tuple((tensors.get(int(t)) or {}).get("shape") or ()) for t in op["outputs"]))
            for op in ops
        ]

    a_ops, a_sig = signature(anchor, a_tensors)
    b_ops, b_sig = signature(target, b_tensors)
    pairs: dict[int, Mapping[str, Any]] = {}
    for block in difflib.SequenceMatcher(a=a_sig, b=b_sig, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            pairs[int(b_ops[block.b + k]["index"])] = a_ops[block.a + k]
    return pairs


def _rank(found: Agreement) -> tuple[float, float]:
    cos = found.cosine if math.isfinite(found.cosine) else -2.0
    sqnr = found.sqnr_db if math.isfinite(found.sqnr_db) else -math.inf
    return cos, sqnr


def _better(a: Agreement, b: Agreement) -> bool:
    """``a`` agrees better than ``b`` (cosine first, by more than rounding; then SQNR)."""
    ra, rb = _rank(a), _rank(b)
    if abs(ra[0] - rb[0]) > 1e-6:
        return ra[0] > rb[0]
    return ra[1] > rb[1] + 1e-6
