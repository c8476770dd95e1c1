"""Classify what nobuco reports into liteport's error kinds.

nobuco prints a tree of the traced model and raises a bare ``Exception``, so the cause is read
from its output (captured in ``nobuco.log``). Measured on nobuco 0.17.0:

* an op without a converter: the tree after ``Unimplemented nodes:`` marks it in the
  "no converter found" style (red, inverse: ``ESC[31m ESC[7m erfinv[torch]``) and nobuco raises
  ``Exception('Unimplemented nodes')`` -> ``unsupported_op`` naming every such op;
* a converter that rejects the way an op is used asserts (``torch.unique`` converts 1-D input
  only): ``Conversion exception on node 'unique'``, its traceback ending in ``AssertionError``
  (or ``NotImplementedError``), then ``Exception('Failed conversion: ...')`` -> ``unsupported_op``;
* any other converter exception on a node -> ``converter_error`` naming the node and the
  exception; anything else (Keras, SavedModel) -> ``converter_error`` with its first line.
"""

from __future__ import annotations

import re

from liteport.api import ConverterError, LiteportError, UnsupportedOp

MAX_MESSAGE = 240
UNSUPPORTED_HINT = "replace that op in the model, register a nobuco converter for it, or try another backend"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
UNIMPLEMENTED_SECTION = "Unimplemented nodes:"
# nobuco's "no converter found" style (Stylizer.style_not_implemented), then "<name>[<module>]".
_NO_CONVERTER = re.compile(r"\x1b\[31m\x1b\[7m(?P<name>[A-Za-z_][\w.]*)\[(?P<module>[^\]\x1b]*)\]")
_FAILED_NODE = re.compile(r"Conversion exception on node '(?P<node>[^']+)'")
_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?(?P<type>[A-Z]\w*(?:Error|Exception))(?::\s*(?P<text>.*\S))?$"
)
# Exceptions a converter raises for an argument combination it does not handle.
REJECTIONS = ("AssertionError", "NotImplementedError")


def plain(text: str) -> str:
    """``text`` without ANSI color codes."""
    return _ANSI.sub("", text)


def missing_converters(output: str) -> list[str]:
    """Ops nobuco found no converter for (``torch.erfinv``), in order, from its raw (colored) output."""
    _, found, section = output.rpartition(UNIMPLEMENTED_SECTION)
    if not found:
        return []
    names = [
        f"{m['module']}.{m['name']}" if m["module"] else m["name"] for m in _NO_CONVERTER.finditer(section)
    ]
    return list(dict.fromkeys(names))


def failed_nodes(output: str) -> list[tuple[str, str]]:
    """(node, ``Type: message``) of each node whose converter raised, from nobuco's output."""
    text = plain(output)
    failed = []
    for match in _FAILED_NODE.finditer(text):
        exception = ""
        for line in text[match.end() :].splitlines()[1:]:
            found = _EXCEPTION.match(line.strip())
            if found and not line.lstrip().startswith(("│", "╭", "╰")):
                exception = found["type"] + (f": {found['text']}" if found["text"] else "")
                break
        failed.append((match["node"], exception))
    return list(dict.fromkeys(failed))


def classify(exc: BaseException, output: str, model: str) -> LiteportError:
    """A one-line liteport error for a failed nobuco conversion of ``model``."""
    missing = missing_converters(output)
    if missing:
        ops = ", ".join(missing)
        return UnsupportedOp(_shorten(f"{model}: nobuco has no converter for {ops}"), hint=UNSUPPORTED_HINT)
    failed = failed_nodes(output)
    rejected = [(node, why) for node, why in failed if why.split(":")[0] in REJECTIONS]
    if rejected:
        node, why = rejected[0]
        return UnsupportedOp(
            _shorten(f"{model}: nobuco's converter for {node} does not handle this use of it ({why})"),
            hint=UNSUPPORTED_HINT,
        )
    if failed:
        node, why = failed[0]
        return ConverterError(
            _shorten(f"{model}: nobuco failed to convert node {node}: {why or 'see nobuco.log'}")
        )
    lines = [line.strip() for line in plain(str(exc)).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return ConverterError(
        _shorten(f"{model}: nobuco: {type(exc).__name__}" + (f": {first}" if first else ""))
    )


def _shorten(message: str) -> str:
    line = message.strip().splitlines()[0]
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"
