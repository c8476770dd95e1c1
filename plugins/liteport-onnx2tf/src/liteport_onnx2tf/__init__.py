"""liteport-onnx2tf: a third-party liteport backend converting ONNX to TFLite with onnx2tf."""

from __future__ import annotations

__version__ = "0.1.0"
