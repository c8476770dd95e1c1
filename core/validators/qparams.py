"""The ``qparams`` validator: are a QAT model's TFLite quantization parameters PyTorch's own?

Runs on ``--quant qat`` attempts, in the shared ``litert-runtime`` environment (the numeric
validator's), beside the numeric validator. It reads what the reference stage wrote for an
eager QAT model next to ``reference.npz`` (``liteport.stages.qat_reference``): ``qparams.json``
(every quantized tensor of PyTorch's ``convert``-ed model, as it ran) and
``reference_int8.npz`` (that int8 model's outputs on the validation inputs).

Checks, all required to pass:

* **Parameters**: every quantized tensor of the .tflite (read with
  ``ai_edge_litert.tools.flatbuffer_utils``) is looked up by name (``<name>`` or a helper
  ``<name>:<role>`` that carries ``<name>``'s parameters) and must match PyTorch's: same number
  of scales, each within 1e-6 relative difference, zero points equal after the documented shift
  (``quint8`` -> int8: minus 128; ``qint8`` and int32 biases: unchanged), int8 (int32 for
  biases). Every point PyTorch *learned* (stubs, convs, linears, QFunctional ops) must be in the
  file; inherited ones (ReLU, pooling, reshape) may have been fused away.
* **Agreement with PyTorch's int8 model**: the .tflite runs on the validation inputs (fed
  PyTorch's own quantized inputs when its input parameters are PyTorch's, so both start from
  the same integers); for each output, the difference to PyTorch's int8 output in steps of
  PyTorch's output scale. At least 99% of elements within one step and none beyond two.

Metrics: ``qparams_matched`` / ``qparams_total``, ``qparams_missing`` (learned points absent),
``qparams_mismatches`` (first few, one line each), ``int8_within_1_step``, ``int8_max_steps``.
Thresholds can be overridden with ``job.options["qparams_thresholds"]`` (keys
``min_within_1_step``, ``max_steps``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from liteport.errors import ValidatorError
from liteport.hookspecs import hookimpl
from liteport.stages.qat_reference import (
    QPARAMS_JSON,
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
    matched, mismatches, missing = compare(pytorch, in_file)
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
            f"(< {min_within:.0%})"
        )
    if not agreement["int8_max_steps"] <= max_steps:
        misses.append(
            f"an output is {agreement['int8_max_steps']:g} steps from PyTorch's int8 model (> {max_steps:g})"
        )
    metrics = {
        "qparams_matched": matched,
        "qparams_total": len(in_file),
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


def _agreement(
    tflite: Path, reference: Path, int8_npz: Path, opts: Mapping[str, Any], pytorch_steps: list[Any]
) -> dict[str, Any]:
    """Steps between the .tflite's outputs and PyTorch's int8 outputs, over all validation samples."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from liteport.validators import metrics  # numpy: not on the host at registration

    inputs, _ = _load_reference(reference)
    with np.load(int8_npz, allow_pickle=False) as data:
        outputs = sorted(k for k in data.files if k.startswith("output_"))
        expected = [np.asarray(data[f"output_{j}"]) for j in range(len(outputs))]
        # PyTorch's own quantized inputs when recorded: both models then start from the same ints.
        qinputs = {
            i: np.asarray(data[f"qinput_{i}"]) for i in range(len(inputs)) if f"qinput_{i}" in data.files
        }
        qparams_in = {
            i: np.asarray(data[f"qinput_{i}_params"]) for i in qinputs if f"qinput_{i}_params" in data.files
        }
    interp = Interpreter(model_path=str(tflite), num_threads=int(opts.get("num_threads") or 1))
    interp.allocate_tensors()
    in_details, out_details = interp.get_input_details(), interp.get_output_details()
    if len(in_details) != len(inputs) or len(out_details) != len(expected):
        raise ValidatorError(
            f"{tflite.name} has {len(in_details)} inputs / {len(out_details)} outputs, "
            f"PyTorch's int8 model {len(inputs)} / {len(expected)}"
        )
    nhwc_in = opts.get("input_layout") == "NHWC"
    nhwc_out = opts.get("output_layout") == "NHWC"
    steps: list[Any] = []
    per_output = []
    # Steps are PyTorch's output steps (the file's own when the reference predates output_scales).
    step_sizes = [
        float(pytorch_steps[j])
        if j < len(pytorch_steps) and pytorch_steps[j]
        else float(d["quantization"][0])
        for j, d in enumerate(out_details)
    ]
    if not all(s > 0 for s in step_sizes):
        raise ValidatorError(f"an output of {tflite.name} has no quantization step to measure in")

    def same_int8_input(i: int, detail: Mapping[str, Any]) -> bool:
        # PyTorch's quantized input fits only a file whose input has the same parameters.
        if i not in qinputs or detail["dtype"] != np.int8 or i not in qparams_in:
            return False
        scale, zero_point = detail["quantization"]
        return scales_match([float(qparams_in[i][0])], [float(scale)]) and int(qparams_in[i][1]) == int(
            zero_point
        )

    for k in range(int(inputs[0].shape[0])):
        for i, (x, detail) in enumerate(zip(inputs, in_details)):
            exact = same_int8_input(i, detail)
            given = qinputs[i][k] if exact else x[k]
            sample = metrics.nchw_to_nhwc(given) if nhwc_in and given.ndim == 4 else given
            scale, zero_point = detail["quantization"]
            if exact:
                interp.set_tensor(detail["index"], np.ascontiguousarray(sample, dtype=np.int8))
            else:
                interp.set_tensor(
                    detail["index"], metrics.to_input_dtype(sample, detail["dtype"], scale, zero_point)
                )
        interp.invoke()
        for j, detail in enumerate(out_details):
            scale, zero_point = detail["quantization"]
            got = metrics.from_output_dtype(interp.get_tensor(detail["index"]), scale, zero_point)
            if nhwc_out and got.ndim == 4:
                got = metrics.nhwc_to_nchw(got)
            diff = np.abs(got - expected[j][k].astype(np.float64)) / step_sizes[j]
            steps.append((j, diff))
    for j in range(len(out_details)):
        diffs = np.concatenate([d.reshape(-1) for i, d in steps if i == j])
        per_output.append(
            {
                "within_1_step": float(np.mean(diffs <= 1 + _STEP_SLACK)),
                "max_steps": float(np.round(diffs.max(), 3)),
                "mean_steps": float(diffs.mean()),
            }
        )
    return {
        "int8_within_1_step": min(o["within_1_step"] for o in per_output),
        "int8_max_steps": max(o["max_steps"] for o in per_output),
        "int8_outputs": per_output,
    }
