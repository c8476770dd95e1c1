"""The TFLite side of ``liteport explain``: every intermediate tensor, matched and judged per layer.

Runs in the validation runtime (a current ai-edge-litert). The model runs with
``experimental_preserve_all_tensors=True`` and the *default* op resolver: XNNPACK then runs op by
op and every op's output stays readable, bit-identical at the output to the validator's run (the
reference kernels would drift from it on int8 models). Every op output is dequantized with its
own scale and zero point, per channel included. The samples are the ones the torch side captured,
fed the way the numeric validator feeds them (layout, quantization, signature order).

Then ``liteport.explain.match`` finds each module's tensor (with the float conversion's graph as
the anchor when one is given) and ``liteport.explain.layers`` computes the per-layer rows. Writes
``options["out"]`` (JSON: coverage, layers, first divergent with its ops and hint).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liteport.errors import ValidatorError
from liteport.explain.thresholds import layer_thresholds
from liteport.types import Job, Result

if TYPE_CHECKING:
    import numpy as np

    from liteport.explain.match import Matcher


def run_layers(job: Job) -> Result:
    """Run the target (and anchor) model on the captured samples, match and judge every layer."""
    import numpy as np

    from liteport.explain import layers as per_layer
    from liteport.explain.match import Matcher

    started = time.perf_counter()
    opts = job.options
    manifest = json.loads(Path(str(opts["activations"])).read_text(encoding="utf-8"))
    with np.load(str(opts["arrays"]), allow_pickle=False) as data:
        activations = {name: np.asarray(data[name]) for name in data.files}
    samples = int(manifest["samples"])
    reference_inputs = _reference_inputs(str(opts["reference"]), samples)
    thresholds = layer_thresholds(job.mode).updated(opts.get("layer_thresholds"))

    target = _Model(Path(str(opts["tflite"])), opts.get("input_layout"), opts.get("output_layout"), opts)
    graph, values = target.run(reference_inputs)
    matcher = Matcher(manifest, activations, graph, values, job.mode)
    anchor: Matcher | None = None
    if opts.get("anchor_tflite"):
        anchor_model = _Model(
            Path(str(opts["anchor_tflite"])),
            opts.get("anchor_input_layout"),
            opts.get("anchor_output_layout"),
            {k[len("anchor_") :]: v for k, v in opts.items() if k.startswith("anchor_")},
        )
        anchor_graph, anchor_values = anchor_model.run(reference_inputs)
        anchor = Matcher(manifest, activations, anchor_graph, anchor_values, "fp32")
        anchor.match_all(opts.get("anchor_tensor_map"))
    matcher.match_all(opts.get("tensor_map"), anchor)

    rows, first = per_layer.layer_rows(matcher, thresholds, per_layer.input_sqnr(matcher, reference_inputs))
    first_divergent = None
    if first is not None:
        first_divergent = {
            key: first.get(key)
            for key in ("module", "type", "tensor", "cosine", "sqnr_db", "max_abs", "sqnr_in_db", "added_db")
        }
        first_divergent["ops"] = per_layer.describe_ops(graph, first["op_indices"])
        labels = {match.tensor: key for key, match in matcher.matches.items()}
        first_divergent["hint"] = per_layer.dominant_channel_hint(graph, values, first["op_indices"], labels)
    coverage = matcher.coverage()
    document = {
        "samples": samples,
        "reference": manifest.get("reference", "float"),
        "thresholds": thresholds.to_dict(),
        "coverage": coverage,
        "anchor_coverage": anchor.coverage() if anchor is not None else None,
        "layers": [{k: v for k, v in row.items() if k != "op_indices"} for row in rows],
        "first_divergent": first_divergent,
        "notes": list(manifest.get("notes") or []),
        "tflite_ops": len(graph["ops"]),
    }
    out = Path(str(opts["out"]))
    out.write_text(json.dumps(_json_safe(document), indent=1) + "\n", encoding="utf-8")
    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"explain_layers": str(out)},
        facts={
            "matched_fraction": coverage["fraction"],
            "first_divergent": first_divergent["module"] if first_divergent else None,
        },
        timings={"layers_s": round(time.perf_counter() - started, 3)},
    )


def _reference_inputs(path: str, samples: int) -> list[np.ndarray]:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        keys = sorted((k for k in data.files if re.fullmatch(r"input_\d+", k)), key=lambda k: int(k[6:]))
        return [np.asarray(data[k][:samples]) for k in keys]


class _Model:
    """One .tflite run with every tensor kept: its graph (ops, tensors) and every op output."""

    def __init__(self, path: Path, input_layout: Any, output_layout: Any, opts: Mapping[str, Any]) -> None:
        if not path.is_file():
            raise ValidatorError(f"no model file at {path}")
        self.path = path
        self.input_layout = input_layout or "NCHW"
        self.output_layout = output_layout or "NCHW"
        self.input_names: Sequence[str] | None = opts.get("input_names")
        self.output_names: Sequence[str] | None = opts.get("output_names")

    def run(self, reference_inputs: Sequence[np.ndarray]) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(self.path), num_threads=1, experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
        ops, constants = _graph_ops(self.path)
        ins = _ordered(interp, "inputs", self.input_names)
        outs = _ordered(interp, "outputs", self.output_names)
        if len(ins) != len(reference_inputs):
            raise ValidatorError(f"model takes {len(ins)} inputs, the reference has {len(reference_inputs)}")
        producer = {int(t): op["index"] for op in ops for t in op["outputs"]}
        kept = sorted(set(producer) | set(ins))
        details = {t: interp._get_tensor_details(t, 0) for t in kept}
        layouts = _layouts(self.input_layout, len(ins))
        collected: dict[int, list[np.ndarray]] = {t: [] for t in kept}
        for s in range(int(reference_inputs[0].shape[0])):
            for tensor, ref, layout in zip(ins, reference_inputs, layouts):
                interp.set_tensor(tensor, _feed(ref, s, details[tensor], layout))
            interp.invoke()
            for t in kept:
                collected[t].append(_dequantize(interp.get_tensor(t), details[t]))
        tensors: dict[int, dict[str, Any]] = {}
        for t in kept:
            tensors[t] = _tensor_info(details[t], producer.get(t))
        # Constant inputs of ops (weights, biases): their quantization is part of a layer's story.
        for t in {int(t) for op in ops for t in op["inputs"]} - set(kept):
            if t in constants and t >= 0:
                info = _tensor_info(interp._get_tensor_details(t, 0), None)
                info["constant"] = True
                tensors[t] = info
        graph = {
            "tensors": tensors,
            "ops": ops,
            "inputs": ins,
            "outputs": outs,
            "output_layouts": _layouts(self.output_layout, len(outs)),
        }
        return graph, {t: np.stack(v) for t, v in collected.items()}


def _graph_ops(path: Path) -> tuple[list[dict[str, Any]], set[int]]:
    """Ops of subgraph 0 from the flatbuffer (op names, tensor indices) and its constant tensors."""
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(path.read_bytes())
    model = schema.Model.GetRootAs(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            raw = code.CustomCode()
            codes.append(raw.decode("utf-8", "replace") if raw else "CUSTOM")
        else:
            codes.append(names.get(builtin, f"BUILTIN_{builtin}"))
    subgraph = model.Subgraphs(0)
    ops = []
    for j in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(j)
        ops.append(
            {
                "index": j,
                "op": codes[op.OpcodeIndex()],
                "inputs": [int(op.Inputs(k)) for k in range(op.InputsLength())],
                "outputs": [int(op.Outputs(k)) for k in range(op.OutputsLength())],
            }
        )
    constants = set()
    for t in range(subgraph.TensorsLength()):
        buffer = subgraph.Tensors(t).Buffer()
        if buffer > 0 and model.Buffers(buffer).DataLength() > 0:
            constants.add(t)
    return ops, constants


def _tensor_info(detail: Mapping[str, Any], producer: int | None) -> dict[str, Any]:
    import numpy as np

    q = detail.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), dtype=np.float64)
    zeros = np.asarray(q.get("zero_points", []), dtype=np.int64)
    return {
        "name": str(detail["name"]),
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "producer": producer,
        "scales": scales.tolist(),
        "zero_points": zeros.tolist(),
        "axis": int(q.get("quantized_dimension", 0)),
    }


def _dequantize(array: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """Integer tensors with their own scale(s) and zero point(s) -> float32; floats as they are."""
    import numpy as np

    q = detail.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), dtype=np.float64)
    if not np.issubdtype(array.dtype, np.integer) or scales.size == 0:
        return np.asarray(array, dtype=np.float32).copy()
    zeros = np.asarray(q.get("zero_points", [0] * scales.size), dtype=np.float64)
    if scales.size > 1:  # per-channel: broadcast along the quantized dimension
        shape = [1] * array.ndim
        shape[int(q.get("quantized_dimension", 0))] = -1
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return ((array.astype(np.float64) - zeros) * scales).astype(np.float32)


def _feed(ref: np.ndarray, sample: int, detail: Mapping[str, Any], layout: str) -> np.ndarray:
    """Sample ``sample`` of a reference input, laid out and typed the way the model takes it."""
    import numpy as np

    rank = len(detail["shape"])
    x = ref[sample] if ref.ndim == rank + 1 else ref[sample : sample + 1]
    if layout == "NHWC" and x.ndim == 4:
        x = np.transpose(x, (0, 2, 3, 1))
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale > 0:
        v = np.asarray(x, dtype=np.float64) / scale
        rounded = np.sign(v) * np.floor(np.abs(v) + 0.5)  # half away from zero, like TFLite
        info = np.iinfo(dtype)
        return np.asarray(np.clip(rounded + zero_point, info.min, info.max).astype(dtype))
    return np.ascontiguousarray(x).astype(dtype)


def _layouts(value: Any, count: int) -> list[str]:
    layouts = [value] * count if isinstance(value, str) else list(value or [])
    return [str(v) for v in layouts] if len(layouts) == count else ["NCHW"] * count


def _ordered(interp: Any, which: str, names: Sequence[str] | None) -> list[int]:
    """Input/output tensors in PyTorch order: by names, else the signature (natural sort), else as listed."""
    details = list(interp.get_input_details() if which == "inputs" else interp.get_output_details())
    listed = [int(d["index"]) for d in details]
    signature: dict[str, int] = {}
    try:
        keys = list(interp.get_signature_list())
        if keys:
            runner = interp.get_signature_runner("serving_default" if "serving_default" in keys else keys[0])
            sig = runner.get_input_details() if which == "inputs" else runner.get_output_details()
            signature = {str(n): int(d["index"]) for n, d in sig.items()}
    except Exception:  # no usable signature: subgraph order
        signature = {}
    if signature and sorted(signature.values()) != sorted(listed):
        signature = {}
    if names:
        table = dict(signature)
        for d in details:
            plain = re.sub(r":\d+$", "", str(d["name"]))
            table.setdefault(plain.removeprefix("serving_default_"), int(d["index"]))
        if all(n in table for n in names) and len(names) == len(listed):
            return [table[n] for n in names]
    if signature:
        return [signature[n] for n in sorted(signature, key=_natural_key)]
    return listed


def _natural_key(name: str) -> list[Any]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None (not JSON); numpy scalars -> Python."""
    import math

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
