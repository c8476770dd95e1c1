"""Classify what onnx2tf reports into liteport's error kinds.

onnx2tf runs as a subprocess (it calls ``sys.exit`` on errors and rewrites its input file),
so its failures are read from its output. Measured on onnx2tf 1.29.24: an ONNX op without an
implementation prints ``ERROR: <Op> OP is not yet implemented.``; an op whose conversion
raises prints ``ERROR: The trace log is below.``, the Python traceback, then
``ERROR: onnx_op_name: <node>``; a quantized variant that fails prints its traceback as a
warning and ``<what> tflite output failed.``, and the file is simply missing. Output is
colored with ANSI escapes, which are removed before reading.

An op with no TFLite builtin (``Erf`` of an exact GELU, measured) is not an error to onnx2tf: it
writes the file with a Flex op (``FlexErf``, a TensorFlow kernel) that LiteRT cannot load. The
written file's op table is read (``non_builtin_ops``) and such a file is an ``unsupported_op``
naming the ops, as onnx-tf's converter reports them, instead of a model the validator cannot load.
onnx2tf 2.6's int8 path fails earlier on the same ops (its calibration interpreter has no Flex
delegate: ``(FlexErf) failed to prepare``): that is the same ``unsupported_op``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from liteport.api import ConverterError, LiteportError, UnsupportedOp

MAX_MESSAGE = 240
UNSUPPORTED_HINT = "replace that op in the model, export at another --opset, or try another backend"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NOT_IMPLEMENTED = re.compile(r"(?P<op>[A-Za-z][A-Za-z0-9_]*) OP is not yet implemented")
_NODE = re.compile(r"ERROR:\s*onnx_op_name:\s*(?P<node>\S+)")
_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?(?P<type>[A-Z]\w*(?:Error|Exception|Exit)):\s*(?P<text>.*\S)"
)
_FAILED_OUTPUT = re.compile(r"(?P<what>[^\n]*tflite output failed\.)")
# onnx2tf 2.6 calibrates int8 in an interpreter without Flex: "Node number 13 (FlexErf) failed to prepare".
_FLEX_PREPARE = re.compile(r"\(Flex(?P<op>\w+)\) failed to prepare")
# onnx2tf's generic advice lines, printed after every failure: never the cause.
_ADVICE = (
    "The trace log is below",
    "Read this and deal with it",
    "Alternatively, if the input OP",
    "If the input OP of ONNX",
    "Also, for models that include",
    "input_onnx_file_path:",
    "onnx_op_name:",
)


def plain(text: str) -> str:
    """``text`` without ANSI color codes."""
    return _ANSI.sub("", text)


def classify(output: str, model: str, *, exit_code: int, wanted: str) -> LiteportError:
    """A one-line liteport error for a failed onnx2tf run on ``model`` that did not write ``wanted``."""
    text = plain(output)
    found = _NOT_IMPLEMENTED.search(text)
    if found:
        return UnsupportedOp(
            f"{model}: ONNX op {found['op']} is not implemented in onnx2tf", hint=UNSUPPORTED_HINT
        )
    flex = sorted({match["op"] for match in _FLEX_PREPARE.finditer(text)})
    if flex:  # the float graph holds TensorFlow-only ops: no int8 calibration can run it
        return non_builtin_error(model, flex, [])
    node = _NODE.search(text)
    exception = _last_exception(text)
    if node:
        cause = f": {exception}" if exception else ""
        return ConverterError(_shorten(f"{model}: onnx2tf failed on ONNX node {node['node']}{cause}"))
    first_error = _first_error_line(text)
    if first_error:
        return ConverterError(_shorten(f"{model}: onnx2tf: {first_error}"))
    failed = _FAILED_OUTPUT.search(text)
    if failed:
        cause = f" ({exception})" if exception else ""
        return ConverterError(_shorten(f"{model}: onnx2tf: {failed['what'].strip()}{cause}"))
    if exception:
        return ConverterError(_shorten(f"{model}: onnx2tf: {exception}"))
    return ConverterError(
        f"{model}: onnx2tf exited with code {exit_code} without writing {wanted}",
        hint="see convert.log and onnx2tf.log in the attempt folder",
    )


def non_builtin_ops(path: Path) -> tuple[list[str], list[str]]:
    """(Flex op names without "Flex", other custom op codes) used by the operators of a .tflite file."""
    schema = _tflite_schema()
    buf = bytearray(path.read_bytes())
    model = schema.Model.GetRootAs(buf, 0)  # the lazy API: reads the op table, not the weights
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == schema.BuiltinOperator.CUSTOM
        raw = code.CustomCode() if custom else None
        codes.append(raw.decode("utf-8", "replace") if raw else ("CUSTOM" if custom else None))
    used = {
        codes[model.Subgraphs(s).Operators(j).OpcodeIndex()]
        for s in range(model.SubgraphsLength())
        for j in range(model.Subgraphs(s).OperatorsLength())
    }
    names = sorted(name for name in used if name)
    flex = [name[len("Flex") :] for name in names if name.startswith("Flex")]
    return flex, [name for name in names if not name.startswith("Flex")]


def non_builtin_error(model: str, flex: list[str], custom: list[str]) -> UnsupportedOp:
    """One line naming the ops LiteRT lacks in onnx2tf's output (the op names, e.g. ``Erf``)."""
    parts = []
    if flex:
        parts.append(f"{', '.join(flex)} (Flex: TensorFlow kernels)")
    if custom:
        parts.append(f"{', '.join(custom)} (custom)")
    return UnsupportedOp(
        _shorten(f"{model}: onnx2tf converted to ops LiteRT cannot run: {'; '.join(parts)}"),
        hint=UNSUPPORTED_HINT,
    )


def _tflite_schema() -> Any:
    """The TFLite flatbuffer schema module of this environment (ai-edge-litert, else TensorFlow's)."""
    import importlib

    for name in ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ConverterError("cannot read onnx2tf's .tflite: neither ai-edge-litert nor TensorFlow is installed")


def _first_error_line(text: str) -> str | None:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("ERROR:"):
            message = stripped[len("ERROR:") :].strip()
            if message and not message.startswith(_ADVICE):
                return message
    return None


def _last_exception(text: str) -> str | None:
    """``Type: message`` of the last exception line of the last traceback in ``text``."""
    found = None
    for line in text.splitlines():
        match = _EXCEPTION.match(line.strip())
        if match:
            found = f"{match['type']}: {match['text']}"
    return found


def _shorten(message: str) -> str:
    line = message.strip().splitlines()[0]
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"
