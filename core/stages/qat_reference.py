# Over 400 lines on purpose: the int8 reference, its trace and qparams.json share one QAT model walk.
"""PyTorch's own int8 model of an eager-mode QAT model, and the quantization parameters it holds.

Used by the reference stage (``reference_int8.npz`` and ``qparams.json`` beside
``reference.npz``), by the ``qat-transplant`` backend (the same converted model and trace it
transplants) and by the ``qparams`` validator (the zero-point shift, torch-free).

* A model is *eager QAT* when it holds fake-quant modules (``prepare_qat``, trained or not) or
  is already ``torch.ao.quantization.convert``-ed (it holds ``nnq.Quantize`` stubs).
* ``to_int8`` converts a deep copy (the factory's model is left as it is) and PyTorch's int8
  model runs on the ``qnnpack`` CPU engine, PyTorch's mobile engine, whatever the qconfig
  (``reduce_range`` models run there too). Why: QNNPACK and the XNNPACK kernels TFLite runs
  int8 models with share their arithmetic (int32 bias, fp32 requantization rounding half to
  even), while fbgemm/x86/oneDNN add a float bias and round elsewhere. Engines differ by one
  step on a fraction of a percent of a layer's elements, and a deep random-weight model
  amplifies that into several output steps (README, "QAT transplant"), while the transplanted
  file follows the qnnpack model. ``LITEPORT_QAT_ENGINE`` picks another engine.
* ``trace`` runs the converted model once under ``torch.fx`` on the example inputs and keeps
  every node's output: the quantized tensors themselves carry PyTorch's scale and zero point
  at every point of the graph, learned (convs, linears, stubs, ``QFunctional``) or inherited
  (pooling, ReLU, reshape keep their input's).

Zero points: PyTorch's activations are ``quint8`` (0..255) with the fbgemm/qnnpack qconfigs;
TFLite's are ``int8`` (-128..127). The same real value has ``q_int8 = q_uint8 - 128`` at the
same scale, so ``zero_point_int8 = zero_point_uint8 - 128`` (``int8_zero_point``). ``qint8``
tensors (weights) keep theirs. ``reduce_range`` changes only which scale the observer picked
(7-bit range); the converted kernels still saturate at the full 0..255, as TFLite's int8 kernels
saturate at -128..127, so nothing else shifts.

torch is imported inside the functions: the validator imports this module without torch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liteport.errors import BadInput
from liteport.stages.tensors import flatten_outputs
from liteport.stages.workfiles import written_atomically

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.fx

REFERENCE_INT8_NPZ = "reference_int8.npz"
REFERENCE_INT8_LAYERS_NPZ = "reference_int8_layers.npz"
QPARAMS_JSON = "qparams.json"
FORMAT = 1

# How PyTorch's quantized dtypes map onto TFLite's int8: zero-point shift per dtype.
ZERO_POINT_SHIFT: dict[str, int] = {"torch.quint8": -128, "torch.qint8": 0}


def int8_zero_point(zero_point: int, dtype: str) -> int:
    """PyTorch's zero point of a ``dtype`` tensor as TFLite int8 stores it (same scale)."""
    try:
        return int(zero_point) + ZERO_POINT_SHIFT[dtype]
    except KeyError:
        raise BadInput(
            f"quantized dtype {dtype} has no int8 equivalent",
            hint="use quint8 or qint8 activations and qint8 weights in the qconfig",
        ) from None


def scales_match(expected: Sequence[float], got: Sequence[float], rel: float = 1e-6) -> bool:
    """Every scale within ``rel`` relative difference of PyTorch's (and as many of them)."""
    if len(expected) != len(got):
        return False
    return all(math.isclose(float(e), float(g), rel_tol=rel, abs_tol=0.0) for e, g in zip(expected, got))


# ------------------------------------------------------------------------------ torch side


