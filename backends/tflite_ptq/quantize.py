"""TFLiteConverter post-training quantization of a SavedModel, one mode per job.

Imported only by the quantize hook (it imports TensorFlow). Runs in whatever environment the
backend that made the SavedModel runs in, Python 3.9 included (TensorFlow 2.8), so this
module keeps to 3.9 syntax at run time.

Modes (``tf.lite.TFLiteConverter.from_saved_model``):

* ``fp32``: plain conversion.
* ``fp16``: ``optimizations=[DEFAULT]`` + ``supported_types=[float16]``: float16 weights,
  each with a DEQUANTIZE to float32; compute and I/O stay float32.
* ``dynamic``: ``optimizations=[DEFAULT]`` alone: int8 weights, activations quantized at
  run time by the hybrid kernels, float32 I/O.
* ``int8``: full integer: ``supported_ops=[TFLITE_BUILTINS_INT8]``, int8 input and output,
  activation ranges from the representative dataset (the job's calibration set).
* ``int16x8``: ``supported_ops=[EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]``:
  int16 activations, int8 weights, calibrated like int8; I/O stays float32.

The representative dataset is ``job.options["calibration"]`` (``.npz``, ``input_<i>`` of
shape (C, *example_shape), PyTorch order and layout), fed as one dict per sample keyed by
the SavedModel's signature input names (``facts["input_names"]`` from the convert stage, in
PyTorch order, else the signature's own names in order). A 4-D array whose shape does not fit
the signature but fits it once moved to NHWC is transposed, so a channels-last SavedModel
gets channels-last samples.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from liteport.api import (
    TFLITE,
    BadInput,
    ConverterError,
    Job,
    LiteportError,
    QuantizerError,
    Result,
    UnsupportedOp,
    model_name,
)

_MAX_MESSAGE = 240
CALIBRATED = ("int8", "int16x8")
DESCRIPTIONS = {
    "fp32": "float32",
    "fp16": "float16 weights (TFLiteConverter supported_types=float16), float32 compute and I/O",
    "dynamic": "dynamic range: int8 weights, activations quantized at run time, float32 I/O",
    "int8": "full integer: int8 weights and activations, int8 input and output (representative dataset)",
    "int16x8": "16x8: int16 activations, int8 weights (representative dataset), float32 I/O",
}
# Lines TFLiteConverter's MLIR errors start with: "<unknown>:0: error: ..." or "loc(...): error: ...".
_MLIR_ERROR = re.compile(r"error:\s*(?:loc\(.*\)\):\s*)?(?P<message>.+)")  # drop MLIR's loc(...) prefix
# An op TFLite has no builtin for, e.g. GELU's Erf from onnx-tf: the converter names it like this.
_NOT_BUILTIN = re.compile(r"'tf\.(?P<op>\w+)' op is neither a custom op nor a flex op")


def run(job: Job) -> Result:
    """Make ``<workdir>/model.tflite`` from ``job.options["saved_model"]`` in ``job.mode``."""
    saved_model = str(job.options.get("saved_model") or "")
    model = model_name(job.model.ref)
    if not saved_model or not Path(saved_model).is_dir():
        raise BadInput(f"{model}: tflite-ptq needs a SavedModel folder (job option 'saved_model')")
    if job.mode not in DESCRIPTIONS:
        raise BadInput(f"{model}: tflite-ptq has no mode {job.mode!r} (it offers {', '.join(DESCRIPTIONS)})")

    import tensorflow as tf

    imported = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    facts: dict[str, Any] = {"quantization": DESCRIPTIONS[job.mode], "tensorflow": str(tf.__version__)}
    if job.mode != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if job.mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if job.mode in CALIBRATED:
        names = _signature_inputs(tf, saved_model, job.options.get("facts"))
        converter.representative_dataset = _representative(job, model, names)
    if job.mode == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if job.mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]

    try:
        flatbuffer = converter.convert()
    except LiteportError:
        raise
    except Exception as exc:
        raise classify(exc, model, job.mode) from exc
    converted = time.perf_counter()
    path = Path(job.workdir) / TFLITE
    path.write_bytes(flatbuffer)
    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"tflite": str(path)},
        facts=facts,
        # TensorFlow's import is left out: convert has usually paid it in this worker already
        timings={"quantize_s": round(converted - imported, 3)},
    )


def classify(exc: BaseException, model: str, mode: str) -> LiteportError:
    """A one-line error for a TFLiteConverter failure: the converter's own first error line."""
    not_builtin = _NOT_BUILTIN.search(str(exc))
    if not_builtin:
        return UnsupportedOp(
            f"{model}: TensorFlow op {not_builtin['op']} has no TFLite builtin kernel "
            f"({mode}; it would need Flex ops)",
            hint="replace that op in the model, or try another backend",
        )
    line = first_error_line(exc)
    if mode in ("fp32", "fp16"):
        return ConverterError(f"{model}: TFLiteConverter ({mode}) failed: {line}")
    return QuantizerError(f"{model}: TFLiteConverter {mode} quantization failed: {line}")


