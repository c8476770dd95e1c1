"""Pure parts of the QAT transplant: zero-point shift, bias requantization, layouts, padding,
qparams extraction from a converted PyTorch model and the lowering (no ai_edge_litert needed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from torch import nn

from liteport.backends.qat_transplant import qmath
from liteport.errors import BadInput, UnsupportedOp
from liteport.stages.qat_reference import (
    int8_zero_point,
    is_eager_qat,
    pick_engine,
    qparams_document,
    scales_match,
    symbolic,
    to_int8,
    trace,
)


def test_uint8_zero_point_shifts_by_128_and_int8_keeps_its_own() -> None:
    assert int8_zero_point(0, "torch.quint8") == -128
    assert int8_zero_point(255, "torch.quint8") == 127
    assert int8_zero_point(64, "torch.quint8") == -64  # reduce_range: same shift, 7-bit observer range
    assert int8_zero_point(-3, "torch.qint8") == -3
    with pytest.raises(BadInput, match="qint32"):
        int8_zero_point(0, "torch.qint32")


def test_shift_preserves_real_values() -> None:
    scale, zp_u8 = 0.05, 77
    q_u8 = np.arange(256)
    q_i8 = q_u8 - 128
    real_u8 = (q_u8 - zp_u8) * scale
    real_i8 = (q_i8 - int8_zero_point(zp_u8, "torch.quint8")) * scale
    np.testing.assert_array_equal(real_u8, real_i8)


def test_scales_match_is_relative() -> None:
    assert scales_match([0.1, 0.2], [0.1 * (1 + 5e-7), 0.2])
    assert not scales_match([0.1], [0.1 * (1 + 5e-6)])
    assert not scales_match([0.1, 0.2], [0.1])


def test_filter_layouts() -> None:
    w = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # O I H W
    assert qmath.conv_filter(w, depthwise=False).shape == (2, 4, 5, 3)
    dw = np.arange(6 * 1 * 3 * 3).reshape(6, 1, 3, 3)
    out = qmath.conv_filter(dw, depthwise=True)
    assert out.shape == (1, 3, 3, 6) and out[0, 1, 2, 4] == dw[4, 0, 1, 2]


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad", "mode"),
    [
        (32, 3, 1, 1, "SAME"),  # same padding both sides
        (32, 3, 1, 0, "VALID"),
        (64, 3, 2, 1, "VALID+PAD"),  # TFLite SAME would pad only after the data
        (63, 3, 2, 1, "SAME"),  # odd size: TFLite pads 1 before, as PyTorch
        (64, 7, 2, 3, "VALID+PAD"),
        (32, 3, 2, 1, "VALID+PAD"),
    ],
)
def test_padding_choice_reproduces_pytorch_windows(
    size: int, kernel: int, stride: int, pad: int, mode: str
) -> None:
    choice = qmath.choose_padding((size, size), (kernel, kernel), (stride, stride), (pad, pad), (1, 1))
    got = choice.mode + ("+PAD" if choice.pads else "")
    assert got == mode
    if choice.pads:
        assert choice.pads == ((pad, pad), (pad, pad))


def test_layout_helpers() -> None:
    assert qmath.nhwc_shape([1, 3, 8, 9]) == [1, 8, 9, 3]
    assert qmath.nhwc_shape([1, 10]) == [1, 10]
    assert qmath.nhwc_axis(1, 4) == 3 and qmath.nhwc_axis(-1, 4) == 2 and qmath.nhwc_axis(1, 2) == 1


class _Small(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.act = act
        self.add = nn.quantized.FloatFunctional()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.quant(x))
        x = self.add.add(x, self.act(x))
        return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))


def _qat(engine: str, act: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    model = _Small(act if act is not None else nn.ReLU6()).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq.fuse_modules_qat(model, [["conv.0", "conv.1", "conv.2"]], inplace=True)
        model.qconfig = tq.get_default_qat_qconfig(engine)
        tq.prepare_qat(model, inplace=True)
    for _ in range(2):
        model(torch.randn(4, 3, 8, 8))
    model.apply(tq.disable_observer)
    return model.eval()


@pytest.mark.parametrize("qconfig", ["x86", "qnnpack"])
def test_qparams_document_holds_pytorchs_parameters(qconfig: str) -> None:
    model = _qat(qconfig)
    assert is_eager_qat(model) and not is_eager_qat(nn.Linear(2, 2))
    engine = pick_engine(model)
    int8 = to_int8(model, engine)
    doc = qparams_document(trace(int8, (torch.randn(1, 3, 8, 8),), engine))
    tensors = doc["tensors"]
    conv = int8.conv[0]
    assert tensors["conv.0"]["scale"] == [pytest.approx(conv.scale)] and tensors["conv.0"]["learned"]
    assert tensors["conv.0"]["int8_zero_point"] == [conv.zero_point - 128]
    weight = tensors["conv.0.weight"]
    assert weight["dtype"] == "torch.qint8" and set(weight["zero_point"]) == {0}
    assert len(weight["scale"]) == (8 if qconfig == "x86" else 1)  # per-channel vs per-tensor
    quant_scale = float(int8.quant.scale)
    assert tensors["conv.0.bias"]["scale"] == pytest.approx([quant_scale * s for s in weight["scale"]])
    assert tensors["add"]["learned"] and tensors["add"]["scale"] == [pytest.approx(int8.add.scale)]
    assert not tensors["act"]["learned"] and tensors["act"]["scale"] == tensors["conv.0"]["scale"]
    assert doc["output_scales"] == [pytest.approx(int8.fc.scale)]


def test_relu6_runs_right_on_channels_last_tensors() -> None:
    """PyTorch's quantized relu6 scrambles channels-last tensors; to_int8 works around it."""
    model = _qat("qnnpack")
    int8 = to_int8(model, "qnnpack")
    gm = symbolic(int8)
    traced = trace(int8, (torch.randn(1, 3, 8, 8),), "qnnpack", gm=gm)
    before, after = traced.values["conv_0"], traced.values["act"]
    expected = torch.clamp(before.int_repr().int(), min=before.q_zero_point())
    high = before.q_zero_point() + round(6.0 / before.q_scale())
    assert torch.equal(after.int_repr().int(), torch.clamp(expected, max=min(high, 255)))


