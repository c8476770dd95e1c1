"""Eager-mode QAT variants of zoo models (imported lazily: this module imports torch).

Each ``*_qat`` factory builds the float zoo model (seeded, BatchNorm calibrated), moves it out of
the chaotic regime of random BatchNorm nets (``_ordered``: small residual branches, ReLU inputs in
their linear range; a trained net is not chaotic either), wraps it in
``QuantStub``/``DeQuantStub``, turns residual adds into ``FloatFunctional`` ones, fuses
conv-bn(-relu) with ``fuse_modules_qat``, prepares it with a standard qconfig
(``get_default_qat_qconfig``: ``x86`` for resnet = quint8 activations with ``reduce_range`` and
per-channel symmetric qint8 weights; ``qnnpack`` for tiny_cnn and mobilenet_v2 = full-range
quint8 activations and per-tensor symmetric weights) and trains it for a few SGD steps on
seeded random data, distilling the float model, so the observers hold learned ranges. It comes
back in eval mode with observers disabled and BatchNorm statistics frozen: running it no longer
moves any scale.

Each ``*_qat_float`` factory is the float twin: the same architecture with the QAT-trained
weights (BatchNorm unfolded, no fake quantization), for backends that take float models
(post-training int8 by ai-edge-torch, which cannot take fake-quant modules).
``qat_unsupported`` holds a GELU, which the qat-transplant backend does not support.
"""

# Lint venvs have no torch, so nn.Module is Any there; subclassing it is the point of this file.
# mypy: allow-subclassing-any

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Callable

import torch
import torch.ao.quantization as tq
from torch import Tensor, nn

from liteport.zoo import models
from liteport.zoo.models import Built

TRAIN_STEPS = 3
TRAIN_BATCH = 4
LEARNING_RATE = 1e-3
# Why (see _ordered): a random BN net is chaotic, a trained one is not; small-init residual branches
# (torchvision's zero_init_residual, Goyal et al. 2017) and ReLU inputs in their linear range keep
# one-step rounding differences one step (issue 15: reference kernels 5.4% -> 100% on mobilenet_v2_qat).
RESIDUAL_GAMMA = 0.1  # times the last BatchNorm's gamma of every residual branch
RELU_SHIFT = 3.0  # added to the beta of every BatchNorm feeding a ReLU / ReLU6 (gamma ~ 1)
CALIBRATION_BATCH = 16


class Quantized(nn.Module):
    """``quant -> model -> dequant``: where eager quantization starts and ends."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.model = model
        self.dequant = tq.DeQuantStub()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.dequant(self.model(self.quant(x)))
        return out


class _QatInvertedResidual(models.InvertedResidual):
    """InvertedResidual whose residual add is a FloatFunctional (quantizable in eager mode)."""

    skip_add: nn.quantized.FloatFunctional

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.skip_add.add(x, self.conv(x)) if self.use_residual else self.conv(x)
        return out


class _QatBasicBlock(models.BasicBlock):
    """BasicBlock whose residual add is a FloatFunctional, followed by the block's own ReLU."""

    skip_add: nn.quantized.FloatFunctional

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out: Tensor = self.relu(self.skip_add.add(self.conv2(self.conv1(x)), identity))
        return out


def _functional_adds(model: nn.Module) -> None:
    """Give residual blocks FloatFunctional adds (class swap keeps the float zoo's parameters)."""
    swaps = {models.InvertedResidual: _QatInvertedResidual, models.BasicBlock: _QatBasicBlock}
    for module in model.modules():
        if type(module) in swaps:
            module.__class__ = swaps[type(module)]
            module.skip_add = nn.quantized.FloatFunctional()


def _fuse_groups(model: nn.Module) -> list[list[str]]:
    """conv-bn(-relu) groups of every ``_conv_bn`` Sequential; ReLU6 stays apart (eager fusion has none)."""
    groups = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential) or len(module) < 2:
            continue
        if isinstance(module[0], nn.Conv2d) and isinstance(module[1], nn.BatchNorm2d):
            group = [f"{name}.0", f"{name}.1"]
            if len(module) > 2 and type(module[2]) is nn.ReLU:
                group.append(f"{name}.2")
            groups.append(group)
    return groups


