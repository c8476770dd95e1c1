"""One nobuco conversion inside the ``nobuco-0.17`` environment: the user's module in, a SavedModel out.

nobuco traces the PyTorch module op by op and builds a Keras model from its converters,
tracking channel order so that 4-D tensors become NHWC without TRANSPOSEs around convolutions.
The Keras model is saved as a SavedModel whose ``serving_default`` signature takes
``input_<i>`` and returns ``output_<j>`` (PyTorch order, outputs flattened like liteport's
reference); the ``tflite-ptq`` quantizer makes the .tflite in the job's mode from it, in the
same environment. nobuco's output (a colored tree of the traced model) goes to ``nobuco.log``
and is read to classify a failure (``failures``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from liteport.api import MODES, BadInput, ConverterError, Job, LiteportError, Result, load_model, model_name
from liteport_nobuco import failures, torchvision_stand_in
from liteport_nobuco.environments import environment_for

SAVED_MODEL = "saved_model"
LOG_FILE = "nobuco.log"


def run(job: Job) -> Result:
    """Convert the job's model to a SavedModel; raise a LiteportError subclass on failure."""
    env = environment_for(job.environment)
    model = model_name(job.model.ref)
    if job.mode not in MODES or job.mode == "qat":
        raise BadInput(
            f"{model}: nobuco hands fp32, fp16, dynamic, int8 and int16x8 to tflite-ptq, not {job.mode!r}"
        )
    if job.model.ref.strip().endswith(".pt2"):  # measured: nobuco's tracer fails inside a GraphModule
        raise ConverterError(
            f"{model}: nobuco traces the calls of a model's modules, and a torch.export program (.pt2) "
            "has none",
            hint="give nobuco the model's factory (file.py:build), or convert the .pt2 with another backend",
        )
    started = time.perf_counter()
    loaded = load_model(job.model)  # before the stand-in, so the user's model never sees it
    stand_in = torchvision_stand_in.install()
    import nobuco
    import tensorflow as tf
    import torch

    imported = time.perf_counter()
    tf.keras.backend.clear_session()  # a worker converts many models: start from fresh layer names
    args = tuple(loaded.example_inputs)
    if not args or not all(isinstance(x, torch.Tensor) for x in args):
        raise BadInput(f"{model}: nobuco converts models whose example inputs are tensors")
    flat = _flat_module(loaded.module, torch)
    with torch.no_grad():
        outputs = flat(*args)
    # 4-D tensors channels-last (what the validator's "NHWC" means); other ranks keep PyTorch's order.
    order = nobuco.ChannelOrder
    inputs_order = {x: order.TENSORFLOW if x.dim() == 4 else order.PYTORCH for x in args}
    outputs_order = {j: order.TENSORFLOW if y.dim() == 4 else order.PYTORCH for j, y in enumerate(outputs)}

    workdir = Path(job.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / LOG_FILE
    error: Exception | None = None
    with _output_to(log):
        try:
            keras_model = nobuco.pytorch_to_keras(
                flat,
                args=list(args),
                inputs_channel_order=inputs_order,
                outputs_channel_order=outputs_order,
                full_validation=False,  # liteport's validator judges the result; per-node checks cost minutes
            )
        except Exception as exc:
            error = exc
    output = log.read_text(encoding="utf-8", errors="replace")
    sys.stdout.write(failures.plain(output)[-20000:])  # the tail also lands in the job's convert.log
    if error is not None:
        raise failures.classify(error, output, model) from error
    converted = time.perf_counter()

    saved_model = workdir / SAVED_MODEL
    shutil.rmtree(saved_model, ignore_errors=True)
    try:
        input_names, output_names = _save(tf, keras_model, saved_model, len(outputs))
    except LiteportError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConverterError(f"{model}: saving nobuco's Keras model as a SavedModel failed: {first}") from exc
    saved = time.perf_counter()
    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"saved_model": str(saved_model)},
        facts={
            # nobuco made every 4-D tensor NHWC; the validator transposes only 4-D tensors.
            "input_layout": "NHWC",
            "output_layout": "NHWC",
            "input_names": input_names,  # signature names in PyTorch order: tflite-ptq, validator
            "output_names": output_names,
            "converter": f"nobuco {_version('nobuco')}",
            "tensorflow": str(tf.__version__),
            "torchvision": "liteport stand-in" if stand_in else _version("torchvision"),
        },
        timings={
            "load_model_s": round(imported - started, 3),
            "nobuco_s": round(converted - imported, 3),
            "saved_model_s": round(saved - converted, 3),
            "convert_s": round(saved - started, 3),
        },
        environment=env.name,
    )


def _flat_module(inner: Any, torch: Any) -> Any:
    """The user's module wrapped to return a flat tuple of tensors, in liteport's reference order."""

    class Flat(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            return tuple(_flatten(self.inner(*inputs), torch))

    return Flat().eval()


def _flatten(value: Any, torch: Any) -> list[Any]:
    """Tensors of a nested tuple/list/dict, depth first; dict values in insertion order; None dropped."""
    if isinstance(value, torch.Tensor):
        return [value]
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in _flatten(item, torch)]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _flatten(item, torch)]
    raise BadInput(f"the model returned a {type(value).__name__} among its outputs")


def _save(tf: Any, keras_model: Any, path: Path, count: int) -> tuple[list[str], list[str]]:
    """A SavedModel with a ``serving_default`` of ``input_<i>`` -> ``output_<j>``; those names."""
    input_names = [f"input_{i}" for i in range(len(keras_model.inputs))]
    specs = [tf.TensorSpec(x.shape, x.dtype, name=n) for x, n in zip(keras_model.inputs, input_names)]
    output_names = [f"output_{j}" for j in range(count)]

    @tf.function(input_signature=specs)  # type: ignore[untyped-decorator]
    def serve(*inputs: Any) -> dict[str, Any]:
        results = keras_model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        flat = results if isinstance(results, (list, tuple)) else [results]
        return {name: tensor for name, tensor in zip(output_names, flat)}

    holder = tf.Module()
    holder.model = keras_model  # tracks every variable the signature captures
    tf.saved_model.save(holder, str(path), signatures={"serving_default": serve.get_concrete_function()})
    return input_names, output_names


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send everything written to fd 1 and 2 (print, rich, TensorFlow's C++ logs) to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "w", encoding="utf-8") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"