def test_lowering_fuses_and_names_tensors_after_pytorch() -> None:
    from liteport.backends.qat_transplant import lower

    model = _qat("qnnpack")
    int8 = to_int8(model, "qnnpack")
    graph = lower.lower(trace(int8, (torch.randn(1, 3, 8, 8),), "qnnpack"), "small")
    codes = [op.code for op in graph.ops]
    # The conv's output has two readers (ReLU6 and the add), so ReLU6 stays an op of its own;
    # the global pool is a depthwise conv (XNNPACK then rounds it like PyTorch).
    assert codes == [
        "TRANSPOSE",
        "CONV_2D",
        "RELU6",
        "ADD",
        "DEPTHWISE_CONV_2D",
        "RESHAPE",
        "FULLY_CONNECTED",
    ]
    conv = graph.ops[1]
    assert conv.fused == "RELU" and conv.options["padding"] == "SAME" and graph.ops[3].fused == "NONE"
    names = {t.name for t in graph.tensors}
    assert {"quant", "quant:nhwc", "conv.0", "conv.0.weight", "conv.0.bias", "act", "add", "fc"} <= names
    bias = next(t for t in graph.tensors if t.name == "conv.0.bias")
    weight = next(t for t in graph.tensors if t.name == "conv.0.weight")
    src = next(t for t in graph.tensors if t.name == "quant")
    assert bias.dtype == "int32" and bias.scale == pytest.approx([src.scale[0] * s for s in weight.scale])  # type: ignore[index]
    # PyTorch's own int32 bias (quantized by torch, its float32 rounding included).
    conv = int8.conv[0]
    in_scale = conv.weight().q_scale() * float(int8.quant.scale)
    qbias = torch.quantize_per_tensor(conv.bias().detach(), in_scale, 0, torch.qint32)
    np.testing.assert_array_equal(bias.data, qbias.int_repr().numpy())
    # Written scales stay within half the validator's tolerance of PyTorch's.
    assert weight.scale == pytest.approx([conv.weight().q_scale()], rel=5e-7)  # type: ignore[arg-type]
    pool_filter = next(t for t in graph.tensors if t.name == "pool:avg.weight")
    assert pool_filter.data is not None and set(pool_filter.data.reshape(-1).tolist()) == {64}
    assert [t.dtype for t in (graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]])] == [
        "int8",
        "int8",
    ]


