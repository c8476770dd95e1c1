"""The small graph the transplant builds before writing it (numpy only, no torch, no TFLite)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass
class QTensor:
    """One TFLite tensor. Quantized when ``scale`` is set; constant when ``data`` is set."""

    name: str
    shape: list[int]
    dtype: str  # "int8" | "int32"
    scale: list[float] | None = None
    zero_point: list[int] | None = None
    axis: int = 0  # quantized_dimension of per-channel parameters
    data: npt.NDArray[Any] | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None


@dataclass
class Op:
    """One TFLite operator: a BuiltinOperator name, tensor indices and its options."""

    code: str
    inputs: list[int]
    outputs: list[int]
    options_type: str | None = None  # e.g. "Conv2DOptions"
    options: dict[str, Any] = field(default_factory=dict)
    fused: str = "NONE"  # fused activation, for ops that take one


@dataclass
class Graph:
    tensors: list[QTensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def add(self, tensor: QTensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def const(self, name: str, values: npt.ArrayLike, dtype: str = "int32") -> int:
        data = np.asarray(values, dtype=np.int32 if dtype == "int32" else np.int8)
        return self.add(QTensor(name=name, shape=list(data.shape), dtype=dtype, data=data))

    def like(self, source: int, name: str, shape: list[int]) -> int:
        """A new int8 tensor carrying the quantization of tensor ``source``."""
        src = self.tensors[source]
        return self.add(
            QTensor(name=name, shape=shape, dtype=src.dtype, scale=src.scale, zero_point=src.zero_point)
        )
