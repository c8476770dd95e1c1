# Over 400 lines on purpose: one validation (qparams, outputs, first departure) read top to bottom.
"""The ``qparams`` validator: are a QAT model's TFLite quantization parameters PyTorch's own, and
does the file compute what PyTorch's int8 model computes, on the kernels users run?

Runs on ``--quant qat`` attempts, in the shared ``litert-runtime`` environment (the numeric
validator's), beside the numeric validator. It reads what the reference stage wrote for an
eager QAT model next to ``reference.npz`` (``liteport.stages.qat_reference``): ``qparams.json``
(every quantized tensor of PyTorch's ``convert``-ed model, as it ran), ``reference_int8.npz``
(that int8 model's outputs on the validation inputs) and ``reference_int8_layers.npz`` (its
named intermediate tensors, to find where a file departs from it).

Checks, all required to pass:

* **Parameters**: every quantized tensor of the .tflite (read with
  ``ai_edge_litert.tools.flatbuffer_utils``) is looked up by name (``<name>`` or a helper
  ``<name>:<role>`` that carries ``<name>``'s parameters) and must match PyTorch's: same number
  of scales, each within 1e-6 relative difference, zero points equal after the documented shift
  (``quint8`` -> int8: minus 128; ``qint8`` and int32 biases: unchanged), int8 (int32 for
  biases). Every point PyTorch *learned* (stubs, convs, linears, QFunctional ops) must be in the
  file; inherited ones (ReLU, pooling, reshape) may have been fused away. Constant filters a
  converter derives itself (roles ``avg.weight``/``avg.bias``, ``rescale.weight``/``rescale.bias``:
  pooling and requantization written as depthwise convolutions) have no PyTorch counterpart; they
  are counted apart and must be symmetric int8 / int32 with zero point 0.
* **Agreement with PyTorch's int8 model**, on two kernel sets: the default delegate (XNNPACK,
  what phones and the default interpreter run: the verdict) and TFLite's reference kernels
  (``OpResolverType.BUILTIN_REF``, shown beside it). The .tflite runs on the validation inputs
  (fed PyTorch's own quantized inputs when its input parameters are PyTorch's, so both start
  from the same integers); for each output, the difference to PyTorch's int8 output in steps of
  PyTorch's output scale. At least 99% of elements within one step and none beyond two. Per
  kernel set, the first op whose output differs from PyTorch's tensor of the same name.

Metrics: ``qparams_matched`` / ``qparams_total``, ``qparams_derived``, ``qparams_missing``
(learned points absent), ``qparams_mismatches`` (first few, one line each); on the default
delegate ``int8_within_1_step``, ``int8_max_steps``, ``int8_exact``, ``int8_first_deviation``
(op index, op, tensor, its exact share and max steps; None when every tensor matches); the same
with a ``_reference`` suffix for the reference kernels; ``int8_kernels`` holds both in full.
Thresholds can be overridden with ``job.options["qparams_thresholds"]`` (keys
``min_within_1_step``, ``max_steps``).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from liteport.errors import ValidatorError
from liteport.hookspecs import hookimpl
from liteport.stages.qat_reference import (
    QPARAMS_JSON,
    REFERENCE_INT8_LAYERS_NPZ,
    REFERENCE_INT8_NPZ,
    ZERO_POINT_SHIFT,
    int8_zero_point,
    scales_match,
)
from liteport.types import ErrorInfo, Job, Result, ValidatorInfo
from liteport.validators.numeric import _load_reference, environment

NAME = "qparams"
VERSION = "0.1.0"
SCALE_RTOL = 1e-6
MIN_WITHIN_ONE_STEP = 0.99
MAX_STEPS = 2.0
_SHOWN_MISMATCHES = 5
_STEP_SLACK = 1e-3  # float32 rounding of dequantized values: 1.0 step measured as 1.0000001
# Kernel sets measured: name -> ai_edge_litert OpResolverType. The verdict is the default
# delegate's (XNNPACK), what phones and the default interpreter run.
KERNEL_SETS = {"xnnpack": "AUTO", "reference": "BUILTIN_REF"}
VERDICT_KERNELS = "xnnpack"
# Roles of constant filters the transplant derives (pooling, requantization as depthwise convs).
DERIVED_ROLES = ("avg.weight", "avg.bias", "rescale.weight", "rescale.bias")


@hookimpl
def liteport_validators() -> list[ValidatorInfo]:
    return [
        ValidatorInfo(
            name=NAME,
            version=VERSION,
            environment=environment(),
            modes=("qat",),
            description="TFLite qparams vs PyTorch's QAT ones; agreement with PyTorch's int8 model",
        )
    ]


@hookimpl
def liteport_validate(job: Job) -> Result:
    return _validate(job)


def read_tflite_qparams(path: Path) -> dict[str, dict[str, Any]]:
    """name -> {dtype, scale, zero_point, axis} of every quantized tensor of a .tflite file."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    found: dict[str, dict[str, Any]] = {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            q = tensor.quantization
            if q is None or q.scale is None or len(q.scale) == 0:
                continue
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            found[name] = {
                "dtype": flatbuffer_utils.type_to_name(tensor.type),
                "scale": [float(s) for s in q.scale],
                "zero_point": [int(z) for z in q.zeroPoint],
                "axis": int(q.quantizedDimension),
            }
    return found


