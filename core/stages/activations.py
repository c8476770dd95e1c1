# Over 400 lines on purpose: one forward walk (hooks, aliases, graph programs, cap) sharing its records.
"""The torch side of ``liteport explain``: every module's output on a few validation samples.

Runs in the torch environment. Forward hooks on every module (containers included) record each
call's output in execution order, named by its dotted module path (a second call of the same
module is ``path#2``). A tensor's identity is ``(id, _version)`` while references are held for
the whole forward, so a container returning its last child's tensor is an *alias*, a module
returning its input (Dropout in eval) a *pass-through*, and an in-place op a new tensor. A model
that arrives as a graph (``torch.export`` / fx ``GraphModule`` without submodule calls) is run
node by node and grouped by the ``nn_module_stack`` its nodes carry.

For ``qat`` the reference is PyTorch's own int8 model (``options["reference"] == "int8"``, the
default of that mode, its quantized outputs dequantized); ``"float"`` runs the QAT model with
fake quantization off. Memory is bounded by ``max_mb``: past it, later modules are dropped and
the manifest says which.

Writes ``<out>.npz`` (one float32 array per distinct output, (samples, *shape)) and ``<out>.json``
(the manifest ``liteport.explain.match`` reads).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from liteport.errors import BadInput
from liteport.stages.modelref import load_model
from liteport.types import Job, Result

if TYPE_CHECKING:
    import numpy as np
    import torch

FORMAT = 1
DEFAULT_SAMPLES = 4
DEFAULT_MAX_MB = 1024.0


def run_activations(job: Job) -> Result:
    """Capture per-module outputs of ``job.model`` on the first samples of the reference inputs."""
    import numpy as np

    started = time.perf_counter()
    opts = job.options
    out = Path(str(opts["out"]))
    samples = max(1, int(opts.get("samples") or DEFAULT_SAMPLES))
    reference_kind = str(opts.get("reference_kind") or ("int8" if job.mode == "qat" else "float"))
    budget = float(opts.get("max_mb") or DEFAULT_MAX_MB) * 2**20
    loaded = load_model(job.model)
    inputs = _reference_inputs(str(opts["reference"]), len(loaded.example_inputs), samples)
    module, context = _reference_module(loaded.module, reference_kind, job.mode)
    with context:
        capture = _Capture(module, budget / len(inputs))
        manifest, arrays = capture.run(inputs)
    manifest.update(reference=reference_kind, model=loaded.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.npz")
    np.savez(partial, **cast("dict[str, Any]", arrays))
    partial.replace(out.with_suffix(".npz"))
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    kept = sum(a.nbytes for a in arrays.values())
    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"activations": str(out.with_suffix(".json")), "arrays": str(out.with_suffix(".npz"))},
        facts={
            "modules": len(manifest["modules"]),
            "tensors": len(arrays),
            "dropped": len(manifest["dropped"]),
            "samples": len(inputs),
            "bytes": kept,
            "reference": reference_kind,
        },
        timings={"activations_s": round(time.perf_counter() - started, 3)},
    )


def _reference_inputs(path: str, count: int, samples: int) -> list[tuple[torch.Tensor, ...]]:
    """The first ``samples`` validation samples of reference.npz, each shaped like the example inputs."""
    import numpy as np
    import torch

    with np.load(path, allow_pickle=False) as data:
        arrays = [np.asarray(data[f"input_{i}"]) for i in range(count)]
    total = min(samples, int(arrays[0].shape[0]))
    return [
        tuple(torch.from_numpy(np.ascontiguousarray(a[s])) for a in arrays)  # (V, *example shape)
        for s in range(total)
    ]


def _reference_module(module: torch.nn.Module, kind: str, mode: str) -> tuple[torch.nn.Module, Any]:
    """The module whose layers are the reference, and the context it must run in."""
    from liteport.stages import qat_reference as qat

    if kind == "int8":
        if not qat.is_eager_qat(module):
            raise BadInput("the int8 reference needs an eager-mode QAT model", hint="use --reference float")
        engine = qat.pick_engine(module)
        return qat.to_int8(module, engine), qat.quantized_engine(engine)
    if kind != "float":
        raise BadInput(f"unknown reference {kind!r}", hint="float or int8")
    if mode == "qat" and qat.is_eager_qat(module) and not qat.is_converted(module):
        import torch.ao.quantization as tq

        floating = copy.deepcopy(module).eval()
        floating.apply(tq.disable_fake_quant)
        floating.apply(tq.disable_observer)
        return floating, nullcontext()
    return module, nullcontext()


class _Capture:
    """Hooks on every module; one forward per sample; see the module docstring."""

    def __init__(self, module: torch.nn.Module, budget_per_sample: float) -> None:
        self.module = module
        if not _is_graph(module):  # an exported program's module cannot switch modes (and needs not)
            module.eval()
        self.budget = budget_per_sample
        self.paths = {id(m): name for name, m in module.named_modules()}
        self.kept: set[str] | None = None  # keys whose arrays fit in the budget (set by sample 0)

    def run(self, inputs: Sequence[tuple[torch.Tensor, ...]]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        import numpy as np

        if _is_graph(self.module):
            calls_per_sample = [self._graph_forward(sample) for sample in inputs]
        else:
            calls_per_sample = [self._forward(sample) for sample in inputs]
        first = calls_per_sample[0]
        arrays: dict[str, np.ndarray] = {}
        modules = []
        for index, (entry, value) in enumerate(first):
            if value is not None:
                name = f"t{index}"
                stacked = [
                    calls[index][1] if index < len(calls) and calls[index][0]["key"] == entry["key"] else None
                    for calls in calls_per_sample
                ]
                if all(v is not None and v.shape == value.shape for v in stacked):
                    entry["array"] = name
                    arrays[name] = np.stack(stacked)  # type: ignore[arg-type]
            modules.append(entry)
        root = modules[-1] if modules and modules[-1]["path"] == "" else None
        outputs = [root["alias_of"] or root["key"]] if root and root.get("shape") is not None else []
        dropped = [m["key"] for m in modules if m.get("dropped")]
        notes = []
        if dropped:
            notes.append(
                f"activation cap reached: {len(dropped)} later modules were not kept "
                f"({dropped[0]} … {dropped[-1]}); raise --max-activation-mb to compare them"
            )
        manifest = {
            "format": FORMAT,
            "samples": len(inputs),
            "root_type": _type_name(self.module),
            "modules": modules,
            "outputs": outputs,
            "dropped": dropped,
            "notes": notes,
        }
        return manifest, arrays

    # -- eager modules: forward hooks -----------------------------------------------------------

    def _forward(self, sample: tuple[torch.Tensor, ...]) -> list[tuple[dict[str, Any], Any]]:
        import torch

        held: list[Any] = []  # references for the whole forward: ids are never reused meanwhile
        producer: dict[tuple[int, int], str] = {}
        pending: dict[int, list[list[str | None]]] = {}
        calls: list[tuple[dict[str, Any], Any]] = []
        counts: dict[str, int] = {}
        used = [0.0]

        def ident(tensor: torch.Tensor) -> tuple[int, int]:
            held.append(tensor)
            return id(tensor), int(tensor._version)

        def pre(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            sources = [producer.get(ident(a)) if isinstance(a, torch.Tensor) else None for a in args]
            pending.setdefault(id(module), []).append(sources)

        def post(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
            path = self.paths[id(module)]
            sources = (pending.get(id(module)) or [[]]).pop()
            counts[path] = counts.get(path, 0) + 1
            key = (path or "(model)") + (f"#{counts[path]}" if counts[path] > 1 else "")
            entry: dict[str, Any] = {
                "key": key,
                "path": path,
                "type": _type_name(module),
                "leaf": all(_is_quantization_helper(c) for c in module.children()),
                "weights": any(True for _ in module.parameters(recurse=False)),
                "inputs": sources,
                "shape": None,
                "alias_of": None,
                "passthrough": False,
            }
            tensor = output if isinstance(output, torch.Tensor) else None
            if tensor is None:
                calls.append((entry, None))
                return
            identity = ident(tensor)
            entry["shape"] = [int(d) for d in tensor.shape]
            source = producer.get(identity)
            entry["alias_of"] = source if source and not source.startswith("input_") else None
            entry["passthrough"] = identity in {ident(a) for a in args if isinstance(a, torch.Tensor)}
            value = None
            if entry["alias_of"] is None:
                producer[identity] = key
                value = self._keep(entry, tensor, used)
            calls.append((entry, value))

        def see_through(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
            # A fake-quant (or observer) passes its input on, quantized or not: same producer, no entry.
            if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
                source = producer.get(ident(args[0]))
                if source is not None:
                    producer.setdefault(ident(output), source)

        hooks = []
        for module in self.module.modules():
            if _is_quantization_helper(module):  # part of the module it serves, not a layer
                hooks.append(module.register_forward_hook(see_through))
                continue
            # prepend: see the arguments before other pre-hooks replace them (liteport's QAT int8
            # model copies clamp inputs), so the producer of an input is still recognised
            hooks.append(module.register_forward_pre_hook(pre, prepend=True))
            hooks.append(module.register_forward_hook(post))
        try:
            for j, tensor in enumerate(sample):
                producer[ident(tensor)] = f"input_{j}"
            with torch.no_grad():
                self.module(*sample)
        finally:
            for hook in hooks:
                hook.remove()
            held.clear()
        self._freeze(calls)
        return calls

    def _keep(self, entry: dict[str, Any], tensor: torch.Tensor, used: list[float]) -> Any:
        """The tensor as float32 numpy, unless the budget is spent (then the entry is marked dropped)."""
        if self.kept is not None:
            if entry["key"] not in self.kept:
                entry["dropped"] = True
                return None
        else:
            size = 4.0 * tensor.numel()
            if used[0] + size > self.budget:
                used[0] = float("inf")  # the earliest modules are kept: everything after this one goes
                entry["dropped"] = True
                return None
            used[0] += size
        real = tensor.dequantize() if tensor.is_quantized else tensor
        return real.detach().to("cpu").float().numpy().copy()

    def _freeze(self, calls: Sequence[tuple[dict[str, Any], Any]]) -> None:
        # The first sample decides what is kept; later samples keep exactly the same modules.
        if self.kept is None:
            self.kept = {entry["key"] for entry, value in calls if value is not None}

    # -- graphs: nn_module_stack -------------------------------------------------------------------

    def _graph_forward(self, sample: tuple[torch.Tensor, ...]) -> list[tuple[dict[str, Any], Any]]:
        """Run a GraphModule node by node; a module's output is the last tensor computed in its scope."""
        import torch

        values: dict[str, Any] = {}
        with torch.no_grad():
            _recorder(self.module, values).run(*sample)
        graph: Any = self.module.graph  # a GraphModule's (see _is_graph)
        nodes = list(graph.nodes)
        order = {node.name: i for i, node in enumerate(nodes)}
        scopes: dict[str, dict[str, Any]] = {}
        for node in nodes:
            if node.op != "call_function" or not isinstance(values.get(node.name), torch.Tensor):
                continue
            for path, kind in (node.meta.get("nn_module_stack") or {}).values():
                if not path:
                    continue  # the model itself: its entry closes the list below
                scope = scopes.setdefault(str(path), {"type": _type_text(kind), "nodes": []})
                scope["nodes"].append(node)
        # Containers end on their last child's node: the deepest scope owns that tensor.
        ranked = sorted(scopes.items(), key=lambda kv: (order[kv[1]["nodes"][-1].name], -_depth(kv[0])))
        produced: dict[str, str] = {
            n.name: f"input_{j}" for j, n in enumerate(n for n in nodes if n.op == "placeholder")
        }
        calls: list[tuple[dict[str, Any], Any]] = []
        used = [0.0]
        for path, scope in ranked:
            last, inside = scope["nodes"][-1], {n.name for n in scope["nodes"]}
            tensor = values[last.name]
            key = path or "(model)"
            entry: dict[str, Any] = {
                "key": key,
                "path": path,
                "type": scope["type"],
                "leaf": not any(p != path and (not path or p.startswith(path + ".")) for p in scopes),
                "inputs": [
                    produced.get(a.name)
                    for a in scope["nodes"][0].all_input_nodes
                    if a.name not in inside and a.op != "get_attr"  # weights are no activations
                ],
                "shape": [int(d) for d in tensor.shape],
                "alias_of": produced.get(last.name) if last.name in produced else None,
                "passthrough": False,
            }
            value = None
            if entry["alias_of"] is None:
                produced[last.name] = key
                value = self._keep(entry, tensor, used)
            calls.append((entry, value))
        output = next((n for n in nodes if n.op == "output"), None)
        first_out = _first_node(output.args) if output is not None else None
        if first_out is not None and first_out.name in produced:
            # The root entry closes the list, as with hooks, aliasing the producer of output 0.
            calls.append(
                (
                    {
                        "key": "(model)",
                        "path": "",
                        "type": _type_name(self.module),
                        "leaf": False,
                        "inputs": [],
                        "shape": [int(d) for d in values[first_out.name].shape],
                        "alias_of": produced[first_out.name],
                        "passthrough": False,
                    },
                    None,
                )
            )
        self._freeze(calls)
        return calls


