"""The export stage: the PyTorch model as ONNX, for every backend that converts from ONNX.

Runs in a worker inside the torch environment (``torch-2.13``), at ``job.options["opset"]``
(default 13) with ``job.options["exporter"]``: ``torchscript`` (the legacy exporter,
``dynamo=False``: any opset, what onnx-tf can read) or ``dynamo`` (torch.export-based: traces
what TorchScript cannot, but always writes IR version 10 / opset 18, which onnx-tf's checker
rejects (TF 2.8) or cannot run (TF 2.15)). Which opsets and exporters a backend gets is decided
per environment by the pipeline (``EnvironmentSpec.onnx_opsets``); when the TorchScript exporter
names the opset an op needs ("support ... was added in version 14"), the failure says "the
exporter advises opset 14" and the pipeline follows it. Inputs are named ``input_<i>`` and
outputs ``output_<j>`` like the reference arrays, so later stages can map tensors by name. The
file is checked with ``onnx.checker`` and written as ``<job.workdir>/model-opset<N>[-dynamo].onnx``;
the pipeline runs this once per run folder, opset and exporter and reuses the file for every
backend and environment. The result's facts record ``onnx_opset`` and ``onnx_exporter``.
Failures raise ``ExportError`` naming the model.
"""

from __future__ import annotations

import collections
import re
import time
import warnings
from pathlib import Path
from typing import Any

from liteport.errors import ExportError, describe_exception
from liteport.stages.modelref import load_model
from liteport.stages.tensors import flatten_outputs
from liteport.stages.workfiles import written_atomically
from liteport.types import Job, Result

DEFAULT_OPSET = 13


EXPORTERS = ("torchscript", "dynamo")  # torch.onnx.export(dynamo=False) and (dynamo=True)
# How the TorchScript exporter names the opset it needs ("... added in version 14, try exporting with
# this version"): the export stage repeats it as "the exporter advises opset N" for the pipeline.
_ADVICE = re.compile(r"added in (?:opset |version )(\d+)|opset version (\d+) is required", re.IGNORECASE)


def onnx_path(workdir: str | Path, opset: int, exporter: str = "torchscript") -> Path:
    """Where the export of a run folder at ``opset`` with ``exporter`` lives."""
    suffix = "" if exporter == "torchscript" else f"-{exporter}"
    return Path(workdir) / f"model-opset{opset}{suffix}.onnx"


def advised_opset(text: str) -> int | None:
    """The opset an export failure's message advises, if it names one."""
    found = re.search(r"the exporter advises opset (\d+)", text) or _ADVICE.search(text)
    if found is None:
        return None
    return int(next(group for group in found.groups() if group))


def run_export(job: Job) -> Result:
    """Export ``job.model`` to ONNX at the job's opset; raise ExportError on failure."""
    import onnx
    import torch

    started = time.perf_counter()
    opset = int(job.options.get("opset", DEFAULT_OPSET))
    exporter = str(job.options.get("exporter", "torchscript"))
    if exporter not in EXPORTERS:
        raise ExportError(
            f"unknown ONNX exporter {exporter!r}", hint=f"choose one of: {', '.join(EXPORTERS)}"
        )
    loaded = load_model(job.model)
    model = loaded.name
    args = tuple(loaded.example_inputs)
    with torch.no_grad():
        outputs = flatten_outputs(loaded.module(*args))
    input_names = [f"input_{i}" for i in range(len(args))]
    output_names = [f"output_{j}" for j in range(len(outputs))]
    loaded_at = time.perf_counter()

    path = onnx_path(job.workdir, opset, exporter)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a name of its own and renamed when checked: a crash mid-export, or another
    # process exporting the same model, never leaves a file that looks complete.
    with written_atomically(path) as partial:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings go to the log, not the result
                _export(loaded.module, args, partial, opset, exporter, input_names, output_names)
        except Exception as exc:
            advice = advised_opset(str(exc))
            raise ExportError(
                f"{model}: ONNX export ({exporter}, opset {opset}) failed: {describe_exception(exc)}"
                + (f" (the exporter advises opset {advice})" if advice and advice != opset else ""),
                hint="fix the model for torch.onnx.export, "
                "or use a backend that converts from PyTorch directly",
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
    finished = time.perf_counter()

    op_counts = collections.Counter(node.op_type for node in proto.graph.node)
    facts: dict[str, Any] = {
        # the dynamo exporter writes the opset it supports (18), whatever was asked
        "onnx_opset": next(
            (int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset
        ),
        "onnx_exporter": exporter,
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


def _export(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    opset: int,
    exporter: str,
    input_names: list[str],
    output_names: list[str],
) -> None:
    """Write ``module`` as ONNX to ``path`` with the TorchScript or the dynamo exporter."""
    import torch

    if exporter == "torchscript":
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            do_constant_folding=True,
        )
        return
    # torch.export-based: takes what TorchScript cannot trace; writes opset 18 / IR 10 whatever
    # opset_version says (onnx's version converter cannot take it lower for common ops: measured).
    program = torch.onnx.export(
        module, args, dynamo=True, input_names=input_names, output_names=output_names, optimize=True
    )
    if program is None:
        raise ExportError("the dynamo exporter returned no ONNX program")
    program.save(str(path))