def _train_qat(float_model: nn.Module, shape: Sequence[int], engine: str, seed: int) -> Quantized:
    """Fuse, prepare and briefly train a QAT copy of ``float_model`` (distilling it) on random data."""
    teacher = copy.deepcopy(float_model).eval()
    student = copy.deepcopy(float_model)
    _functional_adds(student)
    groups = [[f"model.{p}" for p in g] for g in _fuse_groups(student)]
    qat = Quantized(student).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager quantization's deprecation notices
        tq.fuse_modules_qat(qat, groups, inplace=True)
        qat.qconfig = tq.get_default_qat_qconfig(engine)
        tq.prepare_qat(qat, inplace=True)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(qat.parameters(), lr=LEARNING_RATE, momentum=0.9)
    for _ in range(TRAIN_STEPS):
        batch = torch.randn(TRAIN_BATCH, *shape[1:], generator=generator)
        with torch.no_grad():
            target = teacher(batch)
        loss = nn.functional.mse_loss(qat(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Frozen: evaluating the model (reference stage, convert) must not move a scale again.
    qat.apply(tq.disable_observer)
    qat.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
    frozen: Quantized = qat.eval()
    return frozen


def _float_twin(qat: Quantized, float_model: nn.Module) -> nn.Module:
    """``float_model`` loaded with ``qat``'s trained weights (fused conv-bn split back, no fake quant)."""
    twin = copy.deepcopy(float_model)
    groups = {g[0]: g[1] for g in _fuse_groups(twin)}  # conv path -> its BatchNorm's path
    own = twin.state_dict()
    state = {}
    for key, value in qat.model.state_dict().items():
        if "fake_quant" in key or "activation_post_process" in key:
            continue
        path, _, leaf = key.rpartition(".")
        if path.endswith(".bn") and path[: -len(".bn")] in groups:
            key = f"{groups[path[: -len('.bn')]]}.{leaf}"
        if key in own:
            state[key] = value
    twin.load_state_dict(state, strict=True)
    return twin.eval()


def _example(shape: Sequence[int], seed: int) -> tuple[Tensor, ...]:
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)),)


def _ordered(model: nn.Module, shape: Sequence[int], seed: int) -> None:
    """Move a calibrated random BatchNorm net out of its chaotic regime, then recalibrate BN.

    Why: a random BN net is chaotic (Yang et al. 2019: one step of rounding anywhere grows layer
    by layer to tens of output steps, PyTorch's own int8 model included); trained nets are not.
    """
    ends, relus = [], []
    for module in model.modules():
        if isinstance(module, models.InvertedResidual) and module.use_residual:
            ends.append(module.conv[-1][1])
        elif isinstance(module, models.BasicBlock):
            ends.append(module.conv2[1])
            if module.downsample is not None:
                relus.append(module.downsample[1])  # the block's ReLU follows the add
        elif isinstance(module, _DwPwBlock):
            ends.append(module.pw[1])
        elif (
            isinstance(module, nn.Sequential)
            and len(module) == 3
            and isinstance(module[1], nn.BatchNorm2d)
            and isinstance(module[2], (nn.ReLU, nn.ReLU6))
        ):
            relus.append(module[1])
    with torch.no_grad():
        for bn in ends:
            bn.weight.mul_(RESIDUAL_GAMMA)
        for bn in relus:
            bn.bias.add_(RELU_SHIFT)
    batch = torch.randn(CALIBRATION_BATCH, *shape[1:], generator=torch.Generator().manual_seed(seed))
    models._calibrate_batchnorm(model, batch, passes=1, affine=False)


def _build(float_factory: Callable[[], Built], engine: str, seed: int) -> tuple[Quantized, nn.Module, Tensor]:
    float_model, (example,) = float_factory()
    _ordered(float_model, tuple(example.shape), seed)
    qat = _train_qat(float_model, tuple(example.shape), engine, seed)
    return qat, float_model, example


