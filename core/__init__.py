"""liteport: convert PyTorch models to TensorFlow Lite through pinned converter backends.

The host package never imports torch or TensorFlow at import time; converters run in
their own environments and exchange only files and JSON with the host.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``liteport.convert(...)`` and ``liteport.matrix(...)``, loaded on first use.

    The Python API sits in the top layer (``liteport.python_api``); it is looked up by name when
    called, so ``import liteport`` stays instant and no lower layer comes to depend on it.
    """
    if name == "convert":
        return importlib.import_module("liteport.python_api").convert
    if name == "matrix":  # the subpackage, made callable (liteport/matrix/__init__.py)
        return importlib.import_module("liteport.matrix")
    raise AttributeError(f"module 'liteport' has no attribute {name!r}")