def compare(
    pytorch: Mapping[str, Mapping[str, Any]], tflite: Mapping[str, Mapping[str, Any]]
) -> tuple[int, list[str], list[str]]:
    """(matched count, mismatch messages, learned PyTorch points missing from the file)."""
    matched = 0
    mismatches: list[str] = []
    for name, got in tflite.items():
        base = name.split(":", 1)[0]
        want = pytorch.get(base)
        if want is None:
            mismatches.append(f"{name}: no PyTorch tensor of that name")
            continue
        dtype = str(want["dtype"])
        expected_zp = [
            int8_zero_point(z, dtype) if dtype in ZERO_POINT_SHIFT else int(z) for z in want["zero_point"]
        ]
        expected_type = "INT32" if want.get("kind") == "bias" else "INT8"
        if str(got["dtype"]).upper() != expected_type:
            mismatches.append(f"{name}: stored as {got['dtype']}, expected {expected_type}")
        elif not scales_match(want["scale"], got["scale"], SCALE_RTOL):
            mismatches.append(f"{name}: scale {_short(got['scale'])} vs PyTorch {_short(want['scale'])}")
        elif [int(z) for z in got["zero_point"]] != expected_zp:
            mismatches.append(
                f"{name}: zero point {_short(got['zero_point'])} vs PyTorch {_short(want['zero_point'])} "
                f"({dtype}, int8 {_short(expected_zp)})"
            )
        else:
            matched += 1
    present = {name.split(":", 1)[0] for name in tflite}
    missing = [n for n, t in pytorch.items() if t.get("learned") and n not in present]
    return matched, mismatches, missing


def split_derived(
    tflite: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, Mapping[str, Any]], int, list[str]]:
    """(tensors to check against PyTorch, count of derived constant filters, malformed ones)."""
    checked: dict[str, Mapping[str, Any]] = {}
    derived, malformed = 0, []
    for name, got in tflite.items():
        role = name.rsplit(":", 1)[-1] if ":" in name else ""
        if role not in DERIVED_ROLES:
            checked[name] = got
            continue
        derived += 1
        wanted = "INT32" if role.endswith(".bias") else "INT8"
        if str(got["dtype"]).upper() != wanted or any(int(z) != 0 for z in got["zero_point"]):
            malformed.append(f"{name}: a derived {role} must be {wanted} with zero point 0")
    return checked, derived, malformed


def _short(values: Any) -> str:
    items = list(values)
    shown = ", ".join(f"{v:.7g}" if isinstance(v, float) else str(v) for v in items[:3])
    return f"[{shown}{', ...' if len(items) > 3 else ''}] ({len(items)})"


