"""Small models for the conformance suite (imported inside the torch environment only).

``unique_values`` uses ``torch.unique`` (``aten._unique2``; ONNX ``Unique``), an op converters
rarely support: ai-edge-torch has no lowering for it and onnx-tf 1.10 has no ``Unique``
handler. A backend that does support it names another model with ``--liteport-unsupported-model``.
"""

# mypy: allow-subclassing-any

from __future__ import annotations

from typing import Any


def unique_values() -> tuple[Any, tuple[Any, ...]]:
    """A model whose output depends on ``torch.unique`` of its input, and one example input."""
    import torch
    from torch import nn

    class UniqueValues(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.unique(x.round()).float().sum().reshape(1) + x.mean()

    torch.manual_seed(0)
    return UniqueValues().eval(), (torch.randn(1, 16),)