def is_eager_qat(module: torch.nn.Module) -> bool:
    """True for a ``prepare_qat``-ed model (fake-quant modules) or a ``convert``-ed one."""
    from torch.ao.nn.quantized import Quantize
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase

    return any(isinstance(m, (FakeQuantizeBase, Quantize)) for m in module.modules())


def is_converted(module: torch.nn.Module) -> bool:
    from torch.ao.nn.quantized import Quantize

    return any(isinstance(m, Quantize) for m in module.modules())


def pick_engine(module: torch.nn.Module | None = None) -> str:
    """The CPU quantized engine PyTorch's int8 model runs on: ``qnnpack`` (see the module docstring).

    ``LITEPORT_QAT_ENGINE`` (e.g. ``x86``, ``fbgemm``) picks another supported engine.
    """
    import os

    import torch

    engines = list(torch.backends.quantized.supported_engines)
    for name in (os.environ.get("LITEPORT_QAT_ENGINE"), "qnnpack", "x86", "fbgemm"):
        if name and name in engines:
            return name
    return str(torch.backends.quantized.engine)


@contextlib.contextmanager
def quantized_engine(name: str) -> Iterator[None]:
    """Run with ``torch.backends.quantized.engine = name``, restored afterwards (workers are long-lived)."""
    import torch

    saved = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = saved


def to_int8(module: torch.nn.Module, engine: str) -> torch.nn.Module:
    """PyTorch's int8 model: ``convert`` of a deep copy (a converted model is returned as is)."""
    import warnings

    import torch.ao.quantization as tq

    if is_converted(module):
        converted = module
    else:
        with quantized_engine(engine), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eager quantization's deprecation notices, one per module
            converted = tq.convert(copy.deepcopy(module).eval(), inplace=False)
    _contiguous_clamps(converted)
    return converted.eval()


def _contiguous_clamps(module: torch.nn.Module) -> None:
    """Work around a PyTorch bug: feed ReLU6 / Hardtanh modules contiguous tensors.

    In torch 2.13 the quantized ``relu6`` / ``hardtanh`` / ``clamp`` kernels ignore the strides
    of a channels-last quantized tensor, which is what quantized convs return: the output holds
    the clamped values in scrambled positions (on zoo mobilenet_v2_qat PyTorch's int8 model then
    misses its own fake-quant outputs by 0.6 on outputs of 0.46). ``.contiguous()`` only moves
    memory, so the hook restores what the kernels are meant to compute.
    """
    import torch
    from torch.ao.nn.quantized import ReLU6 as QReLU6

    def contiguous(_: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)

    for sub in module.modules():
        if isinstance(sub, (QReLU6, torch.nn.Hardtanh)) and not getattr(sub, "_liteport_contiguous", False):
            sub.register_forward_pre_hook(contiguous)
            sub._liteport_contiguous = True


@dataclass
class Traced:
    """A converted model traced by torch.fx, with every node's output on the example inputs."""

    graph_module: torch.fx.GraphModule
    values: dict[str, Any]  # node name -> output (quantized tensors carry their qparams)
    names: dict[str, str]  # node name -> readable tensor name (module path where there is one)
    engine: str
    learned: set[str] = field(default_factory=set)  # nodes whose qparams PyTorch learned


def symbolic(int8_module: torch.nn.Module) -> torch.fx.GraphModule:
    """The torch.fx graph of the converted model (quantized modules stay leaves)."""
    import torch.fx

    try:
        return torch.fx.symbolic_trace(int8_module)
    except Exception as exc:
        raise BadInput(
            f"torch.fx cannot trace the converted QAT model: {type(exc).__name__}: {_first_line(exc)}",
            hint="keep forward() free of data-dependent control flow",
        ) from exc


def trace(
    int8_module: torch.nn.Module,
    example_inputs: Sequence[torch.Tensor],
    engine: str,
    gm: torch.fx.GraphModule | None = None,
) -> Traced:
    """Trace ``int8_module`` with torch.fx (unless ``gm`` is that trace) and run it on ``example_inputs``."""

    gm = gm if gm is not None else symbolic(int8_module)
    modules = dict(gm.named_modules())
    return Traced(
        graph_module=gm,
        values=record(gm, example_inputs, engine)[0],
        names=_tensor_names(gm),
        engine=engine,
        learned={n.name for n in gm.graph.nodes if _is_learned(n, modules)},
    )