class DwResidual(nn.Module):
    """Issue 15's family: strided stem conv+BN+ReLU, ``blocks`` depthwise+pointwise branches added
    back through a FloatFunctional (no ReLU after the add), global average pooling, Linear head."""

    def __init__(self, width: int = 16, blocks: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = models._conv_bn(3, width, 3, stride=2, act=nn.ReLU())
        self.blocks = nn.ModuleList(_DwPwBlock(width) for _ in range(blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        out: Tensor = self.fc(torch.flatten(self.pool(x), 1))
        return out


class _DwPwBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.dw = models._conv_bn(width, width, 3, groups=width, act=nn.ReLU())
        self.pw = models._conv_bn(width, width, 1)
        self.skip_add = nn.quantized.FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.skip_add.add(x, self.pw(self.dw(x)))
        return out


def _dw_residual(width: int, blocks: int, size: int) -> Callable[[], Built]:
    def factory() -> Built:
        torch.manual_seed(0)
        model = DwResidual(width, blocks)
        models._calibrate_batchnorm(model, torch.randn(16, 3, size, size))
        return model, (torch.randn(1, 3, size, size),)

    return factory


def _mobilenet_v2_small() -> Built:
    """MobileNetV2 width 1.0 at 64x64, so its QAT training takes seconds, not minutes."""
    torch.manual_seed(0)
    model = models.MobileNetV2(num_classes=100)
    models._calibrate_batchnorm(model, torch.randn(8, 3, 64, 64), passes=1)
    return model, (torch.randn(1, 3, 64, 64),)


# name -> (float factory, qconfig engine). MobileNetV2 takes qnnpack's: with x86's 7-bit
# activations and per-channel weights this random-weight model amplifies one-step rounding
# differences 50-fold over its 17 blocks (PyTorch's own x86 and qnnpack int8 models then differ
# by 54 output steps), which would hide what the transplant preserves.
_SOURCES: dict[str, tuple[Callable[[], Built], str]] = {
    "tiny_cnn": (models.tiny_cnn, "qnnpack"),
    "mobilenet_v2": (_mobilenet_v2_small, "qnnpack"),
    "resnet": (models.resnet, "x86"),
    # Issue 15's family: pooled over 16x16 (ties in the average), and over 14x14 after two blocks.
    "dw_residual": (_dw_residual(width=16, blocks=1, size=32), "qnnpack"),
    "dw_residual2": (_dw_residual(width=24, blocks=2, size=28), "qnnpack"),
}


def _qat(name: str) -> Built:
    factory, engine = _SOURCES[name]
    qat, _, example = _build(factory, engine, seed=1)
    return qat, (example,)


def _qat_float(name: str) -> Built:
    factory, engine = _SOURCES[name]
    qat, float_model, example = _build(factory, engine, seed=1)
    return _float_twin(qat, float_model), (example,)


def tiny_cnn_qat() -> Built:
    return _qat("tiny_cnn")


def mobilenet_v2_qat() -> Built:
    return _qat("mobilenet_v2")


def resnet_qat() -> Built:
    return _qat("resnet")


def dw_residual_qat() -> Built:
    return _qat("dw_residual")


def dw_residual2_qat() -> Built:
    return _qat("dw_residual2")


def tiny_cnn_qat_float() -> Built:
    return _qat_float("tiny_cnn")


def mobilenet_v2_qat_float() -> Built:
    return _qat_float("mobilenet_v2")


def resnet_qat_float() -> Built:
    return _qat_float("resnet")


class _GeluCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            models._conv_bn(3, 16, 3, act=nn.ReLU()), nn.GELU(), nn.AdaptiveAvgPool2d(1)
        )
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(torch.flatten(self.features(x), 1))
        return out


def _gelu_cnn() -> Built:
    torch.manual_seed(0)
    model = _GeluCNN()
    models._calibrate_batchnorm(model, torch.randn(8, 3, 32, 32))
    return model, (torch.randn(1, 3, 32, 32),)


def qat_unsupported() -> Built:
    """A QAT model with a GELU between conv and pooling: the backend must refuse it by name."""
    qat, _, example = _build(_gelu_cnn, "x86", seed=1)
    return qat, (example,)


ZOO: dict[str, Callable[[], Built]] = {
    "tiny_cnn_qat": tiny_cnn_qat,
    "mobilenet_v2_qat": mobilenet_v2_qat,
    "resnet_qat": resnet_qat,
    "dw_residual_qat": dw_residual_qat,
    "dw_residual2_qat": dw_residual2_qat,
    "tiny_cnn_qat_float": tiny_cnn_qat_float,
    "mobilenet_v2_qat_float": mobilenet_v2_qat_float,
    "resnet_qat_float": resnet_qat_float,
    "qat_unsupported": qat_unsupported,
}