def _validate(job: Job) -> Result:
    started = time.perf_counter()
    opts: Mapping[str, Any] = job.options or {}
    tflite = Path(opts.get("tflite") or Path(job.workdir) / "model.tflite")
    reference = Path(opts.get("reference") or Path(job.workdir).parent / "reference.npz")
    run_dir = reference.parent
    qjson, int8_npz = run_dir / QPARAMS_JSON, run_dir / REFERENCE_INT8_NPZ
    if not qjson.is_file() or not int8_npz.is_file():
        raise ValidatorError(
            f"no PyTorch int8 reference ({QPARAMS_JSON}, {REFERENCE_INT8_NPZ}) in {run_dir}: the model "
            "is not eager-mode QAT or its converted model did not run (see the reference facts)"
        )
    if not tflite.is_file():
        raise ValidatorError(f"no model file at {tflite}")
    document = json.loads(qjson.read_text(encoding="utf-8"))
    pytorch: dict[str, dict[str, Any]] = document["tensors"]
    try:
        in_file = read_tflite_qparams(tflite)
    except Exception as exc:
        raise ValidatorError(f"{tflite.name} is not a readable TFLite flatbuffer: {exc}") from exc
    checked, derived, malformed = split_derived(in_file)
    matched, mismatches, missing = compare(pytorch, checked)
    mismatches = malformed + mismatches
    agreement = _agreement(tflite, reference, int8_npz, opts, list(document.get("output_scales") or []))

    limits = dict(opts.get("qparams_thresholds") or {})
    min_within = float(limits.get("min_within_1_step", MIN_WITHIN_ONE_STEP))
    max_steps = float(limits.get("max_steps", MAX_STEPS))
    misses = []
    if mismatches:
        misses.append(
            f"{len(mismatches)} of {len(in_file)} quantized tensors differ from PyTorch: {mismatches[0]}"
        )
    if missing:
        misses.append(
            f"{len(missing)} PyTorch quantization points missing from the file: {', '.join(missing[:3])}"
        )
    if not agreement["int8_within_1_step"] >= min_within:
        misses.append(
            f"{agreement['int8_within_1_step']:.2%} of outputs within one step of PyTorch's int8 model "
            f"on XNNPACK (< {min_within:.0%}){_where(agreement['int8_first_deviation'])}"
        )
    if not agreement["int8_max_steps"] <= max_steps:
        misses.append(
            f"an output is {agreement['int8_max_steps']:g} steps from PyTorch's int8 model on XNNPACK "
            f"(> {max_steps:g}){_where(agreement['int8_first_deviation'])}"
        )
    metrics = {
        "qparams_matched": matched,
        "qparams_total": len(checked),
        "qparams_derived": derived,
        "qparams_pytorch": len(pytorch),
        "qparams_missing": missing,
        "qparams_mismatches": mismatches[:_SHOWN_MISMATCHES],
        "quantized_engine": document.get("engine"),
        **agreement,
        "qparams_misses": misses,
    }
    error = None
    if misses:
        extra = f" (+{len(misses) - 1} more)" if len(misses) > 1 else ""
        error = ErrorInfo(kind="validation_failed", message=misses[0] + extra, detail="\n".join(misses))
    return Result(
        status="invalid" if misses else "ok",
        job_id=job.id,
        kind=job.kind,
        error=error,
        metrics=metrics,
        timings={"qparams_validate_s": round(time.perf_counter() - started, 3)},
    )


def _where(first: Mapping[str, Any] | None) -> str:
    if not first:
        return ""
    where = f"op {first['op_index']} {first['op']} ({first['tensor']}, max {first['max_steps']} steps)"
    return f"; first departs at {where}"


def _agreement(
    tflite: Path, reference: Path, int8_npz: Path, opts: Mapping[str, Any], pytorch_steps: list[Any]
) -> dict[str, Any]:
    """Steps between the .tflite's outputs and PyTorch's int8 outputs on each kernel set, and the
    first op where each departs from PyTorch. The flat ``int8_*`` figures are the default
    delegate's (XNNPACK: what users run), ``int8_*_reference`` the reference kernels'."""
    feed = _Feed.load(reference, int8_npz, opts)
    layers = _load_layers(int8_npz.parent / REFERENCE_INT8_LAYERS_NPZ)
    kernels: dict[str, dict[str, Any]] = {}
    for name in KERNEL_SETS:
        outputs = _run_outputs(tflite, name, feed, pytorch_steps, opts)
        first = _first_deviation(tflite, name, feed, layers, opts) if layers is not None else None
        kernels[name] = {**_summary(outputs), "outputs": outputs, "first_deviation": first}
    verdict, other = kernels[VERDICT_KERNELS], kernels["reference"]
    return {
        "int8_within_1_step": verdict["within_1_step"],
        "int8_max_steps": verdict["max_steps"],
        "int8_exact": verdict["exact"],
        "int8_outputs": verdict["outputs"],
        "int8_first_deviation": verdict["first_deviation"],
        "int8_within_1_step_reference": other["within_1_step"],
        "int8_max_steps_reference": other["max_steps"],
        "int8_exact_reference": other["exact"],
        "int8_first_deviation_reference": other["first_deviation"],
        "int8_kernels": kernels,
    }


def _summary(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "within_1_step": min(o["within_1_step"] for o in outputs),
        "max_steps": max(o["max_steps"] for o in outputs),
        "exact": min(o["exact"] for o in outputs),
    }


