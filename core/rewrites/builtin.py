"""The built-in rewrites on a ``torch.fx.GraphModule`` of ATen ops (imports torch).

Each rewrite finds the nodes of its op and replaces each by a call of a plain function made of
ops every converter has; liteport then re-exports the graph, so the function is traced into ATen
ops like the rest of the model. ``apply`` returns how many nodes were replaced.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from liteport.api import BadInput

# Abramowitz & Stegun 7.1.26: erf(a) = 1 - t*(a1 + t*(a2 + ...)) * exp(-a^2), t = 1/(1 + p*a), a >= 0.
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


# node -> (function, args) to call instead, or None to leave the node alone
_Plan = Callable[[Any], "tuple[Callable[..., Any], tuple[Any, ...]] | None"]


def gelu_erf_free(x: Tensor, approximate: str = "none") -> Tensor:
    """Exact GELU as ``0.5 * (x + erf(|x|/sqrt 2) * |x|)``: ``x * Phi(x)`` with erf odd, no Erf op."""
    a = torch.abs(x)
    z = a * 0.7071067811865476
    t = 1.0 / (1.0 + _P * z)
    poly = t * (_A[0] + t * (_A[1] + t * (_A[2] + t * (_A[3] + t * _A[4]))))
    erf = 1.0 - poly * torch.exp(-z * z)
    return 0.5 * (x + erf * a)


def fixed_max_pool2d(x: Tensor, kernel: Sequence[int]) -> tuple[Tensor, Tensor]:
    """``adaptive_max_pool2d`` whose output divides the input; the indices output is not computed."""
    y = F.max_pool2d(x, list(kernel), list(kernel))
    return y, y  # the second item stands in for indices, which no rewritten graph reads


def fixed_avg_pool2d(x: Tensor, kernel: Sequence[int]) -> Tensor:
    return F.avg_pool2d(x, list(kernel), list(kernel))


def log_softmax_decomposed(x: Tensor, dim: int, *rest: Any) -> Tensor:
    shifted = x - torch.amax(x, dim=dim, keepdim=True)
    return shifted - torch.log(torch.sum(torch.exp(shifted), dim=dim, keepdim=True))


def _layers(
    x: Tensor,
    params: Sequence[Tensor],
    has_biases: bool,
    num_layers: int,
    bidirectional: bool,
    batch_first: bool,
    initial: Callable[[int], Any],
    cell: Callable[[Tensor, Any, Tensor], tuple[Tensor, Any]],
) -> tuple[Tensor, list[Any]]:
    """The layers and directions of a recurrent net, each cell unrolled over the static sequence."""
    directions = 2 if bidirectional else 1
    per_direction = 4 if has_biases else 2
    sequence = x.transpose(0, 1) if batch_first else x  # (T, B, F)
    finals: list[Any] = []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            w_ih, w_hh = params[index * per_direction], params[index * per_direction + 1]
            b_ih = params[index * per_direction + 2] if has_biases else None
            b_hh = params[index * per_direction + 3] if has_biases else None
            projected = F.linear(sequence, w_ih, b_ih)  # every step's input projection at once
            state = initial(index)
            steps = sequence.shape[0]
            order = range(steps) if direction == 0 else range(steps - 1, -1, -1)
            ys: list[Tensor] = [projected[0]] * steps
            for t in order:
                h = state[0] if isinstance(state, tuple) else state
                hidden = F.linear(h, w_hh, b_hh)
                ys[t], state = cell(projected[t], state, hidden)
            outputs.append(torch.stack(ys))
            finals.append(state)
        sequence = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    return (sequence.transpose(0, 1) if batch_first else sequence), finals


def lstm_unrolled(
    x: Tensor,
    hx: Sequence[Tensor],
    params: Sequence[Tensor],
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``aten.lstm.input`` in PyTorch's gate order (input, forget, cell, output), eval mode."""

    def cell(gx: Tensor, state: Any, gh: Tensor) -> tuple[Tensor, Any]:
        i, f, g, o = (gx + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    out, finals = _layers(
        x, params, has_biases, num_layers, bidirectional, batch_first, lambda k: (hx[0][k], hx[1][k]), cell
    )
    return out, torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals])


