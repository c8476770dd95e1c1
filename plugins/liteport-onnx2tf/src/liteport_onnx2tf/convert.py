"""One onnx2tf conversion inside ``onnx2tf-2.6`` or ``onnx2tf-1.29``: ONNX in, one .tflite out.

onnx2tf runs as a subprocess (``python -m onnx2tf``) with the attempt folder as its working
directory: it calls ``sys.exit`` on errors, rewrites its input ONNX file in place (so it gets
a private copy, never the run folder's shared export), and looks for its calibration sample
file in the working directory. Its output goes to ``onnx2tf.log`` and is read to classify a
failure (``failures``).

onnx2tf 2.x writes the .tflite either itself (``-tb flatbuffer_direct``, its default, without
TensorFlow) or through TFLiteConverter (``-tb tf_converter``, the only path of 1.x, which has no
``-tb`` flag). Measured on 2.6.9 with mobilenet_v2: flatbuffer_direct's fp32 file is exact
(cosine 1.0, no TRANSPOSE) and takes seconds instead of minutes, but its quantized files are not
usable (per-channel conv weights carry quantized_dimension 3: its own check rejects the int8 file,
LiteRT refuses the dynamic-range one; per-tensor int16x8 fails on a depthwise bias type) and its
float16 file has float16 I/O; so fp32 goes through flatbuffer_direct and every other mode through
tf_converter, which gives 1.29's results (``DIRECT_MODES``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from liteport.api import TFLITE, BadInput, ConverterError, Job, Result, model_name
from liteport_onnx2tf import failures
from liteport_onnx2tf.environments import environment_for

# onnx2tf downloads this file for image-like inputs unless it is in the working directory
# (onnx2tf.utils.common_functions.download_test_image_data): the job's own data goes there.
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
LOG_FILE = "onnx2tf.log"
OUTPUT_DIR = "onnx2tf_out"
ONNX_COPY = "model.onnx"

# The file onnx2tf writes for each mode (``<onnx stem>_<suffix>.tflite``) and the flags that make it.
OUTPUTS = {
    "fp32": ("float32", ()),
    "fp16": ("float16", ()),  # written with every float conversion
    "dynamic": ("dynamic_range_quant", ("-odrqt",)),
    "int8": ("full_integer_quant", ("-oiqt", "-qt", "per-channel", "-iqd", "int8", "-oqd", "int8")),
    "int16x8": ("integer_quant_with_int16_act", ("-oiqt", "-qt", "per-channel")),
}
DESCRIPTIONS = {
    "fp32": "float32",
    "fp16": "float16 weights (onnx2tf's _float16 file), float32 I/O",
    "dynamic": "dynamic range: int8 weights, float activations, float32 I/O",
    "int8": "full integer: int8 per-channel weights, int8 activations (job's calibration set), int8 I/O",
    "int16x8": "16x8: int16 activations, int8 weights, calibrated with the job's data, float32 I/O",
}
CALIBRATED = ("int8", "int16x8")
# onnx2tf >= 2: modes written by its own flatbuffer writer; the others go through TFLiteConverter.
DIRECT_MODES = ("fp32",)


def run(job: Job) -> Result:
    """Convert the job's ONNX export in ``job.mode``; raise a LiteportError subclass on failure."""
    env = environment_for(job.environment)
    model = model_name(job.model.ref)
    if job.mode not in OUTPUTS:
        raise BadInput(f"{model}: onnx2tf offers {', '.join(OUTPUTS)}, not mode {job.mode!r}")
    onnx_file = job.options.get("onnx")
    if not onnx_file or not Path(str(onnx_file)).is_file():
        raise BadInput(f"{model}: onnx2tf needs the ONNX export (job option 'onnx'), got {onnx_file!r}")
    started = time.perf_counter()
    import numpy as np
    import onnx

    workdir = Path(job.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    local_onnx = workdir / ONNX_COPY
    shutil.copyfile(str(onnx_file), local_onnx)  # onnx2tf overwrites its input file
    proto = onnx.load(str(local_onnx), load_external_data=False)
    inputs = [(i.name, len(i.type.tensor_type.shape.dim)) for i in proto.graph.input]

    samples = _calibration(job, inputs, model, np)
    _write_sample_file(workdir, samples, inputs, np)
    version = _version("onnx2tf")
    tflite_backend = _tflite_backend(version, job.mode)
    args = ["-i", ONNX_COPY, "-o", OUTPUT_DIR, "-v", "info", *OUTPUTS[job.mode][1]]
    if tflite_backend:
        args += ["-tb", tflite_backend]
    # onnx2tf makes 4-D tensors NHWC; other ranks keep PyTorch's layout so the validator's
    # layout contract (only 4-D tensors are transposed) holds.
    kept = [name for name, rank in inputs if rank not in (0, 1, 2, 4)]
    if kept:
        args += ["-kt", *kept]
    if job.mode in CALIBRATED:
        for (name, _), data in zip(inputs, samples):
            path = workdir / f"calibration_{_safe(name)}.npy"
            np.save(path, data)
            # mean 0 / std 1: onnx2tf computes (x - mean) / std, so the data reach it unchanged
            args += ["-cind", name, str(path), "[0.0]", "[1.0]"]
    prepared = time.perf_counter()

    exit_code, output = _run_onnx2tf(args, workdir)
    converted = time.perf_counter()
    suffix = OUTPUTS[job.mode][0]
    produced = workdir / OUTPUT_DIR / f"{local_onnx.stem}_{suffix}.tflite"
    if not produced.is_file():
        raise failures.classify(output, model, exit_code=exit_code, wanted=produced.name)
    flex, custom = failures.non_builtin_ops(produced)
    if flex or custom:  # written, but LiteRT cannot load it: the converter's gap, named here
        raise failures.non_builtin_error(model, flex, custom)
    path = workdir / TFLITE
    shutil.copyfile(produced, path)
    shutil.rmtree(workdir / OUTPUT_DIR, ignore_errors=True)  # the SavedModel and the other variants

    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"tflite": str(path)},
        facts={
            # The validator transposes only 4-D tensors, which is exactly what onnx2tf made NHWC.
            "input_layout": "NHWC",
            "output_layout": "NHWC",
            "quantization": DESCRIPTIONS[job.mode],
            "converter": f"onnx2tf {version}" + (f" ({tflite_backend})" if tflite_backend else ""),
            "onnx2tf_file": produced.name,
        },
        timings={
            "prepare_s": round(prepared - started, 3),
            "convert_s": round(converted - started, 3),
            "onnx2tf_s": round(converted - prepared, 3),
        },
        versions=_versions(env.key_packages),
        environment=env.name,
    )


