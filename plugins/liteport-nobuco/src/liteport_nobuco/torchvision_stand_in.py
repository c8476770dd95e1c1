"""A stand-in for the parts of torchvision that nobuco 0.17 touches when it is imported.

nobuco imports torchvision without declaring it: its tracer wraps the functions of a few
torchvision modules and it registers converters for ``torchvision.ops`` (``nms``,
``batched_nms``, ``StochasticDepth``, ``FrozenBatchNorm2d``, ``boxes._upcast``) and for the
``torchvision::nms`` operator. torchvision's PyPI wheels are built against CUDA torch and do not
import beside the CPU torch of the environment ("operator torchvision::nms does not exist"); the
matching CUDA torch/torchvision pair costs 5.5 GB. A user model that needs torchvision fails
earlier, in the reference stage, which has no torchvision either; so nobuco only ever needs
these names to exist, and this module provides exactly them, in ``sys.modules`` of the worker.

Installed only when no real torchvision is importable, after the user's model is loaded (so
the model never sees the stand-in), and at most once per process.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

# Submodules nobuco reads (trace.Tracer.op_tracing_classes and node_converters.torchvision).
SUBMODULES = ("ops", "ops.boxes", "ops.poolers", "transforms", "transforms.functional", "utils")
MARKER = "__liteport_stand_in__"
_library: Any = None  # the torch.library.Library defining torchvision::nms, kept alive


def install() -> bool:
    """Put the stand-in in place unless torchvision imports for real; True when it was installed."""
    global _library
    present = sys.modules.get("torchvision")
    if present is not None:
        return bool(getattr(present, MARKER, False))
    if importlib.util.find_spec("torchvision") is not None:
        return False
    import torch
    from torch import nn

    if _library is None:
        # nobuco registers a converter for torch.ops.torchvision.nms: the schema must exist.
        _library = torch.library.Library("torchvision", "DEF")  # a schema only: no kernels needed
        _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("torchvision is not installed in this environment (liteport stand-in)")

    class StochasticDepth(nn.Module):  # type: ignore[misc]  # torch is untyped where mypy runs
        """Placeholder class: nobuco keys a converter on it; no model here can contain one."""

    class FrozenBatchNorm2d(nn.Module):  # type: ignore[misc]
        """Placeholder class, as above."""

    root = types.ModuleType("torchvision", "liteport stand-in for torchvision (see liteport_nobuco)")
    setattr(root, MARKER, True)
    root.__version__ = "0.0.0+liteport-stand-in"  # type: ignore[attr-defined]
    root._is_tracing = lambda: False  # type: ignore[attr-defined]
    modules = {"": root}
    for name in SUBMODULES:
        module = types.ModuleType(f"torchvision.{name}")
        setattr(module, MARKER, True)
        parent, _, child = name.rpartition(".")
        setattr(modules[parent], child, module)
        modules[name] = module
    ops = modules["ops"]
    ops.StochasticDepth = StochasticDepth  # type: ignore[attr-defined]
    ops.FrozenBatchNorm2d = FrozenBatchNorm2d  # type: ignore[attr-defined]
    ops.nms = unavailable  # type: ignore[attr-defined]
    ops.batched_nms = unavailable  # type: ignore[attr-defined]
    modules["ops.boxes"]._upcast = unavailable  # type: ignore[attr-defined]
    for name, module in modules.items():
        sys.modules["torchvision" + (f".{name}" if name else "")] = module
    return True