class _Feed:
    """The validation inputs as the .tflite takes them: PyTorch's own quantized integers when the
    file's input parameters are PyTorch's (both models then start from the same ints), else the
    float inputs quantized with the file's parameters; and PyTorch's int8 outputs."""

    def __init__(
        self,
        inputs: list[Any],
        expected: list[Any],
        qinputs: dict[int, Any],
        qparams_in: dict[int, Any],
        nhwc: tuple[bool, bool],
    ) -> None:
        self.inputs, self.expected = inputs, expected
        self.qinputs, self.qparams_in = qinputs, qparams_in
        self.nhwc_in, self.nhwc_out = nhwc
        self.samples = int(inputs[0].shape[0])

    @classmethod
    def load(cls, reference: Path, int8_npz: Path, opts: Mapping[str, Any]) -> _Feed:
        import numpy as np

        inputs, _ = _load_reference(reference)
        with np.load(int8_npz, allow_pickle=False) as data:
            outputs = sorted(k for k in data.files if k.startswith("output_"))
            expected = [np.asarray(data[f"output_{j}"]) for j in range(len(outputs))]
            qinputs = {
                i: np.asarray(data[f"qinput_{i}"]) for i in range(len(inputs)) if f"qinput_{i}" in data.files
            }
            qparams_in = {
                i: np.asarray(data[f"qinput_{i}_params"])
                for i in qinputs
                if f"qinput_{i}_params" in data.files
            }
        nhwc = (opts.get("input_layout") == "NHWC", opts.get("output_layout") == "NHWC")
        return cls(inputs, expected, qinputs, qparams_in, nhwc)

    def set_inputs(self, interp: Any, details: list[dict[str, Any]], k: int) -> None:
        import numpy as np

        from liteport.validators import metrics  # numpy: not on the host at registration

        for i, (x, detail) in enumerate(zip(self.inputs, details)):
            exact = self._same_int8_input(i, detail)
            given = self.qinputs[i][k] if exact else x[k]
            sample = metrics.nchw_to_nhwc(given) if self.nhwc_in and given.ndim == 4 else given
            if exact:
                interp.set_tensor(detail["index"], np.ascontiguousarray(sample, dtype=np.int8))
            else:
                scale, zero_point = detail["quantization"]
                interp.set_tensor(
                    detail["index"], metrics.to_input_dtype(sample, detail["dtype"], scale, zero_point)
                )

    def _same_int8_input(self, i: int, detail: Mapping[str, Any]) -> bool:
        import numpy as np

        # PyTorch's quantized input fits only a file whose input has the same parameters.
        if i not in self.qinputs or detail["dtype"] != np.int8 or i not in self.qparams_in:
            return False
        scale, zero_point = detail["quantization"]
        given = self.qparams_in[i]
        return scales_match([float(given[0])], [float(scale)]) and int(given[1]) == int(zero_point)


def _interpreter(path: Path, kernels: str, opts: Mapping[str, Any]) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = getattr(OpResolverType, KERNEL_SETS[kernels])
    interp = Interpreter(
        model_path=str(path),
        num_threads=int(opts.get("num_threads") or 1),
        experimental_op_resolver_type=resolver,
    )
    interp.allocate_tensors()
    return interp


