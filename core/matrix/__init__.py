"""The compatibility matrix: planning cells, running them, and the journal they land in."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """``liteport.matrix(...)`` runs a matrix from Python (``liteport.python_api.matrix``) while
    ``liteport.matrix.cells`` and the rest stay this package's modules."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module("liteport.python_api").matrix(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
