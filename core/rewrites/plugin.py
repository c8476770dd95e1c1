"""Registration and dispatch of the built-in rewrites (no torch here: the work hook imports it).

Each rewrite answers failures measured on the zoo (Nov 2026, ``liteport matrix`` over zoo v2):

* ``gelu-erf-free``: exact GELU exports as ONNX ``Erf``, which has no TFLite builtin: onnx-tf's
  TFLiteConverter refuses it and onnx2tf emits a Flex op LiteRT cannot run. Replaced by
  ``0.5 * (x + erf(|x|/sqrt 2) * |x|)`` with Abramowitz-Stegun 7.1.26's erf (|error| < 1.5e-7):
  the same function to float32 precision, from exp, abs, mul, add and div only.
* ``adaptive-pool-fixed``: ``adaptive_max_pool2d`` has no lowering in litert-torch; with output
  sizes that divide the input it is exactly a fixed max pool (kernel = stride = input / output),
  likewise ``adaptive_avg_pool2d``.
* ``recurrent-unroll``: onnx-tf rejects PyTorch's GRU (``linear_before_reset``) and turns LSTM
  into a WHILE loop LiteRT cannot run; LSTM/GRU become their cell equations unrolled over the
  (static) sequence: matmuls, sigmoid, tanh, the same arithmetic as PyTorch's.
* ``log-softmax-decompose``: an int8 LOG_SOFTMAX must have output scale 16/256; when it feeds a
  quantized op (a log-prior ADD), litert-torch gives it that op's scale and LiteRT refuses the file
  ("LOG_SOFTMAX failed to prepare", ``invalid_model``). Written as ``x - max - log(sum(exp(x -
  max)))``, the converter keeps it in float between (de)quantize ops: measured valid, 58.7 dB.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from liteport import __version__
from liteport.api import Job, Result, RewriteInfo, hookimpl

REWRITES = (
    RewriteInfo(
        name="gelu-erf-free",
        version=__version__,
        ops=("Erf", "aten.erf", "aten.gelu"),
        description="exact GELU without Erf: Abramowitz-Stegun erf from exp/abs (|error| < 1.5e-7)",
    ),
    RewriteInfo(
        name="adaptive-pool-fixed",
        version=__version__,
        ops=("aten.adaptive_max_pool2d", "aten.adaptive_avg_pool2d", "AdaptiveMaxPool2d"),
        description="adaptive max/avg pooling whose output divides the input -> fixed pooling",
    ),
    RewriteInfo(
        name="recurrent-unroll",
        version=__version__,
        ops=("LSTM", "GRU", "aten.lstm", "aten.gru", "WHILE"),
        description="LSTM/GRU -> their cell equations unrolled over the static sequence length",
    ),
    RewriteInfo(
        name="log-softmax-decompose",
        version=__version__,
        ops=("LOG_SOFTMAX", "LogSoftmax", "aten.log_softmax", "aten._log_softmax"),
        description="log_softmax -> x - max - log(sum(exp(x - max))), quantizable op by op",
    ),
)


@hookimpl
def liteport_rewrites() -> Iterator[RewriteInfo]:
    yield from REWRITES


@hookimpl
def liteport_rewrite(job: Job, graph: Any) -> Result:
    from liteport.rewrites import builtin  # imports torch: only inside the torch environment

    replaced = builtin.apply(str(job.options["rewrite"]), graph)
    return Result(status="ok", job_id=job.id, kind=job.kind, facts={"replaced": replaced})
