# Over 400 lines on purpose: one lowering method per supported PyTorch op, one graph.
"""Lower PyTorch's converted int8 model, node by node, to the transplant's int8 TFLite graph.

Input: the ``torch.fx`` trace of the ``convert``-ed model with every node's output recorded
(``liteport.stages.qat_reference.trace``). Shapes come from the recorded outputs; every quantization
parameter comes from the quantized modules themselves (a conv's ``scale``/``zero_point``, its
``weight()``'s per-channel scales, a ``QFunctional`` op's ``scale`` argument, a ``Quantize``
stub's), or is inherited from the input for ops PyTorch runs at the input's parameters (ReLU,
ReLU6, pooling, reshape): the qparams validator then checks them against what PyTorch's tensors
carried when the model ran, so the two paths check each other.

Internally every 4-D tensor is NHWC, as TFLite's kernels want; with NCHW I/O (the default)
a TRANSPOSE follows each 4-D input and precedes each 4-D output. Tensors are named after
PyTorch's (module path, or QFunctional path); helper tensors the transplant adds are named
``<tensor>:<role>`` after the tensor whose parameters they carry.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.fx
import torch.nn.functional as F
from torch import nn

from liteport.api import UnsupportedOp, qat
from liteport.backends.qat_transplant import qmath
from liteport.backends.qat_transplant.ir import Graph, Op, QTensor

SUPPORTED = (
    "QuantStub/DeQuantStub, Conv2d (incl. depthwise, strided, dilated, fused BN/ReLU), Linear (+ReLU), "
    "ReLU, ReLU6, Hardtanh(0,6|-1,1|0,1), FloatFunctional add/add_relu/cat, MaxPool2d, AvgPool2d, "
    "AdaptiveAvgPool2d, flatten/reshape/view, Dropout, Identity"
)
_HINT = "replace it, or convert this model with --quant int8 through another backend"
_FUSABLE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD")
_ALIAS_MODULES = (nn.Identity, nn.Dropout, nnq.DeQuantize)
_RESHAPE_METHODS = ("flatten", "view", "reshape")
_ALIAS_METHODS = ("contiguous", "dequantize")


def lower(traced: qat.Traced, model: str, nchw_io: bool = True) -> Graph:
    """The int8 TFLite graph of ``traced``; raises UnsupportedOp naming every unsupported node.

    Runs on the traced model's quantized engine: the add and cat tables the fitting reproduces
    are computed by PyTorch's own kernels, and the default engine's (x86) round some ties other
    than qnnpack's (issue 15: MobileNetV2's features.6.skip_add, a step off on XNNPACK).
    """
    with qat.quantized_engine(traced.engine):
        return _Lowering(traced, model, nchw_io).run()


def check_supported(
    gm: torch.fx.GraphModule, model: str, is_tensor: Callable[[torch.fx.Node], bool] | None = None
) -> None:
    """Raise UnsupportedOp naming every unsupported node (one line, with the supported set).

    Without ``is_tensor`` (before the model has run) only module calls are checked: a function
    or method node may compute a plain number (``x.size(0)``), which needs no lowering.
    """
    probe = _Lowering.__new__(_Lowering)
    probe.modules = dict(gm.named_modules())
    unsupported = []
    for node in gm.graph.nodes:
        if probe._handler(node) is not None:
            continue
        if is_tensor(node) if is_tensor else node.op == "call_module":
            unsupported.append(probe._describe(node))
    if unsupported:
        raise UnsupportedOp(
            f"{model}: {', '.join(unsupported)} not supported by qat-transplant (supported: {SUPPORTED})",
            hint=_HINT,
        )


class _Lowering:
    def __init__(self, traced: qat.Traced, model: str, nchw_io: bool) -> None:
        self.traced = traced
        self.model = model
        self.nchw_io = nchw_io
        self.gm = traced.graph_module
        self.modules = dict(self.gm.named_modules())
        self.graph = Graph()
        self.of: dict[str, int] = {}  # node name -> tensor index (NHWC when 4-D)
        self.producer: dict[int, Op] = {}

    # -- driver ------------------------------------------------------------------------

    def run(self) -> Graph:
        nodes = list(self.gm.graph.nodes)
        check_supported(self.gm, self.model, lambda n: self._is_tensor(n))
        for node in nodes:
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "output":
                self._output(node)
            elif self._is_tensor(node):
                handler = self._handler(node)
                assert handler is not None
                handler(node)
        return self.graph

    def _handler(self, node: torch.fx.Node) -> Callable[[torch.fx.Node], None] | None:
        if node.op in ("placeholder", "output", "get_attr"):
            return lambda n: None
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            kind = type(module)
            if kind is nnq.Quantize:
                return self._quantize
            if kind in (nnq.Conv2d, nniq.ConvReLU2d):
                return self._conv
            if kind in (nnq.Linear, nniq.LinearReLU):
                return self._linear
            if isinstance(module, _ALIAS_MODULES):
                return self._alias
            if isinstance(module, (nn.ReLU, nn.ReLU6, nnq.ReLU6, nn.Hardtanh)):
                return self._activation
            if kind is nn.MaxPool2d:
                return self._max_pool
            if kind is nn.AvgPool2d:
                return self._avg_pool
            if kind is nn.AdaptiveAvgPool2d:
                return self._adaptive_avg_pool
            if kind is nn.Flatten:
                return self._reshape
            return None
        if node.op == "call_function":
            target = node.target
            if target in (torch.ops.quantized.add, torch.ops.quantized.add_relu):
                return self._add
            if target is torch.ops.quantized.cat:
                return self._cat
            if target in (torch.flatten, torch.reshape):
                return self._reshape
            if target in (F.relu, torch.relu, F.relu6, F.hardtanh):
                return self._activation
            if target is F.max_pool2d:
                return self._max_pool
            if target is F.avg_pool2d:
                return self._avg_pool
            if target is F.adaptive_avg_pool2d:
                return self._adaptive_avg_pool
            if target in (F.dropout, operator.pos):
                return self._alias
            return None
        if node.op == "call_method":
            if node.target in _RESHAPE_METHODS:
                return self._reshape
            if node.target in _ALIAS_METHODS:
                return self._alias
            if node.target == "relu":
                return self._activation
        return None

    def _is_tensor(self, node: torch.fx.Node) -> bool:
        return isinstance(self.traced.values.get(node.name), torch.Tensor)

    def _describe(self, node: torch.fx.Node) -> str:
        if node.op == "call_module":
            return f"{node.target} ({type(self.modules[str(node.target)]).__name__})"
        name = getattr(node.target, "__name__", str(node.target))
        return f"{node.name} ({name})"

    def _fail(self, node: torch.fx.Node, why: str) -> UnsupportedOp:
        return UnsupportedOp(
            f"{self.model}: {self._describe(node)} {why}, not supported by qat-transplant "
            f"(supported: {SUPPORTED})",
            hint=_HINT,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _name(self, node: torch.fx.Node) -> str:
        return self.traced.names[node.name]

    def _value(self, node: torch.fx.Node) -> torch.Tensor:
        value = self.traced.values[node.name]
        assert isinstance(value, torch.Tensor)
        return value

    def _input(self, node: torch.fx.Node, index: int = 0) -> int:
        arg = node.args[index] if index < len(node.args) else node.kwargs.get("input")
        if not isinstance(arg, torch.fx.Node) or arg.name not in self.of:
            raise self._fail(node, "takes a float tensor (only fully quantized graphs are transplanted)")
        return self.of[arg.name]

    def _emit(
        self,
        code: str,
        inputs: Sequence[int],
        outputs: Sequence[int],
        options_type: str | None = None,
        fused: str = "NONE",
        **options: Any,
    ) -> Op:
        op = Op(code, list(inputs), list(outputs), options_type, dict(options), fused)
        self.graph.ops.append(op)
        for out in outputs:
            self.producer[out] = op
        return op

    def _activation_tensor(
        self, node: torch.fx.Node, scale: float, zero_point: int, shape: list[int] | None = None
    ) -> int:
        value = self._value(node)
        return self.graph.add(
            QTensor(
                name=self._name(node),
                shape=shape or qmath.nhwc_shape(value.shape),
                dtype="int8",
                scale=[float(scale)],
                zero_point=[qat.int8_zero_point(int(zero_point), str(value.dtype))],
            )
        )

    def _inherit(self, node: torch.fx.Node, source: int) -> int:
        """Output tensor of ``node`` at the parameters of tensor ``source`` (PyTorch keeps them)."""
        return self.graph.like(source, self._name(node), qmath.nhwc_shape(self._value(node).shape))

    def _transpose(self, source: int, perm: Sequence[int], name: str) -> int:
        shape = [self.graph.tensors[source].shape[p] for p in perm]
        out = self.graph.like(source, name, shape)
        perm_t = self.graph.const(f"{name}/perm", list(perm))
        self._emit("TRANSPOSE", [source, perm_t], [out], "TransposeOptions")
        return out

    def _pad(self, source: int, pads: tuple[tuple[int, int], tuple[int, int]], value: int | None) -> int:
        """PAD (zero point: a real 0) or PADV2 with ``value`` around the H and W of an NHWC tensor."""
        src = self.graph.tensors[source]
        (top, bottom), (left, right) = pads
        n, h, w, c = src.shape
        out = self.graph.like(source, f"{src.name}:pad", [n, h + top + bottom, w + left + right, c])
        paddings = self.graph.const(
            f"{src.name}:pad/paddings", [[0, 0], [top, bottom], [left, right], [0, 0]]
        )
        if value is None:
            self._emit("PAD", [source, paddings], [out], "PadOptions")
        else:
            fill = self.graph.add(
                QTensor(
                    name=f"{src.name}:pad_value",
                    shape=[],
                    dtype="int8",
                    scale=src.scale,
                    zero_point=src.zero_point,
                    data=np.asarray(value, dtype=np.int8),
                )
            )
            self._emit("PADV2", [source, paddings, fill], [out], "PadV2Options")
        return out

    def _weights(self, node: torch.fx.Node, module: Any) -> tuple[np.ndarray, list[float], list[int]]:
        weight = module.weight()
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scales = [float(s) for s in weight.q_per_channel_scales().tolist()]
            zero_points = [int(z) for z in weight.q_per_channel_zero_points().tolist()]
            if int(weight.q_per_channel_axis()) != 0:
                raise self._fail(node, "has weights quantized along a non-output axis")
        elif weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            scales, zero_points = [float(weight.q_scale())], [int(weight.q_zero_point())]
        else:
            raise self._fail(node, f"has {weight.qscheme()} weights")
        if weight.dtype != torch.qint8 or any(z != 0 for z in zero_points):
            # TFLite's int8 kernels take symmetric int8 weights only (zero point 0).
            raise self._fail(
                node, "has asymmetric or non-qint8 weights (use a symmetric qint8 weight qconfig)"
            )
        return weight.int_repr().numpy().astype(np.int8), scales, zero_points

    def _fit_scales(
        self, node: torch.fx.Node, source: int, module: Any, scales: list[float]
    ) -> tuple[list[float], float]:
        """Weight and output scales XNNPACK turns into PyTorch's requantization scales (qmath.fit_scales)."""
        pytorch_in = float(self._value(node.args[0]).q_scale())  # type: ignore[arg-type]
        s_out = float(module.scale)
        targets = [float(qmath.qnnpack_scale(pytorch_in, w, s_out)) for w in scales]
        return qmath.fit_scales(self._scale(source), scales, s_out, targets)

    def _scale(self, tensor: int) -> float:
        scale = self.graph.tensors[tensor].scale
        assert scale is not None
        return float(scale[0])

    def _bias(self, node: torch.fx.Node, module: Any, source: int, scales: list[float]) -> int:
        channels = int(module.weight().shape[0])
        q = _pytorch_bias(module, self._scale(source), channels)
        bias_scales = [self._scale(source) * s for s in scales]
        return self.graph.add(
            QTensor(
                name=f"{self._name(node)}.bias",
                shape=[channels],
                dtype="int32",
                scale=bias_scales,
                zero_point=[0] * len(bias_scales),
                axis=0,  # a bias is 1-D: its channel axis is 0 whatever the filter's
                data=q,
            )
        )

    # -- handlers --------------------------------------------------------------------------

    def _placeholder(self, node: torch.fx.Node) -> None:
        users = list(node.users)
        quantized_by = [
            u for u in users if u.op == "call_module" and type(self.modules[str(u.target)]) is nnq.Quantize
        ]
        if len(quantized_by) != len(users):
            raise self._fail(node, "is an input used in float (every input must go through a QuantStub)")

    def _quantize(self, node: torch.fx.Node) -> None:
        module = self.modules[str(node.target)]
        value = self._value(node)
        shape = [int(d) for d in value.shape]
        nhwc = qmath.nhwc_shape(shape)
        io_shape = shape if self.nchw_io else nhwc
        tensor = self._activation_tensor(node, float(module.scale), int(module.zero_point), shape=io_shape)
        self.graph.inputs.append(tensor)
        if len(shape) == 4 and self.nchw_io:
            tensor = self._transpose(tensor, (0, 2, 3, 1), f"{self._name(node)}:nhwc")
        self.of[node.name] = tensor

    def _alias(self, node: torch.fx.Node) -> None:
        self.of[node.name] = self._input(node)

    def _conv(self, node: torch.fx.Node) -> None:
        module = self.modules[str(node.target)]
        source = self._input(node)
        if module.padding_mode != "zeros":
            raise self._fail(node, f"uses padding_mode={module.padding_mode!r}")
        groups, cin, cout = int(module.groups), int(module.in_channels), int(module.out_channels)
        depthwise = groups > 1 and groups == cin
        if groups > 1 and not depthwise:
            raise self._fail(node, f"is a grouped convolution ({groups} groups of {cin // groups} channels)")
        weights, scales, zero_points = self._weights(node, module)
        scales, out_scale = self._fit_scales(node, source, module, scales)
        _, h, w, _ = self.graph.tensors[source].shape
        kernel, stride = tuple(module.kernel_size), tuple(module.stride)
        dilation = tuple(module.dilation)
        padding = module.padding
        if isinstance(padding, str):
            raise self._fail(node, f"uses padding={padding!r}")
        choice = qmath.choose_padding((h, w), kernel, stride, tuple(padding), dilation)
        if choice.pads is not None:
            source = self._pad(source, choice.pads, None)
        axis = 3 if depthwise else 0
        filt = self.graph.add(
            QTensor(
                name=f"{self._name(node)}.weight",
                shape=list(qmath.conv_filter(weights, depthwise).shape),
                dtype="int8",
                scale=scales,
                zero_point=zero_points,
                axis=axis,
                data=qmath.conv_filter(weights, depthwise),
            )
        )
        bias = self._bias(node, module, source, scales)
        out = self._activation_tensor(node, out_scale, int(module.zero_point))
        fused = "RELU" if type(module) is nniq.ConvReLU2d else "NONE"
        common = {
            "padding": choice.mode,
            "strideH": int(stride[0]),
            "strideW": int(stride[1]),
            "dilationHFactor": int(dilation[0]),
            "dilationWFactor": int(dilation[1]),
        }
        if depthwise:
            self._emit(
                "DEPTHWISE_CONV_2D",
                [source, filt, bias],
                [out],
                "DepthwiseConv2DOptions",
                fused,
                depthMultiplier=cout // cin,
                **common,
            )
        else:
            self._emit("CONV_2D", [source, filt, bias], [out], "Conv2DOptions", fused, **common)
        self.of[node.name] = out

    def _linear(self, node: torch.fx.Node) -> None:
        module = self.modules[str(node.target)]
        source = self._input(node)
        if len(self.graph.tensors[source].shape) != 2:
            raise self._fail(node, "takes a tensor that is not 2-D (flatten first)")
        weights, scales, zero_points = self._weights(node, module)
        scales, out_scale = self._fit_scales(node, source, module, scales)
        filt = self.graph.add(
            QTensor(
                name=f"{self._name(node)}.weight",
                shape=list(weights.shape),
                dtype="int8",
                scale=scales,
                zero_point=zero_points,
                axis=0,
                data=weights,
            )
        )
        bias = self._bias(node, module, source, scales)
        out = self._activation_tensor(node, out_scale, int(module.zero_point))
        fused = "RELU" if type(module) is nniq.LinearReLU else "NONE"
        self._emit(
            "FULLY_CONNECTED", [source, filt, bias], [out], "FullyConnectedOptions", fused, keepNumDims=False
        )
        self.of[node.name] = out

    def _activation_kind(self, node: torch.fx.Node) -> str:
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            if isinstance(module, (nn.ReLU6, nnq.ReLU6)):
                return "RELU6"
            if isinstance(module, nn.Hardtanh):
                bounds = (float(module.min_val), float(module.max_val))
            else:
                return "RELU"
        elif node.target is F.relu6:
            return "RELU6"
        elif node.target is F.hardtanh:
            low = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
            high = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
            bounds = (float(low), float(high))  # type: ignore[arg-type]
        else:
            return "RELU"
        kinds = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, 1.0): "RELU_0_TO_1"}
        if bounds not in kinds:
            raise self._fail(node, f"clamps to {bounds} (TFLite has no int8 kernel for that range)")
        return kinds[bounds]

    def _activation(self, node: torch.fx.Node) -> None:
        kind = self._activation_kind(node)
        source = self._input(node)
        producer = self.producer.get(source)
        arg = node.args[0]
        single_use = isinstance(arg, torch.fx.Node) and len(arg.users) == 1
        # Fold into the producing op when PyTorch's activation keeps its input's parameters
        # (it does) and nothing else reads the pre-activation tensor.
        if (
            producer is not None
            and producer.code in _FUSABLE
            and producer.fused == "NONE"
            and kind != "RELU_0_TO_1"
            and single_use
        ):
            producer.fused = kind
            self.of[node.name] = source
            return
        out = self._inherit(node, source)
        self._emit(kind, [source], [out])
        self.of[node.name] = out

    def _add(self, node: torch.fx.Node) -> None:
        a, b = self._input(node, 0), self._input(node, 1)
        if self.graph.tensors[a].shape != self.graph.tensors[b].shape:
            raise self._fail(node, "broadcasts its inputs")
        relu = node.target is torch.ops.quantized.add_relu
        scale = self._fit_add(node, a, b, relu)
        out = self._activation_tensor(node, scale, int(node.kwargs["zero_point"]))  # type: ignore[arg-type]
        self._emit("ADD", [a, b], [out], "AddOptions", "RELU" if relu else "NONE")
        self.of[node.name] = out

    def _fit_add(self, node: torch.fx.Node, a: int, b: int, relu: bool) -> float:
        """Output scale (within SCALE_SLACK of PyTorch's) with which XNNPACK's and the reference
        ADD kernels best reproduce PyTorch's add on every pair of int8 inputs."""
        scale, zero_point = float(node.kwargs["scale"]), int(node.kwargs["zero_point"])  # type: ignore[arg-type]
        left, right = (self._value(arg) for arg in node.args[:2])  # type: ignore[arg-type]
        table = _add_table(left, right, scale, zero_point, relu)
        out_zp = qat.int8_zero_point(zero_point, str(left.dtype))
        params = [(self._scale(t), int(self.graph.tensors[t].zero_point[0])) for t in (a, b)]  # type: ignore[index]
        fitted, _, _ = qmath.fit_add_scale(
            params[0], params[1], (scale, out_zp), table, out_zp if relu else -128
        )
        return fitted

    def _cat(self, node: torch.fx.Node) -> None:
        items = node.args[0]
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, torch.fx.Node) for i in items):
            raise self._fail(node, "concatenates something other than a list of tensors")
        sources = []
        for item in items:
            assert isinstance(item, torch.fx.Node)
            if item.name not in self.of:
                raise self._fail(node, "concatenates a float tensor")
            sources.append(self.of[item.name])
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        rank = len(self._value(node).shape)
        out = self._activation_tensor(node, float(node.kwargs["scale"]), int(node.kwargs["zero_point"]))  # type: ignore[arg-type]
        axis = qmath.nhwc_axis(int(dim), rank)  # type: ignore[call-overload]
        target = self.graph.tensors[out]
        for k, (item, source) in enumerate(zip(items, sources)):
            src = self.graph.tensors[source]
            if (src.scale, src.zero_point) != (target.scale, target.zero_point):
                # PyTorch requantizes each input to the output's parameters; TFLite's int8
                # concatenation only takes inputs already there.
                sources[k] = self._requantize(item, source, out, f"{target.name}:in{k}")  # type: ignore[arg-type]
        self._emit("CONCATENATION", sources, [out], "ConcatenationOptions", axis=axis)
        self.of[node.name] = out

    def _requantize(self, item: torch.fx.Node, source: int, like: int, name: str) -> int:
        """``source`` moved to the parameters of tensor ``like`` as PyTorch's cat does: a 1x1
        depthwise conv fitted to PyTorch's mapping (4-D), else an int8 QUANTIZE."""
        src, dst = self.graph.tensors[source], self.graph.tensors[like]
        moved = self.graph.like(like, name, src.shape)
        if len(src.shape) != 4:
            self._emit("QUANTIZE", [source], [moved])
            return moved
        assert src.zero_point is not None and dst.zero_point is not None and dst.scale is not None
        table = _cat_table(self._value(item), float(dst.scale[0]), int(dst.zero_point[0]))
        fit = qmath.fit_rescale(
            self._scale(source), src.zero_point[0], float(dst.scale[0]), dst.zero_point[0], table
        )
        self._depthwise_unit(source, moved, f"{name}:rescale", (1, 1), (1, 1), fit.gain, fit.weight_scale)
        return moved

    def _pool_args(self, node: torch.fx.Node, names: Sequence[str]) -> dict[str, Any]:
        """Pooling arguments by name, from the module or from the functional call."""
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            return {n: getattr(module, n, None) for n in names}
        found: dict[str, Any] = {}
        for i, n in enumerate(names):
            found[n] = node.args[i + 1] if i + 1 < len(node.args) else node.kwargs.get(n)
        return found

    def _pool(self, node: torch.fx.Node, code: str, kernel: Any, stride: Any, padding: Any) -> None:
        source = self._input(node)
        _, h, w, _ = self.graph.tensors[source].shape
        k, s, p = _pair(kernel), _pair(stride if stride else kernel), _pair(padding or 0)
        choice = qmath.choose_padding((h, w), k, s, p, (1, 1))
        if choice.pads is not None:
            # Padding never wins a max: fill with the smallest int8 value.
            source = self._pad(source, choice.pads, -128)
        out = self._inherit(node, source)
        _, h, w, _ = self.graph.tensors[source].shape
        computed = [_pool_out(h, k[0], s[0], choice.mode), _pool_out(w, k[1], s[1], choice.mode)]
        if self.graph.tensors[out].shape[1:3] != computed:
            raise self._fail(node, "gives a shape TFLite pooling cannot (ceil_mode-like windows)")
        self._emit(
            code,
            [source],
            [out],
            "Pool2DOptions",
            padding=choice.mode,
            strideH=s[0],
            strideW=s[1],
            filterHeight=k[0],
            filterWidth=k[1],
        )
        self.of[node.name] = out

    def _max_pool(self, node: torch.fx.Node) -> None:
        args = self._pool_args(
            node, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        )
        if _pair(args["dilation"] or 1) != (1, 1) or args["return_indices"]:
            raise self._fail(node, "uses dilation or return_indices")
        if args["ceil_mode"]:
            raise self._fail(node, "uses ceil_mode=True")
        self._pool(node, "MAX_POOL_2D", args["kernel_size"], args["stride"], args["padding"])

    def _avg_pool(self, node: torch.fx.Node) -> None:
        args = self._pool_args(
            node, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        )
        if args["ceil_mode"] or args["divisor_override"]:
            raise self._fail(node, "uses ceil_mode or divisor_override")
        if _pair(args["padding"] or 0) != (0, 0):
            raise self._fail(node, "pads an average (count_include_pad semantics differ)")
        kernel = _pair(args["kernel_size"])
        self._average(node, kernel, _pair(args["stride"] or kernel))

    def _adaptive_avg_pool(self, node: torch.fx.Node) -> None:
        _, h, w, _ = self.graph.tensors[self._input(node)].shape
        out_h, out_w = (int(d) for d in self._value(node).shape[-2:])
        if h % out_h or w % out_w:
            raise self._fail(node, f"pools {h}x{w} to {out_h}x{out_w} (needs a whole window per output)")
        kernel = (h // out_h, w // out_w)
        self._average(node, kernel, kernel)

    def _average(self, node: torch.fx.Node, kernel: tuple[int, int], stride: tuple[int, int]) -> None:
        """Average pooling as a depthwise conv of UNIT_WEIGHT filters: XNNPACK then rounds like
        PyTorch's qnnpack pooling (half to even); MEAN and AVERAGE_POOL_2D round ties otherwise."""
        source = self._input(node)
        _, h, w, _ = self.graph.tensors[source].shape
        value = self._value(node)
        computed = [(h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1]
        if computed != [int(d) for d in value.shape[-2:]]:
            raise self._fail(node, "gives a shape TFLite pooling cannot (ceil_mode-like windows)")
        pytorch_in = float(self._value(node.args[0]).q_scale())  # type: ignore[arg-type]
        target = float(qmath.qnnpack_pool_scale(pytorch_in, float(value.q_scale()), kernel[0] * kernel[1]))
        filter_scale, out_scale = qmath.pool_filter_scale(self._scale(source), float(value.q_scale()), target)
        out = self._activation_tensor(node, out_scale, int(value.q_zero_point()))
        name = self._name(node)
        self._depthwise_unit(source, out, f"{name}:avg", kernel, stride, qmath.UNIT_WEIGHT, filter_scale)
        self.of[node.name] = out

    def _depthwise_unit(
        self,
        source: int,
        out: int,
        name: str,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        value: int,
        scale: float,
    ) -> None:
        """A DEPTHWISE_CONV_2D whose filter is ``value`` everywhere (scale ``scale``) and bias zero."""
        channels = self.graph.tensors[source].shape[-1]
        data = np.full((1, kernel[0], kernel[1], channels), value, dtype=np.int8)
        filt = self.graph.add(
            QTensor(
                name=f"{name}.weight",
                shape=list(data.shape),
                dtype="int8",
                scale=[scale],
                zero_point=[0],
                axis=3,
                data=data,
            )
        )
        bias = self.graph.add(
            QTensor(
                name=f"{name}.bias",
                shape=[channels],
                dtype="int32",
                scale=[self._scale(source) * scale],
                zero_point=[0],
                data=np.zeros(channels, dtype=np.int32),
            )
        )
        self._emit(
            "DEPTHWISE_CONV_2D",
            [source, filt, bias],
            [out],
            "DepthwiseConv2DOptions",
            padding="VALID",
            strideH=stride[0],
            strideW=stride[1],
            dilationHFactor=1,
            dilationWFactor=1,
            depthMultiplier=1,
        )

    def _reshape(self, node: torch.fx.Node) -> None:
        source = self._input(node)
        src = self.graph.tensors[source]
        target = [int(d) for d in self._value(node).shape]
        # NHWC and NCHW orders agree when H = W = 1; otherwise go through NCHW like PyTorch.
        if len(src.shape) == 4 and src.shape[1:3] != [1, 1]:
            source = self._transpose(source, (0, 3, 1, 2), f"{src.name}:nchw")
        name = self._name(node)
        if len(target) == 4 and target[2:] != [1, 1]:
            staged = self.graph.like(source, f"{name}:nchw", target)
            shape_t = self.graph.const(f"{name}:nchw/shape", target)
            self._emit("RESHAPE", [source, shape_t], [staged], "ReshapeOptions", newShape=target)
            self.of[node.name] = self._transpose(staged, (0, 2, 3, 1), name)
            return
        final = qmath.nhwc_shape(target)
        out = self.graph.like(source, name, final)
        shape_t = self.graph.const(f"{name}/shape", final)
        self._emit("RESHAPE", [source, shape_t], [out], "ReshapeOptions", newShape=final)
        self.of[node.name] = out

    def _output(self, node: torch.fx.Node) -> None:
        for item in _flat(node.args[0]):
            if not isinstance(item, torch.fx.Node) or item.name not in self.of:
                raise self._fail(node, "returns a tensor computed in float")
            tensor = self.of[item.name]
            if len(self.graph.tensors[tensor].shape) == 4 and self.nchw_io:
                tensor = self._transpose(tensor, (0, 3, 1, 2), f"{self.graph.tensors[tensor].name}:nchw")
            self.graph.outputs.append(tensor)


def _pool_out(size: int, kernel: int, stride: int, mode: str) -> int:
    return -(-size // stride) if mode == "SAME" else (size - kernel) // stride + 1


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for item in value for x in _flat(item)]
    if isinstance(value, dict):
        return [x for item in value.values() for x in _flat(item)]
    return [value]


def _pytorch_bias(module: Any, input_scale: float, channels: int) -> np.ndarray:
    """The int32 bias PyTorch's qnnpack kernels add: its float bias quantized by torch itself
    at input scale x weight scale (torch's float32 rounding included, which can differ by one)."""
    bias = module.bias()
    if bias is None:
        return np.zeros(channels, dtype=np.int32)
    weight = module.weight()
    values = bias.detach().float()
    if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        scales = weight.q_per_channel_scales() * input_scale
        zeros = torch.zeros(scales.shape, dtype=torch.long)
        q = torch.quantize_per_channel(values, scales, zeros, 0, torch.qint32)
    else:
        q = torch.quantize_per_tensor(values, float(weight.q_scale()) * input_scale, 0, torch.qint32)
    return np.asarray(q.int_repr().numpy(), dtype=np.int32)


def _cat_table(value: torch.Tensor, scale: float, zero_point_int8: int) -> np.ndarray:
    """PyTorch's cat of a tensor with ``value``'s parameters into (scale, int8 zero point), for
    each of the 256 inputs, as int8 (quint8 shifted)."""
    dtype = value.dtype
    shift = qat.ZERO_POINT_SHIFT[str(dtype)]
    ints = torch.arange(256, dtype=torch.int32) - (0 if dtype == torch.quint8 else 128)
    raw = ints.to(torch.uint8 if dtype == torch.quint8 else torch.int8).reshape(1, 1, 1, 256)
    every = torch._make_per_tensor_quantized_tensor(raw, float(value.q_scale()), int(value.q_zero_point()))
    moved = torch.ops.quantized.cat([every], dim=1, scale=scale, zero_point=zero_point_int8 - shift)
    return np.asarray(moved.int_repr().numpy().reshape(-1), dtype=np.int64) + shift


def _add_table(a: torch.Tensor, b: torch.Tensor, scale: float, zero_point: int, relu: bool) -> np.ndarray:
    """PyTorch's quantized add (add_relu) of every pair of inputs at ``a``'s and ``b``'s parameters,
    as a 256 x 256 int8 table indexed by the int8 inputs (quint8 shifted)."""
    grids = []
    for value, index in ((a, 0), (b, 1)):
        ints = torch.arange(256, dtype=torch.int32) - (0 if value.dtype == torch.quint8 else 128)
        raw = ints.to(torch.uint8 if value.dtype == torch.quint8 else torch.int8)
        full = raw.reshape(256, 1).expand(256, 256) if index == 0 else raw.reshape(1, 256).expand(256, 256)
        grids.append(
            torch._make_per_tensor_quantized_tensor(
                full.contiguous().reshape(1, 1, 256, 256), float(value.q_scale()), int(value.q_zero_point())
            )
        )
    op = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
    result = op(grids[0], grids[1], scale, zero_point)
    return (
        np.asarray(result.int_repr().numpy().reshape(256, 256), dtype=np.int64)
        + qat.ZERO_POINT_SHIFT[str(result.dtype)]
    )