def _tflite_backend(version: str, mode: str) -> str | None:
    """onnx2tf's ``-tb`` value for ``mode``: None for 1.x (no such flag: TFLiteConverter always)."""
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < 2:
        return None
    return "flatbuffer_direct" if mode in DIRECT_MODES else "tf_converter"


def _calibration(job: Job, inputs: Sequence[tuple[str, int]], model: str, np: Any) -> list[Any]:
    """One float32 array per input, (N, ...) with the batch axis merged in and 4-D ones NHWC."""
    path = job.options.get("calibration")
    if not path or not Path(str(path)).is_file():
        if job.mode in CALIBRATED:
            raise BadInput(f"{model}: {job.mode} needs calibration data (job option 'calibration')")
        return []
    with np.load(str(path)) as data:
        arrays = []
        for i, (name, rank) in enumerate(inputs):
            key = f"input_{i}"
            if key not in data:
                raise BadInput(f"{model}: calibration file {path} has no {key!r} for ONNX input {name!r}")
            array = np.asarray(data[key], dtype=np.float32)
            if array.ndim == rank + 1:  # (C, B, ...): one model-shaped sample per calibration item
                array = array.reshape(-1, *array.shape[2:])
            if array.ndim != rank:
                raise BadInput(
                    f"{model}: calibration {key} has shape {list(array.shape)}, "
                    f"which does not fit ONNX input {name!r} of rank {rank}"
                )
            arrays.append(array.transpose(0, 2, 3, 1) if rank == 4 else array)
    return arrays


def _write_sample_file(
    workdir: Path, samples: Sequence[Any], inputs: Sequence[tuple[str, int]], np: Any
) -> None:
    """Put the job's own image-like data where onnx2tf looks before it would download its sample."""
    image = next((s for s, (_, rank) in zip(samples, inputs) if rank == 4), None)
    if image is None:
        first_4d = next((rank for _, rank in inputs if rank == 4), None)
        if first_4d is None:
            return  # onnx2tf only reads the sample for 4-D inputs
        image = np.zeros((1, 128, 128, 3), dtype=np.float32)  # no calibration data: a neutral image
    np.save(workdir / SAMPLE_FILE, np.ascontiguousarray(image, dtype=np.float32))


def _run_onnx2tf(args: list[str], workdir: Path) -> tuple[int, str]:
    """Run onnx2tf with this environment's interpreter in ``workdir``; its exit code and output."""
    env = dict(os.environ)
    shims = workdir / ".bin"
    shims.mkdir(exist_ok=True)
    # onnx2tf runs `onnxsim` from PATH: point it at this interpreter's onnxsim module, whatever
    # PATH the worker inherited and wherever the environment's console scripts point.
    shim = shims / "onnxsim"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m onnxsim "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    env["PATH"] = os.pathsep.join([str(shims), env.get("PATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TQDM_DISABLE", "1")  # onnx2tf 2.x draws progress bars into the log
    log = workdir / LOG_FILE
    with open(log, "w", encoding="utf-8") as out:
        out.write(f"$ {sys.executable} -m onnx2tf {' '.join(args)}\n")
        out.flush()
        code = subprocess.run(
            [sys.executable, "-m", "onnx2tf", *args],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    text = log.read_text(encoding="utf-8", errors="replace")
    sys.stdout.write(failures.plain(text)[-20000:])  # the tail also lands in the job's convert.log
    if code < 0:
        raise ConverterError(f"onnx2tf was killed by signal {-code}", hint=f"see {log}")
    return code, text


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _versions(packages: Sequence[str]) -> dict[str, str]:
    return {name: _version(name) for name in packages if _version(name) != "?"}
