"""Classify what onnx-tf raises into liteport's error kinds, and find unsupported ops up front.

Measured on both environments (onnx-tf 1.10.0, TF 2.8.4 and 2.15.1): an ONNX op without a
handler, or whose handler lacks the opset's version (``Unsqueeze``/``Squeeze`` 13: onnx-tf
1.10 stops at version 11), raises ``BackendIsNotSupposedToImplementIt("<Op> version <N> is
not implemented.")`` from inside the ``tf.function`` that ``export_graph`` traces, so
autograph re-raises it as a many-line "in user code:" message and the op's own sentence is
only in the exception context. A handler that exists but refuses an attribute combination
raises ``RuntimeError("<what> is not supported in Tensorflow.")``. Ops are therefore checked
against onnx-tf's handler table before conversion (``unsupported_ops``), and an exception that
still escapes is read for those sentences (``classify``).
"""

from __future__ import annotations

import re
from typing import Any

from liteport.api import ConverterError, LiteportError, UnsupportedOp

_MAX_MESSAGE = 240
UNSUPPORTED_HINT = "rewrite that part of the model with other ops, or try another backend"
_NOT_IMPLEMENTED = re.compile(
    r"(?:^|: )(?P<op>[A-Z][A-Za-z0-9_]*)(?: version (?P<version>\d+))? is not implemented\.", re.MULTILINE
)
_NOT_SUPPORTED = re.compile(r"(?:^|:\s)\s*(?P<what>[^:\n]+?) is not supported in Tensorflow", re.MULTILINE)
_ERROR_LINE = re.compile(r"^\s*(?:\w+Error|\w+Exception|error):\s*\S")


def unsupported_ops(onnx_model: Any) -> list[tuple[str, int]]:
    """(op type, version) of every node type onnx-tf has no handler version for, in graph order."""
    from onnx import defs
    from onnx_tf.backend import TensorflowBackend

    handlers = TensorflowBackend._get_handlers(onnx_model.opset_import)
    opsets = {o.domain: o.version for o in onnx_model.opset_import}
    missing: list[tuple[str, int]] = []
    for node in _all_nodes(onnx_model.graph):
        handler = handlers.get(node.domain, {}).get(node.op_type)
        if handler is None:
            version = _since_version(defs, node.op_type, node.domain, opsets.get(node.domain, 1))
        elif getattr(handler, f"version_{handler.SINCE_VERSION}", None) is None:
            version = int(handler.SINCE_VERSION)
        else:
            continue
        if (node.op_type, version) not in missing:
            missing.append((node.op_type, version))
    return missing


def unsupported_error(model: str, missing: list[tuple[str, int]], opset: int, onnx_tf: str) -> UnsupportedOp:
    """One line naming the first unsupported op and listing the others."""
    op, version = missing[0]
    more = f" (and {', '.join(f'{o} v{v}' for o, v in missing[1:])})" if missing[1:] else ""
    return UnsupportedOp(
        f"{model}: ONNX op {op} version {version} (opset {opset}) is not implemented "
        f"in onnx-tf {onnx_tf}{more}",
        hint=UNSUPPORTED_HINT,
    )


def classify(exc: BaseException, model: str, opset: int) -> LiteportError:
    """A one-line liteport error for ``exc``, raised while onnx-tf converted ``model``."""
    for text in _messages(exc):
        found = _NOT_IMPLEMENTED.search(text)
        if found:
            version = f" version {found['version']}" if found["version"] else ""
            return UnsupportedOp(
                f"{model}: ONNX op {found['op']}{version} (opset {opset}) is not implemented in onnx-tf",
                hint=UNSUPPORTED_HINT,
            )
        found = _NOT_SUPPORTED.search(text)
        if found:
            return UnsupportedOp(
                f"{model}: onnx-tf: {found['what'].strip()} is not supported (opset {opset})",
                hint=UNSUPPORTED_HINT,
            )
    return ConverterError(f"{model}: onnx-tf failed: {one_line(exc)}")


def one_line(exc: BaseException) -> str:
    """``Type: first meaningful line``, skipping autograph's "in user code:" preamble."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    if lines and lines[0].startswith("in user code") and errors:
        # autograph: the original error is the last "Type: message" line of the listing
        summary = errors[-1]
    else:
        summary = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return summary if len(summary) <= _MAX_MESSAGE else summary[: _MAX_MESSAGE - 1] + "…"


def _messages(exc: BaseException) -> list[str]:
    """The messages of ``exc`` and of the exceptions it was raised from or during, innermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return [str(e) for e in reversed(seen)]


def _since_version(defs: Any, op_type: str, domain: str, opset: int) -> int:
    try:
        return int(defs.get_schema(op_type, max_inclusive_version=opset, domain=domain).since_version)
    except Exception:  # unknown op or custom domain: the opset is the best version we know
        return opset


def _all_nodes(graph: Any) -> list[Any]:
    """Nodes of ``graph`` and of its subgraphs (If / Loop / Scan bodies)."""
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.HasField("g"):
                nodes += _all_nodes(attribute.g)
            for sub in attribute.graphs:
                nodes += _all_nodes(sub)
    return nodes
