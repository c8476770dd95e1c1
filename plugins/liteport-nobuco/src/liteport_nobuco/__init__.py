"""liteport-nobuco: a third-party liteport backend converting PyTorch to Keras (and TFLite) with nobuco."""

from __future__ import annotations

__version__ = "0.1.0"
