"""The spellings of a PyTorch module path that converters leave in TFLite tensor names.

Converter-neutral defaults: the dotted path itself (``features.3.conv.0``) and the ONNX scope
of the legacy exporter (``/features/features.3/conv/conv.0/Conv``), which ONNX-based converters
copy into names when they keep any. A tensor name may join several locations with ``;`` (fused
ops); the first is the op that produced the tensor. Backends with their own schemes (e.g.
litert-torch's module stacks) answer through the ``liteport_tensor_map`` hook instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def onnx_scopes(path: str) -> list[str]:
    """``features.3.conv.0.0`` -> ``['features', 'features.3', 'conv', 'conv.0', 'conv.0.0']``.

    The exporter names a child of a container by the container's attribute plus the index, so
    numeric parts stay attached to the last named part before them.
    """
    parts = path.split(".")
    scopes, start = [], 0
    for i, part in enumerate(parts):
        if not part.isdigit():
            start = i
        scopes.append(".".join(parts[start : i + 1]))
    return scopes


def key_table(paths: Iterable[str]) -> dict[str, str]:
    """Every default spelling of each module path -> the path (dotted, and ONNX scopes joined by /)."""
    table: dict[str, str] = {}
    for path in paths:
        if not path:
            continue
        table.setdefault(path, path)
        table.setdefault("/".join(onnx_scopes(path)), path)
    return table


def modules_in_name(name: str, table: Mapping[str, str]) -> list[str]:
    """Module paths a tensor name carries, the producing location's first; [] when none.

    Each ``;``-separated location is split at ``/``; a ``:role`` or ``:0`` suffix is dropped; the
    longest run of parts that spells a module wins (the deepest module of that location).
    """
    found: list[str] = []
    for location in name.split(";"):
        parts = [part.split(":")[0] for part in location.split("/")]
        if len(parts) == 1 and parts[0].isdigit():
            continue  # a bare counter (``...;2``) is no module path, even when a child is called "2"
        best = _longest(parts, table)
        if best is not None and best not in found:
            found.append(best)
    return found


def _longest(parts: list[str], table: Mapping[str, str]) -> str | None:
    for size in range(len(parts), 0, -1):
        for start in range(len(parts) - size + 1):
            hit = table.get("/".join(parts[start : start + size]))
            if hit is not None:
                return hit
    return None


def tflite_tensor_names(path: str) -> list[str]:
    """The tensor names of a .tflite file's main subgraph, by index (for ``liteport_tensor_map`` hooks).

    Reads the flatbuffer with ai-edge-litert's schema, or TensorFlow's where only TensorFlow is there.
    """
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # a TensorFlow-only environment
        from tensorflow.lite.python import schema_py_generated as schema  # type: ignore[no-redef]

    with open(path, "rb") as handle:
        model = schema.Model.GetRootAs(bytearray(handle.read()), 0)
    subgraph = model.Subgraphs(0)
    found = []
    for i in range(subgraph.TensorsLength()):
        raw = subgraph.Tensors(i).Name()
        found.append(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or ""))
    return found