def test_unsupported_module_names_itself_and_the_supported_set() -> None:
    from liteport.backends.qat_transplant import lower

    model = _qat("qnnpack", act=nn.GELU())
    int8 = to_int8(model, "qnnpack")
    with pytest.raises(UnsupportedOp) as raised:
        lower.check_supported(symbolic(int8), "gelu_model")
    message = str(raised.value)
    assert "gelu_model: act (GELU) not supported" in message and "supported: QuantStub" in message
    assert "\n" not in message


def test_layer_values_hold_every_named_tensor_and_the_clamped_view() -> None:
    from liteport.stages.qat_reference import layer_values

    model = _qat("qnnpack")
    int8 = to_int8(model, "qnnpack")
    traced = trace(int8, (torch.randn(1, 3, 8, 8),), "qnnpack")
    layers = layer_values(traced, traced.values)
    assert {"quant", "conv.0", "act", "add", "pool", "fc"} <= set(layers)
    assert layers["conv.0"].dtype == np.int8 and layers["conv.0"].shape == (1, 8, 8, 8)
    # Fused away into conv.0 (ConvReLU2d), BatchNorm and ReLU left identities: same values.
    np.testing.assert_array_equal(layers["conv.0|fused"], layers["conv.0"])
    assert all(name.split("|")[0] in layers for name in layers)


def test_derived_filters_are_counted_apart_and_must_be_symmetric() -> None:
    from liteport.validators.qparams import split_derived

    given = {
        "pool": {"dtype": "INT8", "scale": [0.1], "zero_point": [-3]},
        "pool:avg.weight": {"dtype": "INT8", "scale": [0.0009765], "zero_point": [0]},
        "pool:avg.bias": {"dtype": "INT32", "scale": [0.0001], "zero_point": [0]},
        "cat:in0:rescale.weight": {"dtype": "INT8", "scale": [0.25], "zero_point": [1]},
    }
    checked, derived, malformed = split_derived(given)
    assert list(checked) == ["pool"] and derived == 3
    assert malformed == ["cat:in0:rescale.weight: a derived rescale.weight must be INT8 with zero point 0"]


def test_first_deviation_probe_reads_pytorch_tensors_in_the_files_nhwc_layout() -> None:
    """With C = H = W both layouts have one shape: the probe must still transpose (issue 15:
    MobileNetV2's 32-channel 32x32 stem was reported "25% exact, 122 steps" on an exact file)."""
    from liteport.validators.qparams import _as_laid_out

    nchw = np.arange(2 * 4 * 4 * 4).reshape(2, 4, 4, 4)
    nhwc = nchw.transpose(0, 2, 3, 1)
    assert np.array_equal(_as_laid_out(nchw, nhwc.shape), nhwc)
    wide = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert np.array_equal(_as_laid_out(wide, (2, 4, 5, 3)), wide.transpose(0, 2, 3, 1))
    flat = np.arange(6).reshape(2, 3)
    assert np.array_equal(_as_laid_out(flat, (2, 3)), flat)
    assert _as_laid_out(wide, (2, 3, 5, 4)) is None


def test_lowering_asks_pytorchs_own_engine_for_the_add_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The add (and cat) tables the scale fitting reproduces come from the traced model's engine:
    x86's add rounds some ties other than qnnpack's (issue 15: MobileNetV2's features.6.skip_add
    was fitted to x86's table and came out a step off on XNNPACK)."""
    from liteport.backends.qat_transplant import lower

    model = _qat("qnnpack")
    int8 = to_int8(model, "qnnpack")
    traced = trace(int8, (torch.randn(1, 3, 8, 8),), "qnnpack")
    seen: list[str] = []
    table = lower._add_table

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        seen.append(torch.backends.quantized.engine)
        return table(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lower, "_add_table", spy)
    before = torch.backends.quantized.engine
    lower.lower(traced, "small")
    assert seen == ["qnnpack"] and torch.backends.quantized.engine == before
