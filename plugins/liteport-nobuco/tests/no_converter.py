"""A model with an op nobuco 0.17 has no converter for (``torch.erfinv``), for the unsupported-op checks.

The conformance suite's default model (``torch.unique`` of a 2-D tensor) fails on nobuco's
converter, which handles 1-D input only; this one takes the other path, "no converter found".

Use: ``liteport convert plugins/liteport-nobuco/tests/no_converter.py:build --backend nobuco``
"""

from __future__ import annotations

from typing import Any


def build() -> tuple[Any, tuple[Any, ...]]:
    """A conv followed by erfinv of a bounded activation, and one NCHW example input."""
    import torch
    from torch import nn

    class ErfinvHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.erfinv(0.5 * torch.tanh(self.conv(x)))

    torch.manual_seed(0)
    return ErfinvHead().eval(), (torch.randn(1, 3, 16, 16),)
