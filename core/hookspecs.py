"""The liteport hook specifications: the whole plugin contract in one module.

Registration hooks run on the host, must be cheap and must not import torch or TensorFlow.
Work hooks run inside a worker, in the environment the job names. The plugin manager calls only
the plugin that registered the backend, quantizer or validator a job names, so an implementation
never checks ``job.backend`` itself and always returns a Result (or raises a LiteportError).
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from liteport.types import BackendInfo, Job, QuantizerInfo, Result, ValidatorInfo

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