def first_error_line(exc: BaseException) -> str:
    """The first ``error:`` line of an MLIR converter message, else the exception's first line."""
    text = str(exc).strip()
    for raw in text.splitlines():
        found = _MLIR_ERROR.search(raw)
        if found:
            return _short(found["message"].strip())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _short(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _signature_inputs(tf: Any, saved_model: str, facts: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of each SavedModel input, in PyTorch order when the convert facts say it."""
    signature = tf.saved_model.load(saved_model).signatures["serving_default"]
    specs: Mapping[str, Any] = signature.structured_input_signature[1]
    shapes = {name: tuple(-1 if d is None else int(d) for d in spec.shape) for name, spec in specs.items()}
    order: Sequence[str] = list(specs)
    if isinstance(facts, Mapping) and set(facts.get("input_names") or ()) == set(shapes):
        order = list(facts["input_names"])
    return [(name, shapes[name]) for name in order]


def _representative(job: Job, model: str, names: list[tuple[str, tuple[int, ...]]]) -> Any:
    """A representative_dataset callable yielding ``{signature input name: one sample}``."""
    import numpy as np

    path = job.options.get("calibration")
    if not path or not Path(str(path)).is_file():
        raise BadInput(f"{model}: {job.mode} needs a calibration set (job option 'calibration')")
    with np.load(str(path)) as data:
        arrays = [np.asarray(data[f"input_{i}"]) for i in range(len(names)) if f"input_{i}" in data]
    if len(arrays) != len(names):
        raise BadInput(
            f"{model}: calibration set has {len(arrays)} inputs, the SavedModel takes {len(names)}",
            hint="give --inputs with one array per model input",
        )
    fitted = [_fit(array, name, shape, model) for array, (name, shape) in zip(arrays, names)]
    count = min(a.shape[0] for a in fitted)

    def samples() -> Iterator[dict[str, Any]]:
        for index in range(count):
            yield {name: fitted[i][index] for i, (name, _) in enumerate(names)}

    return samples


def _fit(array: Any, name: str, shape: tuple[int, ...], model: str) -> Any:
    """``array`` (C, *sample shape) in the layout the SavedModel input ``name`` expects."""
    import numpy as np

    sample = tuple(array.shape[1:])
    if _fits(sample, shape):
        return array.astype(np.float32) if array.dtype == np.float64 else array
    if len(sample) == 4 and _fits((sample[0], sample[2], sample[3], sample[1]), shape):
        return np.ascontiguousarray(np.transpose(array, (0, 1, 3, 4, 2)))  # NCHW samples -> NHWC
    raise BadInput(f"{model}: calibration input {name!r} is shaped {sample}, the SavedModel expects {shape}")


def _fits(sample: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    return len(sample) == len(shape) and all(s == d or d == -1 for s, d in zip(sample, shape))
