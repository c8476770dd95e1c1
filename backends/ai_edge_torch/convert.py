"""One conversion inside the backend's environment: load, channels-last wrap, quantize, convert, write.

Imported only by the convert hook: it imports torch, and the converter package is imported
here too (the nightly's ``ai_edge_torch`` also loads torch_xla2 and TensorFlow), timed
separately from the conversion itself (``import_s`` in the result's timings).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from liteport.api import TFLITE, Job, LiteportError, LoadedModel, Result, load_model, model_name
from liteport.backends.ai_edge_torch import quantize
from liteport.backends.ai_edge_torch.environments import PACKAGES, environment_for
from liteport.backends.ai_edge_torch.failures import classify
from liteport.backends.ai_edge_torch.reuse import SharedWork

# Packages that apply their recipes (ai-edge-quantizer) to the float32 flatbuffer after conversion,
# so a recipe mode can start from a kept one; the nightly's ai_edge_torch hands a recipe to
# TensorFlow's converter, so it converts every mode itself.
RECIPES_AFTER_CONVERSION = ("litert_torch",)

T = TypeVar("T")


def run(job: Job) -> Result:
    """Convert ``job.model`` in ``job.mode``; raise a LiteportError subclass on failure."""
    env = environment_for(job.environment)
    package = PACKAGES[env.name]
    started = time.perf_counter()
    api = importlib.import_module(package)
    imported = time.perf_counter()

    shared = SharedWork.of(job)
    by_recipe = package in RECIPES_AFTER_CONVERSION and job.mode in quantize.RECIPE_MODES[package]
    path = Path(job.workdir) / TFLITE
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = shared.float_flatbuffer() if shared and (job.mode == "fp32" or by_recipe) else None
    layouts = {"input_layout": "NCHW", "output_layout": "NCHW"}
    if kept is not None and not job.options.get("channels_last"):
        # Served from the kept float flatbuffer, the mode needs no module: loading it cost 0.5 s
        # of a 2 s fp16 cell on mobilenet_v2. Channels-last loads it still, for the layouts.
        loaded_at = time.perf_counter()
        model = model_name(job.model.ref)
        description, quantize_s = _guarded(model, _write_from_float, package, job.mode, kept, path)
    else:
        loaded = load_model(job.model)
        loaded_at = time.perf_counter()
        description, quantize_s, layouts = _convert(api, package, job, loaded, shared, by_recipe, kept, path)
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
            **layouts,
            "quantization": description,
            "converter": package,
            **({"reused": list(shared.reused)} if shared and shared.reused else {}),
        },
        timings=timings,
        environment=env.name,
    )


def _convert(
    api: Any,
    package: str,
    job: Job,
    loaded: LoadedModel,
    shared: SharedWork | None,
    by_recipe: bool,
    float_model: bytes | None,
    path: Path,
) -> tuple[str, float | None, dict[str, str]]:
    """Convert the loaded module in ``job.mode``: (description, quantize seconds or None, layouts).

    ``float_model`` is the kept float flatbuffer, when the mode can start from one.
    """
    began = time.perf_counter()
    module, args, model = loaded.module, tuple(loaded.example_inputs), loaded.name
    layouts = {"input_layout": "NCHW", "output_layout": "NCHW"}
    nhwc_inputs: list[int] = []
    if job.options.get("channels_last"):
        module, nhwc_inputs, nhwc_outputs = _channels_last(api, module, args)
        args = tuple(_to_nhwc(a) if i in nhwc_inputs else a for i, a in enumerate(args))
        layouts = {
            "input_layout": "NHWC" if nhwc_inputs else "NCHW",
            "output_layout": "NHWC" if nhwc_outputs else "NCHW",
        }
    if float_model is None and shared and by_recipe:  # the float conversion its convert makes anyway
        float_model = _guarded(model, _convert_float, api, module, args, path)
        shared.keep_float_flatbuffer(float_model)
    if float_model is not None:
        return (*_guarded(model, _write_from_float, package, job.mode, float_model, path), layouts)

    calibration: list[tuple[Any, ...]] = []
    if job.mode == "int8" and job.options.get("calibration"):
        samples = quantize.load_calibration(str(job.options["calibration"]), loaded.example_inputs, model)
        calibration = [
            tuple(_to_nhwc(t) if i in nhwc_inputs else t for i, t in enumerate(sample)) for sample in samples
        ]
    prepared = _guarded(model, quantize.for_mode, package, job.mode, module, args, calibration, model)
    quantize_s = time.perf_counter() - began if prepared.pt2e else None  # a quant_config runs inside convert
    _guarded(model, _export, api, prepared, args, path)
    if shared and job.mode == "fp32":
        shared.keep_float_flatbuffer(path.read_bytes())
    return prepared.description, quantize_s, layouts


def _write_from_float(package: str, mode: str, float_model: bytes, path: Path) -> tuple[str, float | None]:
    """Write ``mode``'s model made from the float flatbuffer: fp32 is those bytes, a recipe mode
    is ai-edge-quantizer's recipe applied to them (what ``convert`` does after making them)."""
    if mode == "fp32":
        path.write_bytes(float_model)
        return quantize.FLOAT32, None
    started = time.perf_counter()
    path.write_bytes(quantize.from_float(package, mode, float_model))
    return quantize.RECIPES[mode].description, time.perf_counter() - started


def _export(api: Any, prepared: quantize.Quantized, args: tuple[Any, ...], path: Path) -> None:
    api.convert(prepared.module, args, quant_config=prepared.quant_config).export(str(path))


def _guarded(model: str, step: Callable[..., T], *args: Any) -> T:
    """``step(*args)``, with a converter's own exception turned into the LiteportError it means."""
    try:
        return step(*args)
    except LiteportError:
        raise
    except Exception as exc:
        raise classify(exc, model) from exc


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
