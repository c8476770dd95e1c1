"""Classify what litert-torch / ai-edge-torch raise into liteport's error kinds.

Measured on both environments (torch 2.13): a missing lowering raises a bare
``RuntimeError("Lowering not found: aten.<op>")`` from the FX interpreter that lowers the
exported graph to MLIR; a lowering that exists but cannot handle the node (``aten.nonzero``'s
data-dependent shape) raises whatever its JAX bridge raised, from inside that same
interpreter; a graph torch.export cannot capture (data-dependent control flow) raises
``GuardOnDataDependentSymNode`` from torch.export's tracer. Exception types alone do not
separate these, so the traceback is read: which stage's code raised it, and which node was
being lowered.
"""

from __future__ import annotations

from types import TracebackType

from liteport.api import ConverterError, ExportError, LiteportError, QuantizerError, UnsupportedOp

# The FX interpreters lowering one node at a time: litert-torch's and the nightly's odml_torch.
_LOWERING_FILES = ("litert_torch/backend/export.py", "ai_edge_torch/odml_torch/export.py")
# torch.export's tracers: non-strict (_trace / _export) and strict (dynamo).
_EXPORT_PARTS = ("torch/export/_trace.py", "torch/_export/", "torch/_dynamo/")
_QUANTIZER_PARTS = ("ai_edge_quantizer/", "torchao/quantization/")
_MAX_MESSAGE = 240
_UNSUPPORTED_HINT = "replace that op in the model, or try another backend or environment"


def classify(exc: BaseException, model: str) -> LiteportError:
    """A one-line liteport error for ``exc``, raised while converting ``model``."""
    summary = one_line(exc)
    op = _op_being_lowered(exc.__traceback__)
    if op is not None:
        if "Lowering not found" in str(exc):
            return UnsupportedOp(f"{model}: {op} has no lowering in this converter", hint=_UNSUPPORTED_HINT)
        return UnsupportedOp(f"{model}: lowering {op} failed: {summary}", hint=_UNSUPPORTED_HINT)
    files = _traceback_files(exc.__traceback__)
    if any(part in f for f in files for part in _EXPORT_PARTS):
        return ExportError(f"{model}: torch.export failed: {summary}")
    if any(part in f for f in files for part in _QUANTIZER_PARTS):
        return QuantizerError(f"{model}: quantizer failed: {summary}")
    return ConverterError(f"{model}: {summary}")


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, shortened to fit a report cell."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _frames(tb: TracebackType | None) -> list[TracebackType]:
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    return frames


def _traceback_files(tb: TracebackType | None) -> list[str]:
    return [frame.tb_frame.f_code.co_filename.replace("\\", "/") for frame in _frames(tb)]


def _op_being_lowered(tb: TracebackType | None) -> str | None:
    """The target of the FX node the converter was lowering when it failed, if it was lowering one."""
    for frame in reversed(_frames(tb)):
        code = frame.tb_frame.f_code
        if code.co_name == "run_node" and code.co_filename.replace("\\", "/").endswith(_LOWERING_FILES):
            node = frame.tb_frame.f_locals.get("node")
            target = getattr(node, "target", None)
            if target is not None:
                return str(target)
    return None
