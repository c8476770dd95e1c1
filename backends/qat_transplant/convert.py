"""One transplant inside the backend's environment: load, convert, trace, lower, write.

Imported only by the convert hook: it imports torch (and ai_edge_litert when writing).
"""

from __future__ import annotations

import time
from pathlib import Path

from liteport.api import TFLITE, BadInput, Job, Result, load_model
from liteport.api import qat as qat_reference
from liteport.backends.qat_transplant import lower, writer
from liteport.backends.qat_transplant.environments import QAT_TORCH


def run(job: Job) -> Result:
    """Transplant ``job.model``'s PyTorch int8 parameters into ``<workdir>/model.tflite``."""
    started = time.perf_counter()
    loaded = load_model(job.model)
    model = loaded.name
    if not qat_reference.is_eager_qat(loaded.module):
        raise BadInput(
            f"{model} is not an eager-mode QAT model (no fake-quant modules, no QuantStub)",
            hint="prepare it with torch.ao.quantization.prepare_qat (or convert it), or use --quant int8",
        )
    loaded_at = time.perf_counter()
    engine = qat_reference.pick_engine(loaded.module)
    int8 = qat_reference.to_int8(loaded.module, engine)
    gm = qat_reference.symbolic(int8)
    lower.check_supported(gm, model)  # before running: an unsupported module may not even run
    traced = qat_reference.trace(int8, loaded.example_inputs, engine, gm=gm)
    nchw_io = not job.options.get("channels_last")
    graph = lower.lower(traced, model, nchw_io=nchw_io)
    converted_at = time.perf_counter()
    path = Path(job.workdir) / TFLITE
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.write(graph, path, description=f"liteport qat-transplant of {model} (PyTorch {engine} int8)")
    finished = time.perf_counter()
    layout = "NCHW" if nchw_io else "NHWC"
    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"tflite": str(path)},
        facts={
            "input_layout": layout,
            "output_layout": layout,
            "quantization": f"PyTorch eager QAT parameters transplanted ({engine} int8 model), int8 I/O",
            "quantized_engine": engine,
            "transplanted_tensors": sum(1 for t in graph.tensors if t.quantized),
            "converter": "qat-transplant",
        },
        timings={
            "load_s": round(loaded_at - started, 3),
            "convert_s": round(converted_at - loaded_at, 3),
            "write_s": round(finished - converted_at, 3),
        },
        environment=QAT_TORCH.name,
    )