def record(
    gm: torch.fx.GraphModule, inputs: Sequence[torch.Tensor], engine: str
) -> tuple[dict[str, Any], Any]:
    """Run ``gm`` on ``inputs``: (node name -> output, the model's output)."""
    import torch
    import torch.fx

    values: dict[str, Any] = {}

    class _Recorder(torch.fx.Interpreter):  # type: ignore[misc]
        def run_node(self, n: torch.fx.Node) -> Any:
            out = super().run_node(n)
            values[n.name] = out
            return out

    with quantized_engine(engine), torch.no_grad():
        result = _Recorder(gm).run(*inputs)
    return values, result


def quantized_inputs(gm: torch.fx.GraphModule, values: Mapping[str, Any]) -> list[Any]:
    """Per model input, the quantized tensor its QuantStub made (None for an input used otherwise)."""
    found = []
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        users = [values.get(u.name) for u in node.users]
        found.append(next((v for v in users if getattr(v, "is_quantized", False)), None))
    return found


def _is_learned(node: torch.fx.Node, modules: Mapping[str, Any]) -> bool:
    """PyTorch chose this node's output qparams itself (an observer's), not inherited them."""
    if node.op == "call_module":
        return hasattr(modules[str(node.target)], "scale")
    return node.op == "call_function" and "scale" in node.kwargs


