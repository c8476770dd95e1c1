"""One conversion inside the backend's environment: load, channels-last wrap, quantize, convert, write.

Imported only by the convert hook: it imports torch, and the converter package is imported
here too (the nightly's ``ai_edge_torch`` also loads torch_xla2 and TensorFlow), timed
separately from the conversion itself (``import_s`` in the result's timings).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

import torch

from liteport.api import TFLITE, Job, LiteportError, Result, load_model
from liteport.backends.ai_edge_torch import quantize
from liteport.backends.ai_edge_torch.environments import PACKAGES, environment_for
from liteport.backends.ai_edge_torch.failures import classify
from liteport.backends.ai_edge_torch.reuse import SharedWork

# Packages that apply their recipes (ai-edge-quantizer) to the float32 flatbuffer after conversion,
# so a recipe mode can start from a kept one; the nightly's ai_edge_torch hands a recipe to
# TensorFlow's converter, so it converts every mode itself.
RECIPES_AFTER_CONVERSION = ("litert_torch",)


def run(job: Job) -> Result:
    """Convert ``job.model`` in ``job.mode``; raise a LiteportError subclass on failure."""
    env = environment_for(job.environment)
    package = PACKAGES[env.name]
    started = time.perf_counter()
    api = importlib.import_module(package)
    imported = time.perf_counter()

    shared = SharedWork.of(job)
    loaded = load_model(job.model)
    module, args = loaded.module, tuple(loaded.example_inputs)
    model = loaded.name
    loaded_at = time.perf_counter()

    input_layout = output_layout = "NCHW"
    nhwc_inputs: list[int] = []
    if job.options.get("channels_last"):
        module, nhwc_inputs, nhwc_outputs = _channels_last(api, module, args)
        args = tuple(_to_nhwc(a) if i in nhwc_inputs else a for i, a in enumerate(args))
        input_layout = "NHWC" if nhwc_inputs else "NCHW"
        output_layout = "NHWC" if nhwc_outputs else "NCHW"

    calibration: list[tuple[Any, ...]] = []
    if job.mode == "int8" and job.options.get("calibration"):
        samples = quantize.load_calibration(str(job.options["calibration"]), loaded.example_inputs, model)
        calibration = [
            tuple(_to_nhwc(t) if i in nhwc_inputs else t for i, t in enumerate(sample)) for sample in samples
        ]

    path = Path(job.workdir) / TFLITE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        by_recipe = package in RECIPES_AFTER_CONVERSION and job.mode in quantize.RECIPE_MODES[package]
        float_model = shared.float_flatbuffer() if shared and (job.mode == "fp32" or by_recipe) else None
        quantize_s: float | None = None  # PT2E before lowering, or a recipe after conversion
        if job.mode == "fp32" and float_model is not None:
            description = quantize.FLOAT32
            path.write_bytes(float_model)
        elif shared and by_recipe:
            if float_model is None:  # the float conversion a recipe's convert makes anyway; kept for fp32
                float_model = _convert_float(api, module, args, path)
                shared.keep_float_flatbuffer(float_model)
            description = quantize.RECIPES[job.mode].description
            recipe_started = time.perf_counter()
            path.write_bytes(quantize.from_float(package, job.mode, float_model))
            quantize_s = time.perf_counter() - recipe_started
        else:
            prepared = quantize.for_mode(package, job.mode, module, args, calibration, model)
            description = prepared.description
            if prepared.pt2e:  # a recipe in quant_config runs inside convert, not timed apart
                quantize_s = time.perf_counter() - loaded_at
            edge_model = api.convert(prepared.module, args, quant_config=prepared.quant_config)
            edge_model.export(str(path))
            if shared and job.mode == "fp32":
                shared.keep_float_flatbuffer(path.read_bytes())
    except LiteportError:
        raise
    except Exception as exc:
        raise classify(exc, model) from exc
    finished = time.perf_counter()

    timings = {
        "import_s": round(imported - started, 3),
        "load_s": round(loaded_at - imported, 3),
        "convert_s": round(finished - loaded_at, 3),  # quantization included, as users pay it
    }
    if job.mode in ("dynamic", "int8") and quantize_s is not None:
        timings["quantize_s"] = round(quantize_s, 3)
    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"tflite": str(path)},
        facts={
            "input_layout": input_layout,
            "output_layout": output_layout,
            "quantization": description,
            "converter": package,
            **({"reused": list(shared.reused)} if shared and shared.reused else {}),
        },
        timings=timings,
        environment=env.name,
    )


def _convert_float(api: Any, module: Any, args: tuple[Any, ...], path: Path) -> bytes:
    """The float32 flatbuffer of ``module``, exactly as ``convert`` without a quant_config writes it."""
    api.convert(module, args).export(str(path))
    return path.read_bytes()


def _channels_last(api: Any, module: Any, args: tuple[Any, ...]) -> tuple[Any, list[int], list[int]]:
    """Wrap ``module`` with the converter's ``to_channel_last_io`` for its 4-D inputs and outputs.

    The converter already computes in NHWC; with NHWC I/O its layout pass cancels the
    transposes the wrapper adds against its own, so the input TRANSPOSE disappears.
    """
    inputs = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.ndim == 4]
    with torch.no_grad():
        outputs = module(*args)
    # to_channel_last_io transposes a bare tensor output or items of a tuple/list output.
    flat = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    out_indices = [j for j, o in enumerate(flat) if isinstance(o, torch.Tensor) and o.ndim == 4]
    if not inputs and not out_indices:
        return module, [], []
    wrapped = api.to_channel_last_io(module, args=inputs, outputs=out_indices).eval()
    return wrapped, inputs, out_indices


def _to_nhwc(tensor: Any) -> Any:
    return tensor.permute(0, 2, 3, 1).contiguous()