def _run_outputs(
    tflite: Path, kernels: str, feed: _Feed, pytorch_steps: list[Any], opts: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Per output: within-one-step share, exact share, max and mean steps over all samples."""
    import numpy as np

    from liteport.validators import metrics

    interp = _interpreter(tflite, kernels, opts)
    in_details, out_details = interp.get_input_details(), interp.get_output_details()
    if len(in_details) != len(feed.inputs) or len(out_details) != len(feed.expected):
        raise ValidatorError(
            f"{tflite.name} has {len(in_details)} inputs / {len(out_details)} outputs, "
            f"PyTorch's int8 model {len(feed.inputs)} / {len(feed.expected)}"
        )
    # Steps are PyTorch's output steps (the file's own when the reference predates output_scales).
    step_sizes = [
        float(pytorch_steps[j])
        if j < len(pytorch_steps) and pytorch_steps[j]
        else float(d["quantization"][0])
        for j, d in enumerate(out_details)
    ]
    if not all(s > 0 for s in step_sizes):
        raise ValidatorError(f"an output of {tflite.name} has no quantization step to measure in")
    diffs: list[list[Any]] = [[] for _ in out_details]
    for k in range(feed.samples):
        feed.set_inputs(interp, in_details, k)
        interp.invoke()
        for j, detail in enumerate(out_details):
            scale, zero_point = detail["quantization"]
            got = metrics.from_output_dtype(interp.get_tensor(detail["index"]), scale, zero_point)
            if feed.nhwc_out and got.ndim == 4:
                got = metrics.nhwc_to_nchw(got)
            diffs[j].append(
                (np.abs(got - feed.expected[j][k].astype(np.float64)) / step_sizes[j]).reshape(-1)
            )
    return [_steps(np.concatenate(d)) for d in diffs]


def _steps(diffs: Any) -> dict[str, Any]:
    import numpy as np

    return {
        "within_1_step": float(np.mean(diffs <= 1 + _STEP_SLACK)),
        "exact": float(np.mean(diffs <= _STEP_SLACK)),
        "max_steps": float(np.round(diffs.max(), 3)),
        "mean_steps": float(diffs.mean()),
    }


# -- where the file first departs from PyTorch ------------------------------------------------


def _load_layers(path: Path) -> dict[str, Any] | None:
    """PyTorch's int8 value of every named quantized tensor (``name``; ``name|fused`` after the
    clamps a converter folds into the op), all validation samples; None when not recorded."""
    import numpy as np

    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: np.asarray(data[k]) for k in data.files}


def _first_deviation(
    tflite: Path, kernels: str, feed: _Feed, layers: Mapping[str, Any], opts: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The first op (in the file's order) whose int8 output differs from PyTorch's own tensor."""
    import numpy as np

    probes = _probes(tflite)
    if not probes:
        return None
    with tempfile.TemporaryDirectory(prefix="liteport-qparams-") as tmp:
        opened = _with_outputs(tflite, [p.tensor for p in probes], Path(tmp) / "probed.tflite")
        interp = _interpreter(opened, kernels, opts)
        by_tensor = {d["name"]: d["index"] for d in interp.get_output_details()}
        in_details = interp.get_input_details()
        found: dict[str, list[Any]] = {}
        for k in range(feed.samples):
            feed.set_inputs(interp, in_details, k)
            interp.invoke()
            for probe in probes:
                want = layers.get(probe.key(layers))
                index = by_tensor.get(probe.name)
                if want is None or index is None:
                    continue
                got = interp.get_tensor(index).astype(np.int32)
                expected = _as_laid_out(want[k], got.shape)
                if expected is None:
                    continue
                found.setdefault(probe.name, []).append(np.abs(got - expected.astype(np.int32)).reshape(-1))
    for probe in probes:
        if probe.name in found:
            d = np.concatenate(found[probe.name])
            if d.max() > 0:
                return {
                    "op_index": probe.op_index,
                    "op": probe.op,
                    "tensor": probe.name,
                    "exact": float(np.mean(d == 0)),
                    "within_1_step": float(np.mean(d <= 1)),
                    "max_steps": int(d.max()),
                }
    return None


def _as_laid_out(expected: Any, shape: Any) -> Any:
    """PyTorch's NCHW tensor in the file's layout (its inner 4-D tensors are NHWC), or None when
    the shapes do not fit. NHWC is tried first: with C = H = W (or C = H) both layouts have one
    shape, and comparing against the untransposed tensor then reports a departure that is not
    there (issue 15: MobileNetV2's 32-channel 32x32 stem measured "25% exact, 122 steps")."""
    if expected.ndim == 4 and len(shape) == 4:
        nhwc = expected.transpose(0, 2, 3, 1)
        if tuple(nhwc.shape) == tuple(shape):
            return nhwc
    return expected if tuple(expected.shape) == tuple(shape) else None


class _Probe:
    """An op's int8 output tensor named after a PyTorch tensor, and whether a clamp is folded in."""

    def __init__(self, op_index: int, op: str, tensor: int, name: str, fused: bool) -> None:
        self.op_index, self.op, self.tensor, self.name, self.fused = op_index, op, tensor, name, fused

    def key(self, layers: Mapping[str, Any]) -> str:
        folded = f"{self.name}|fused"
        return folded if self.fused and folded in layers else self.name


def _probes(tflite: Path) -> list[_Probe]:
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite))
    subgraph = model.subgraphs[0]
    codes = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    probes = []
    for index, op in enumerate(subgraph.operators):
        code = codes.get(model.operatorCodes[op.opcodeIndex].builtinCode, "?")
        fused = getattr(op.builtinOptions, "fusedActivationFunction", 0) not in (0, None)
        for tensor in op.outputs:
            t = subgraph.tensors[int(tensor)]
            name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            if ":" not in name and t.type == fb.TensorType.INT8:
                probes.append(_Probe(index, code, int(tensor), name, fused))
    return probes


def _with_outputs(tflite: Path, tensors: list[int], path: Path) -> Path:
    """A copy of the file whose subgraph also outputs ``tensors`` (so a delegate materialises them)."""
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite))
    subgraph = model.subgraphs[0]
    outputs = [int(t) for t in subgraph.outputs]
    subgraph.outputs = np.asarray(outputs + [t for t in tensors if t not in outputs], dtype=np.int32)
    flatbuffer_utils.write_model(model, str(path))
    return path