def gru_unrolled(
    x: Tensor,
    hx: Tensor,
    params: Sequence[Tensor],
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
) -> tuple[Tensor, Tensor]:
    """``aten.gru.input`` in PyTorch's gate order (reset, update, new), eval mode."""

    def cell(gx: Tensor, h: Any, gh: Tensor) -> tuple[Tensor, Any]:
        xr, xz, xn = gx.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)  # PyTorch applies the reset gate after the hidden projection
        new = (1.0 - z) * n + z * h
        return new, new

    out, finals = _layers(
        x, params, has_biases, num_layers, bidirectional, batch_first, lambda k: hx[k], cell
    )
    return out, torch.stack(finals)


def _gelu(node: Any) -> Callable[..., Any] | None:
    approximate = node.kwargs.get("approximate", node.args[1] if len(node.args) > 1 else "none")
    return gelu_erf_free if approximate == "none" else None  # the tanh form has no Erf already


def _divisible(node: Any) -> list[int] | None:
    """kernel = input / output size when the output divides the (static) input, else None."""
    value = node.args[0].meta.get("val")
    size = list(node.args[1])
    if value is None or value.dim() != 4 or len(size) != 2 or any(s is None or int(s) <= 0 for s in size):
        return None
    height, width = int(value.shape[2]), int(value.shape[3])
    if height % int(size[0]) or width % int(size[1]):
        return None
    return [height // int(size[0]), width // int(size[1])]


def _max_pool(node: Any) -> tuple[Callable[..., Any], tuple[Any, ...]] | None:
    kernel = _divisible(node)
    reads_indices = any(  # export keeps an unused getitem(1): only a used one reads the indices
        user.target is not operator.getitem or (user.args[1] != 0 and user.users) for user in node.users
    )
    return None if kernel is None or reads_indices else (fixed_max_pool2d, (node.args[0], kernel))


def _avg_pool(node: Any) -> tuple[Callable[..., Any], tuple[Any, ...]] | None:
    kernel = _divisible(node)
    return None if kernel is None else (fixed_avg_pool2d, (node.args[0], kernel))


def _same_args(
    function: Callable[..., Any],
) -> Callable[[Any], tuple[Callable[..., Any], tuple[Any, ...]] | None]:
    return lambda node: (function, tuple(node.args))


# rewrite name -> {ATen target: plan}
RULES: dict[str, dict[str, _Plan]] = {
    "gelu-erf-free": {
        "aten.gelu.default": lambda node: (gelu_erf_free, (node.args[0],)) if _gelu(node) else None,
    },
    "adaptive-pool-fixed": {
        "aten.adaptive_max_pool2d.default": _max_pool,
        "aten.adaptive_avg_pool2d.default": _avg_pool,
    },
    "recurrent-unroll": {
        "aten.lstm.input": _same_args(lstm_unrolled),
        "aten.gru.input": _same_args(gru_unrolled),
    },
    "log-softmax-decompose": {
        "aten.log_softmax.int": lambda node: (log_softmax_decomposed, (node.args[0], node.args[1])),
        "aten._log_softmax.default": lambda node: (log_softmax_decomposed, (node.args[0], node.args[1])),
    },
}


def apply(name: str, graph: Any) -> int:
    """Replace the nodes rewrite ``name`` handles in ``graph`` (a torch.fx.GraphModule); the count."""
    rules = RULES.get(name)
    if rules is None:
        raise BadInput(f"unknown built-in rewrite {name!r}", hint=f"known: {', '.join(RULES)}")
    replaced = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or str(node.target) not in rules:
            continue
        plan = rules[str(node.target)](node)
        if plan is None:
            continue
        function, args = plan
        with graph.graph.inserting_before(node):
            new = graph.graph.call_function(function, args)
        node.replace_all_uses_with(new)
        graph.graph.erase_node(node)
        replaced += 1
    if replaced:
        graph.graph.lint()
        graph.recompile()
    return replaced