def _tensor_names(gm: torch.fx.GraphModule) -> dict[str, str]:
    """Readable, unique names: the module path for module calls; for ``QFunctional`` ops the
    path of the QFunctional (read off its ``activation_post_process`` user); else the node name."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for node in gm.graph.nodes:
        name = node.name
        if node.op == "call_module":
            name = str(node.target)
        elif node.op == "call_function" and "scale" in node.kwargs and len(node.users) == 1:
            (user,) = node.users
            target = str(user.target)
            if user.op == "call_module" and target.endswith(".activation_post_process"):
                name = target[: -len(".activation_post_process")]
        if name in used:  # a module called twice: the second call gets its node name
            name = node.name
        used.add(name)
        names[node.name] = name
    return names


def _qparams_of(value: torch.Tensor) -> dict[str, Any]:
    dtype = str(value.dtype)
    if value.qscheme() in _per_channel_schemes():
        scales = [float(s) for s in value.q_per_channel_scales().tolist()]
        zero_points = [int(z) for z in value.q_per_channel_zero_points().tolist()]
        axis: int | None = int(value.q_per_channel_axis())
    else:
        scales, zero_points, axis = [float(value.q_scale())], [int(value.q_zero_point())], None
    return {
        "dtype": dtype,
        "scale": scales,
        "zero_point": zero_points,
        "int8_zero_point": [int8_zero_point(z, dtype) for z in zero_points],
        "axis": axis,
        "shape": list(value.shape),
    }


def _per_channel_schemes() -> tuple[Any, ...]:
    import torch

    return (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)


def qparams_document(traced: Traced) -> dict[str, Any]:
    """Every quantized tensor of PyTorch's int8 model: activations, weights and int32 bias scales.

    Names match the tensors the qat-transplant backend writes; ``learned`` marks the points
    PyTorch observed (a file must carry all of those); inherited ones may be fused away.
    """
    import torch

    tensors: dict[str, dict[str, Any]] = {}
    modules = dict(traced.graph_module.named_modules())
    for node in traced.graph_module.graph.nodes:
        value = traced.values.get(node.name)
        if not isinstance(value, torch.Tensor) or not value.is_quantized:
            continue
        name = traced.names[node.name]
        tensors[name] = {
            "kind": "activation",
            "learned": node.name in traced.learned,
            "node": node.name,
            **_qparams_of(value),
        }
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        weight_of = getattr(module, "weight", None)
        if module is None or not callable(weight_of) or not node.args:
            continue
        weight = weight_of()
        if not isinstance(weight, torch.Tensor) or not weight.is_quantized:
            continue
        tensors[f"{name}.weight"] = {
            "kind": "weight",
            "learned": True,
            "node": node.name,
            **_qparams_of(weight),
        }
        source = traced.values.get(getattr(node.args[0], "name", ""))
        if isinstance(source, torch.Tensor) and source.is_quantized:
            in_scale = float(source.q_scale())
            w_scales = tensors[f"{name}.weight"]["scale"]
            tensors[f"{name}.bias"] = {
                "kind": "bias",
                "learned": False,  # derived: input scale x weight scale, zero point 0
                "node": node.name,
                "dtype": "int32",
                "scale": [in_scale * float(s) for s in w_scales],
                "zero_point": [0] * len(w_scales),
                "int8_zero_point": [0] * len(w_scales),
                "axis": tensors[f"{name}.weight"]["axis"],
                "shape": [int(weight.shape[0])],
            }
    return {
        "format": FORMAT,
        "engine": traced.engine,
        "output_scales": _output_scales(traced),
        "torch": str(torch.__version__),
        "zero_point_shift": dict(ZERO_POINT_SHIFT),
        "tensors": tensors,
    }


def _output_scales(traced: Traced) -> list[float | None]:
    """Per model output, the scale of the quantized tensor it is (or dequantizes): one output step."""
    import torch

    scales: list[float | None] = []
    for node in traced.graph_module.graph.nodes:
        if node.op != "output":
            continue
        for arg in _flat_args(node.args[0]):
            value = traced.values.get(getattr(arg, "name", ""))
            if isinstance(value, torch.Tensor) and not value.is_quantized and getattr(arg, "args", None):
                value = traced.values.get(getattr(arg.args[0], "name", ""))  # a DeQuantStub's input
            quantized = isinstance(value, torch.Tensor) and value.is_quantized
            scales.append(float(value.q_scale()) if quantized else None)  # type: ignore[union-attr]
    return scales


def _flat_args(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for item in value for x in _flat_args(item)]
    if isinstance(value, dict):
        return [x for item in value.values() for x in _flat_args(item)]
    return [value]


def write_int8_reference(
    module: torch.nn.Module,
    example_inputs: Sequence[torch.Tensor],
    validation: Sequence[np.ndarray],
    workdir: Path,
) -> tuple[dict[str, str], dict[str, Any]]:
    """For an eager QAT model: PyTorch's int8 outputs on the validation inputs and its qparams.

    Returns (artifacts, facts). A model that is not eager QAT gets nothing; one whose int8
    model cannot be made or run gets a fact saying why (the backend reports it properly).
    """
    import numpy as np
    import torch

    if not is_eager_qat(module):
        return {}, {}
    engine = pick_engine(module)
    try:
        int8 = to_int8(module, engine)
        traced = trace(int8, example_inputs, engine)
        document = qparams_document(traced)
        per_sample: list[list[np.ndarray]] = []
        qinputs: list[list[np.ndarray | None]] = []
        layers: list[dict[str, np.ndarray]] = []
        for index in range(int(validation[0].shape[0])):
            args = [torch.from_numpy(np.ascontiguousarray(a[index])) for a in validation]
            values, result = record(traced.graph_module, args, engine)
            per_sample.append([_as_float(t) for t in flatten_outputs(result)])
            qinputs.append([_as_int8(q) for q in quantized_inputs(traced.graph_module, values)])
            layers.append(layer_values(traced, values))
    except Exception as exc:  # reported as a fact: the convert stage names the real problem
        return {}, {"int8_reference_error": f"{type(exc).__name__}: {_first_line(exc)}"}
    arrays: dict[str, Any] = {
        f"output_{j}": np.stack([s[j] for s in per_sample]) for j in range(len(per_sample[0]))
    }
    # PyTorch's own quantized inputs (int8 after the shift), so the validator feeds exactly them:
    # its float->int rounding (half to even) is not TFLite's (half away from zero).
    stubs = quantized_inputs(traced.graph_module, traced.values)
    for i, stub in enumerate(stubs):
        given = [q for q in (sample[i] for sample in qinputs) if q is not None]
        if stub is not None and len(given) == len(qinputs):
            arrays[f"qinput_{i}"] = np.stack(given)
            zero_point = int8_zero_point(int(stub.q_zero_point()), str(stub.dtype))
            arrays[f"qinput_{i}_params"] = np.asarray([float(stub.q_scale()), zero_point], dtype=np.float64)
    workdir.mkdir(parents=True, exist_ok=True)
    npz = workdir / REFERENCE_INT8_NPZ
    qjson = workdir / QPARAMS_JSON
    with written_atomically(npz) as partial:  # run folders are shared: never a half-written file
        np.savez(partial, **arrays)
    with written_atomically(qjson) as partial:
        partial.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    layers_npz = workdir / REFERENCE_INT8_LAYERS_NPZ
    with written_atomically(layers_npz) as partial:
        np.savez_compressed(partial, **_stacked(layers))
    facts = {"quantized_engine": engine, "qparams_count": len(document["tensors"])}
    artifacts = {"reference_int8": str(npz), "qparams": str(qjson), "reference_int8_layers": str(layers_npz)}
    return artifacts, facts


# Clamps and aliases a converter may fold into the op before them (fused activations).
_FOLDABLE_MODULES = ("ReLU", "ReLU6", "Hardtanh", "Identity", "Dropout")
_FOLDABLE_CALLS = ("relu", "relu6", "hardtanh", "dropout", "contiguous")


def layer_values(traced: Traced, values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """PyTorch's int8 value (zero-point shift applied) of every named quantized tensor of one run;
    ``<name>|fused`` holds the value after the single-use clamps that follow it, which is what a
    file holds under ``<name>`` when it folds them into the op."""
    import torch

    found: dict[str, np.ndarray] = {}
    modules = dict(traced.graph_module.named_modules())
    for node in traced.graph_module.graph.nodes:
        value = values.get(node.name)
        ints = _as_int8(value) if isinstance(value, torch.Tensor) and value.is_quantized else None
        if ints is None:
            continue
        name = traced.names[node.name]
        found[name] = ints
        end = node
        while len(end.users) == 1 and _foldable(next(iter(end.users)), modules):
            end = next(iter(end.users))
        folded = values.get(end.name)
        if end is not node and isinstance(folded, torch.Tensor) and folded.is_quantized:
            ints = _as_int8(folded)
            if ints is not None:
                found[f"{name}|fused"] = ints
    return found


def _foldable(node: torch.fx.Node, modules: Mapping[str, Any]) -> bool:
    if node.op == "call_module":
        return type(modules[str(node.target)]).__name__ in _FOLDABLE_MODULES
    name = getattr(node.target, "__name__", str(node.target))
    return node.op in ("call_function", "call_method") and str(name) in _FOLDABLE_CALLS


def _stacked(samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """name -> (samples, ...) for the names every sample holds with one shape."""
    import numpy as np

    names = [n for n in samples[0] if all(n in s and s[n].shape == samples[0][n].shape for s in samples)]
    return {n: np.stack([s[n] for s in samples]) for n in names}


def _as_float(tensor: torch.Tensor) -> np.ndarray:
    import numpy as np

    if tensor.is_quantized:
        tensor = tensor.dequantize()
    return np.asarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def _as_int8(tensor: Any) -> np.ndarray | None:
    """A per-tensor quantized tensor's integers as TFLite int8 holds them (zero-point shift applied)."""
    import numpy as np

    if tensor is None or str(tensor.dtype) not in ZERO_POINT_SHIFT:
        return None
    ints = tensor.int_repr().numpy().astype(np.int32) + ZERO_POINT_SHIFT[str(tensor.dtype)]
    return np.asarray(ints, dtype=np.int8)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
