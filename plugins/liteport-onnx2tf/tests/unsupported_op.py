"""A model whose ONNX export holds an op onnx2tf does not implement, for the conformance suite.

onnx2tf 1.29.24 implements every standard ONNX op up to opset 13 (measured against
``onnx.defs``), so the suite's default model (``torch.unique`` -> ``Unique``) converts. What
onnx2tf cannot handle is an op outside the standard domains: this model exports its
activation as ``liteport.test::Swish2`` through a ``symbolic`` (TorchScript exporter), while
PyTorch computes it normally for the reference outputs.

Use: ``pytest -p liteport.testing --liteport-backend onnx2tf
--liteport-unsupported-model plugins/liteport-onnx2tf/tests/unsupported_op.py:build``
"""

from __future__ import annotations

from typing import Any


def build() -> tuple[Any, tuple[Any, ...]]:
    """A conv followed by a custom-domain activation, and one NCHW example input."""
    import torch
    from torch import nn

    class Swish2(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(2.0 * x)

        @staticmethod
        def symbolic(g: Any, x: Any) -> Any:
            return g.op("liteport.test::Swish2", x).setType(x.type())

    class CustomActivation(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = Swish2.apply(self.conv(x))
            return out

    torch.manual_seed(0)
    return CustomActivation().eval(), (torch.randn(1, 3, 16, 16),)
