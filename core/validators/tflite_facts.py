"""Facts about a .tflite file: size, op inventory, I/O tensors, latency.

Op counts come from the flatbuffer itself (every operator of every subgraph), not from the
interpreter, whose node list also holds the delegate kernels (XNNPACK) it adds. Imports of
ai_edge_litert happen inside functions: this module is worker-only but cheap to import.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

# Ops worth a column of their own in reports: layout shuffles and (de)quantization cost time.
WATCHED_OPS = ("TRANSPOSE", "QUANTIZE", "DEQUANTIZE")
DELEGATE_NODE = "DELEGATE"  # the interpreter's name for a node that runs a delegated partition


def op_inventory(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Count the operators of a .tflite file by name, with TRANSPOSE/(DE)QUANTIZE/custom/Flex totals.

    Custom ops are named by their custom code; Flex ops (TensorFlow kernels, which the plain
    LiteRT runtime cannot run) are custom ops whose code starts with "Flex".
    """
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as handle:
        buf = bytearray(handle.read())
    if buf[4:8] != b"TFL3":
        raise ValueError("no TFL3 file identifier")
    # Lazy (non-object) API: reads the op table without copying weight buffers.
    model = schema.Model.GetRootAs(buf, 0)
    code_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    opcodes: list[tuple[str, bool]] = []  # (name, is_custom) per operator-code index
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            raw = code.CustomCode()
            name = raw.decode("utf-8", "replace") if raw else "CUSTOM"
            opcodes.append((name, True))
        else:
            opcodes.append((code_names.get(builtin, f"BUILTIN_{builtin}"), False))
    counts: Counter[str] = Counter()
    custom: Counter[str] = Counter()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for j in range(subgraph.OperatorsLength()):
            name, is_custom = opcodes[subgraph.Operators(j).OpcodeIndex()]
            counts[name] += 1
            if is_custom:
                custom[name] += 1
    flex = {k: v for k, v in custom.items() if k.startswith("Flex")}
    return {
        "op_counts": dict(sorted(counts.items())),
        "num_ops": sum(counts.values()),
        "subgraphs": model.SubgraphsLength(),
        **{f"{op.lower()}_ops": counts.get(op, 0) for op in WATCHED_OPS},
        "custom_ops": sum(custom.values()) - sum(flex.values()),
        "flex_ops": sum(flex.values()),
        "custom_op_names": sorted(k for k in custom if k not in flex),
        "flex_op_names": sorted(flex),
    }


def tensor_facts(details: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Name, shape, dtype and (scale, zero point) of interpreter input/output details."""
    facts = []
    for d in details:
        scale, zero_point = d.get("quantization", (0.0, 0))
        facts.append(
            {
                "name": str(d["name"]),
                "shape": [int(x) for x in d["shape"]],
                "dtype": _dtype_name(d["dtype"]),
                "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None,
            }
        )
    return facts


def measure_latency(interpreter: Any, runs: int, warmup: int = 5) -> dict[str, float]:
    """Median and p90 wall time (ms) of ``interpreter.invoke()`` on the inputs already set."""
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    # Nearest-rank p90: a measured value, no interpolation between runs.
    p90 = times[min(len(times) - 1, max(0, round(0.9 * len(times)) - 1))]
    return {
        "latency_ms": statistics.median(times),
        "latency_p90_ms": p90,
        "latency_min_ms": times[0],
    }


def ops_outside_delegate(interpreter: Any) -> dict[str, int]:
    """Count, by op name, the nodes ``interpreter`` runs itself rather than in a delegate (XNNPACK).

    The interpreter lists the model's nodes, then one ``DELEGATE`` node per partition it handed
    over, whose inputs and outputs are the partition's boundary tensors. A partition's nodes are
    found by walking back from its outputs to their producers until its inputs; every node in no
    partition runs on the built-in kernels (hybrid depthwise convolutions of a dynamic-range model
    on XNNPACK, for one). No delegate at all: every node is outside.
    """
    # The public API has no execution plan; the wrapper's node calls are what _get_ops_details uses.
    wrapper = interpreter._interpreter
    nodes = [
        (
            str(wrapper.NodeName(i)),
            [int(t) for t in wrapper.NodeInputs(i)],
            [int(t) for t in wrapper.NodeOutputs(i)],
        )
        for i in range(wrapper.NumNodes())
    ]
    partitions = [(inputs, outputs) for name, inputs, outputs in nodes if name == DELEGATE_NODE]
    producer = {t: i for i, (name, _, outputs) in enumerate(nodes) if name != DELEGATE_NODE for t in outputs}
    delegated: set[int] = set()
    for inputs, outputs in partitions:
        boundary = set(inputs)
        pending = list(outputs)
        while pending:
            node = producer.get(pending.pop())
            if node is None or node in delegated:
                continue
            delegated.add(node)
            pending += [t for t in nodes[node][1] if t >= 0 and t not in boundary]
    outside = Counter(
        name for i, (name, _, _) in enumerate(nodes) if name != DELEGATE_NODE and i not in delegated
    )
    return dict(sorted(outside.items()))


def file_size(path: str | os.PathLike[str]) -> int:
    return os.path.getsize(path)


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "__name__", None)
    return str(name if name is not None else dtype)
