"""The liteport hook specifications: the whole plugin contract in one module.

Registration hooks run on the host, must be cheap and must not import torch or TensorFlow.
Work hooks run inside a worker, in the environment the job names. The plugin manager calls only
the plugin that registered the backend, quantizer or validator a job names, so an implementation
never checks ``job.backend`` itself and always returns a Result (or raises a LiteportError).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy

from liteport.types import BackendInfo, Job, QuantizerInfo, Result, RewriteInfo, ValidatorInfo

PROJECT = "liteport"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def liteport_backends() -> Iterable[BackendInfo]:  # type: ignore[empty-body]
    """Register converter backends.

    **Example:** ``yield BackendInfo(name="my-backend", version="1.0", environments=(...), modes=("fp32",))``
    """


@hookspec
def liteport_quantizers() -> Iterable[QuantizerInfo]:  # type: ignore[empty-body]
    """Register quantizers that backends may delegate quantization modes to."""


@hookspec
def liteport_validators() -> Iterable[ValidatorInfo]:  # type: ignore[empty-body]
    """Register validators that judge every converted model."""


@hookspec
def liteport_rewrites() -> Iterable[RewriteInfo]:  # type: ignore[empty-body]
    """Register graph rewrites that replace an op some backend lacks by an equivalent form."""


@hookspec(firstresult=True)
def liteport_convert(job: Job) -> Result | None:  # type: ignore[empty-body]
    """Convert ``job.model`` in ``job.mode`` with the backend this plugin registered (``job.backend``).

    Write the model to ``<job.workdir>/model.tflite`` and return it in ``artifacts["tflite"]``,
    with ``facts["input_layout"]`` / ``facts["output_layout"]`` set to the layout emitted.
    """


@hookspec(firstresult=True)
def liteport_quantize(job: Job) -> Result | None:  # type: ignore[empty-body]
    """Quantize ``job.options["saved_model"]`` in ``job.mode`` with this plugin's quantizer."""


@hookspec(firstresult=True)
def liteport_validate(job: Job) -> Result | None:  # type: ignore[empty-body]
    """Judge ``job.options["tflite"]`` against the reference with this plugin's validator."""


@hookspec(firstresult=True)
def liteport_tensor_map(job: Job) -> Result | None:  # type: ignore[empty-body]
    """Name the PyTorch module behind this backend's TFLite tensors, for ``liteport explain``.

    Optional; runs in the backend's environment. ``job.options["tflite"]`` is the converted file and
    ``job.options["modules"]`` the model's modules (``path``, ``type``) in execution order. Return
    ``facts["tensor_map"]``: tensor name -> dotted module path, for the tensors whose name says which
    module produced them. Tensors left out fall back to the default spellings (dotted paths, ONNX
    scopes) and, in quantized modes, to the float conversion's matches.
    """


@hookspec(firstresult=True)
def liteport_rewrite(job: Job, graph: Any) -> Result | None:  # type: ignore[empty-body]
    """Apply the rewrite ``job.options["rewrite"]`` this plugin registered to ``graph``, in place.

    Runs in the torch environment. ``graph`` is the model as a ``torch.fx.GraphModule`` of ATen ops
    (``torch.export`` of the model, unlifted); replace the op's nodes and return
    ``Result(status="ok", facts={"replaced": <nodes replaced>})`` (0: nothing to rewrite here).
    liteport re-exports the graph, checks it against the original and hands it to the backend.
    """
