"""liteport's public plugin API: everything a backend, quantizer or validator plugin may import.

Built-in backends use only this module (an import-linter contract checks it), so a third-party
plugin has exactly the same footing. Names not listed in ``__all__`` are internal and may change.

* Hooks: ``hookimpl`` marks an implementation; the specifications are in ``liteport.hookspecs``.
* Records: what registration hooks yield (``BackendInfo``, ``EnvironmentSpec``, ``QuantizerInfo``,
  ``ValidatorInfo``, ``RewriteInfo``) and what work hooks take and return (``Job``, ``Result``,
  ``ErrorInfo``).
* Errors: raise one of the ``LiteportError`` subclasses from a work hook; its ``kind`` becomes the
  error kind of the result and its message the one-line cause.
* Models: ``load_model(job.model)`` gives the user's ``nn.Module`` and example inputs (imports
  torch: call it inside the hook body); ``parse_ref`` reads a ModelRef without importing it, and
  ``model_name`` gives its display name for messages.
* Work files: the names stages exchange inside ``job.workdir`` and the run folder.
* ``qat``: PyTorch eager-mode QAT helpers (convert to PyTorch's int8 model, trace it, qparams).
* ``tflite_tensor_names``: a converted file's tensor names, for ``liteport_tensor_map`` hooks.
"""

from __future__ import annotations

from liteport.errors import (
    BadInput,
    ConverterError,
    EnvironmentBuildError,
    ExportError,
    LiteportError,
    QuantizerError,
    UnsupportedOp,
    ValidatorError,
)
from liteport.explain.names import tflite_tensor_names
from liteport.hookspecs import hookimpl
from liteport.stages import qat_reference as qat
from liteport.stages.modelref import LoadedModel, load_model, model_name, parse_ref
from liteport.stages.workfiles import CALIBRATION_NPZ, REFERENCE_JSON, REFERENCE_NPZ, TFLITE
from liteport.types import (
    LAYOUTS,
    MODES,
    BackendInfo,
    EnvironmentSpec,
    ErrorInfo,
    ErrorKind,
    Job,
    ModelSpec,
    QuantizerInfo,
    Result,
    RewriteInfo,
    Status,
    ValidatorInfo,
    failure,
)

__all__ = [
    "CALIBRATION_NPZ",
    "LAYOUTS",
    "MODES",
    "REFERENCE_JSON",
    "REFERENCE_NPZ",
    "TFLITE",
    "BackendInfo",
    "BadInput",
    "ConverterError",
    "EnvironmentBuildError",
    "EnvironmentSpec",
    "ErrorInfo",
    "ErrorKind",
    "ExportError",
    "Job",
    "LiteportError",
    "LoadedModel",
    "ModelSpec",
    "QuantizerError",
    "QuantizerInfo",
    "Result",
    "RewriteInfo",
    "Status",
    "UnsupportedOp",
    "ValidatorError",
    "ValidatorInfo",
    "failure",
    "hookimpl",
    "load_model",
    "model_name",
    "parse_ref",
    "qat",
    "tflite_tensor_names",
]