def _recorder(gm: Any, values: dict[str, Any]) -> Any:
    """A torch.fx Interpreter keeping every node's output in ``values``."""
    import torch.fx

    class Recorder(torch.fx.Interpreter):  # type: ignore[misc]
        def run_node(self, n: torch.fx.Node) -> Any:
            out = super().run_node(n)
            values[n.name] = out
            return out

    return Recorder(gm)


def _first_node(args: Any) -> Any:
    import torch.fx

    if isinstance(args, torch.fx.Node):
        return args
    if isinstance(args, (tuple, list)):
        for item in args:
            found = _first_node(item)
            if found is not None:
                return found
    return None


def _depth(path: str) -> int:
    return path.count(".") + 1 if path else 0


def _is_graph(module: torch.nn.Module) -> bool:
    """A GraphModule whose computing nodes carry module stacks (torch.export): hooks would not fire."""
    import torch.fx

    if not isinstance(module, torch.fx.GraphModule):
        return False
    return any(
        n.op == "call_function" and any(path for path, _ in (n.meta.get("nn_module_stack") or {}).values())
        for n in module.graph.nodes
    )


def _is_quantization_helper(module: Any) -> bool:
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase
    from torch.ao.quantization.observer import ObserverBase

    return isinstance(module, (FakeQuantizeBase, ObserverBase))


def _type_name(module: Any) -> str:
    kind = type(module)
    return f"{kind.__module__}.{kind.__qualname__}"


def _type_text(kind: Any) -> str:
    if isinstance(kind, type):
        return f"{kind.__module__}.{kind.__qualname__}"
    return str(kind)
