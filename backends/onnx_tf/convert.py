"""One onnx-tf conversion inside the backend's environment: ONNX -> TensorFlow SavedModel.

Imported only by the convert hook (it imports TensorFlow, timed separately). The
SavedModel goes to ``<workdir>/saved_model``; the pipeline then runs the ``tflite-ptq``
quantizer in the same environment to make the .tflite in the job's mode.

onnx-tf traces its graph with autograph on, which transpiles every handler it meets into new
Python source before running it: 10 of mobilenet_v2's 16.5 s ``export_graph`` in a fresh worker,
5 of 6.5 s after. The handlers branch on ONNX attributes, not tensors, so the graph is traced
with autograph off first (1.9 s, byte-identical .tflite measured on the zoo), and again with it
on, as onnx-tf does, when that fails (``facts["autograph"]`` says which one made the model).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from liteport.api import BadInput, Job, LiteportError, Result, model_name
from liteport.backends.onnx_tf import failures
from liteport.backends.onnx_tf.environments import environment_for

SAVED_MODEL = "saved_model"


def run(job: Job) -> Result:
    """Convert the job's ONNX file to a SavedModel; raise a LiteportError subclass on failure."""
    env = environment_for(job.environment)
    model = model_name(job.model.ref)
    onnx_file = job.options.get("onnx")
    if not onnx_file or not Path(str(onnx_file)).is_file():
        raise BadInput(f"{model}: onnx-tf needs the ONNX export (job option 'onnx'), got {onnx_file!r}")

    started = time.perf_counter()
    import onnx
    import tensorflow as tf
    from onnx_tf.backend import prepare

    imported = time.perf_counter()
    proto = onnx.load(str(onnx_file))
    opset = _opset(proto)
    onnx_tf_version = metadata.version("onnx-tf")
    missing = failures.unsupported_ops(proto)
    if missing:  # before tracing: a clean op name instead of an autograph listing
        raise failures.unsupported_error(model, missing, opset, onnx_tf_version)

    saved_model = Path(job.workdir) / SAVED_MODEL
    shutil.rmtree(saved_model, ignore_errors=True)
    saved_model.parent.mkdir(parents=True, exist_ok=True)
    try:
        rep = prepare(proto)
        prepared = time.perf_counter()
        autograph = _export_graph(rep, saved_model)
    except LiteportError:
        raise
    except Exception as exc:
        raise failures.classify(exc, model, opset) from exc
    exported = time.perf_counter()

    onnx_inputs = [str(name) for name in rep.inputs]
    onnx_outputs = [str(name) for name in rep.outputs]
    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    sig_inputs = list(signature.structured_input_signature[1].keys())
    sig_outputs = list(signature.structured_outputs.keys())
    finished = time.perf_counter()

    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"saved_model": str(saved_model)},
        facts={
            "input_layout": "NCHW",  # onnx-tf keeps PyTorch's layout and transposes around each conv
            "output_layout": "NCHW",
            # SavedModel (and so TFLite signature) names in PyTorch order, for the validator
            "input_names": _match(onnx_inputs, sig_inputs),
            "output_names": _match(onnx_outputs, sig_outputs),
            "onnx_opset": opset,
            "onnx_file": str(onnx_file),  # the run's one shared export, for provenance
            "converter": f"onnx-tf {onnx_tf_version}",
            "tensorflow": str(tf.__version__),
            "autograph": autograph,
        },
        timings={
            "import_s": round(imported - started, 3),
            "prepare_s": round(prepared - imported, 3),
            "export_graph_s": round(exported - prepared, 3),
            "convert_s": round(finished - imported, 3),
        },
        environment=env.name,
    )


def _export_graph(rep: Any, saved_model: Path) -> bool:
    """Write the SavedModel, traced without autograph when that works; True when it needed autograph.

    A handler that does need it (a Python ``if`` or ``for`` over a tensor: NonMaxSuppression) fails
    loudly without it (OperatorNotAllowedInGraphError), never silently: then the graph is traced
    as onnx-tf does.
    """
    import tensorflow as tf

    module_class = type(rep.tf_module)
    with_autograph = vars(module_class)["__call__"]  # the tf.function itself, not a bound method
    module_class.__call__ = tf.function(with_autograph.python_function, autograph=False)
    try:
        rep.export_graph(str(saved_model))
        return False
    except Exception as exc:  # whatever it was, onnx-tf's own way decides (and its error is classified)
        first_line = next(iter(str(exc).splitlines()), type(exc).__name__)
        logging.getLogger(__name__).info("traced again with autograph: %s", first_line)
    finally:
        module_class.__call__ = with_autograph
    shutil.rmtree(saved_model, ignore_errors=True)
    rep.export_graph(str(saved_model))
    return True


def _opset(proto: Any) -> int:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _match(onnx_names: list[str], signature_names: list[str]) -> list[str]:
    """The signature name of each ONNX tensor, in ONNX (= PyTorch) order.

    TensorFlow renames names it cannot use (``:`` and other characters), so a name that is not
    found as-is is matched in its sanitized form; anything still unmatched keeps its position.
    """
    remaining = list(signature_names)
    matched: list[str] = []
    for position, name in enumerate(onnx_names):
        candidates = [name, re.sub(r"[^A-Za-z0-9_.\-/]", "_", name)]
        found = next((n for n in candidates if n in remaining), None)
        if found is None:
            found = next((n for n in remaining if n.endswith(candidates[1])), None)
        if found is None and position < len(signature_names):
            found = signature_names[position]
        if found is None:
            return list(signature_names)
        if found in remaining:
            remaining.remove(found)
        matched.append(found)
    return matched
