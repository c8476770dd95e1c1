"""The export stage: the PyTorch model as ONNX, for every backend that converts from ONNX.

Runs in a worker inside the torch environment (``torch-2.13``). Uses the legacy TorchScript
exporter (``dynamo=False``) at ``job.options["opset"]`` (default 13): the dynamo exporter
writes IR version 10 / opset 18, which onnx-tf's checker rejects (TF 2.8) or cannot run
(TF 2.15). Inputs are named ``input_<i>`` and outputs ``output_<j>`` like the reference
arrays, so later stages can map tensors by name. The file is checked with ``onnx.checker``
and written as ``<job.workdir>/model-opset<N>.onnx``; the pipeline runs this once per run
folder and reuses the file for every backend and environment. Failures raise ``ExportError``
naming the model.
"""

from __future__ import annotations

import collections
import time
import warnings
from pathlib import Path
from typing import Any

from liteport.errors import ExportError, describe_exception
from liteport.stages.modelref import load_model
from liteport.stages.tensors import flatten_outputs
from liteport.types import Job, Result

DEFAULT_OPSET = 13


def onnx_path(workdir: str | Path, opset: int) -> Path:
    """Where the export of a run folder at ``opset`` lives."""
    return Path(workdir) / f"model-opset{opset}.onnx"


def run_export(job: Job) -> Result:
    """Export ``job.model`` to ONNX at the job's opset; raise ExportError on failure."""
    import onnx
    import torch

    started = time.perf_counter()
    opset = int(job.options.get("opset", DEFAULT_OPSET))
    loaded = load_model(job.model)
    model = loaded.name
    args = tuple(loaded.example_inputs)
    with torch.no_grad():
        outputs = flatten_outputs(loaded.module(*args))
    input_names = [f"input_{i}" for i in range(len(args))]
    output_names = [f"output_{j}" for j in range(len(outputs))]
    loaded_at = time.perf_counter()

    path = onnx_path(job.workdir, opset)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".onnx.partial")  # a crash mid-export never leaves a file that looks complete
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings go to the log, not the result
            torch.onnx.export(
                loaded.module,
                args,
                str(partial),
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                do_constant_folding=True,
            )
    except Exception as exc:
        raise ExportError(
            f"{model}: ONNX export (opset {opset}) failed: {describe_exception(exc)}",
            hint="fix the model for torch.onnx.export, or use a backend that converts from PyTorch directly",
        ) from exc
    exported_at = time.perf_counter()
    try:
        proto = onnx.load(str(partial))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ExportError(
            f"{model}: the exported ONNX (opset {opset}) fails onnx.checker: {describe_exception(exc)}",
            hint="use a backend that converts from PyTorch directly",
        ) from exc
    partial.replace(path)
    finished = time.perf_counter()

    op_counts = collections.Counter(node.op_type for node in proto.graph.node)
    facts: dict[str, Any] = {
        "onnx_opset": opset,
        "onnx_ir_version": int(proto.ir_version),
        "onnx_input_names": [i.name for i in proto.graph.input],
        "onnx_output_names": [o.name for o in proto.graph.output],
        "onnx_nodes": len(proto.graph.node),
        "onnx_op_counts": dict(sorted(op_counts.items())),
        "onnx_bytes": path.stat().st_size,
    }
    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"onnx": str(path)},
        facts=facts,
        versions={"torch": str(torch.__version__), "onnx": str(onnx.__version__)},
        timings={
            "export_s": round(finished - started, 3),
            "load_s": round(loaded_at - started, 3),
            "onnx_export_s": round(exported_at - loaded_at, 3),
            "onnx_check_s": round(finished - exported_at, 3),
        },
    )
