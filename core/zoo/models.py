# Over 400 lines on purpose: one small factory per zoo model, kept together as the zoo's listing.
"""Factories of the built-in zoo models (imported lazily: this module imports torch).

Each factory takes no argument and returns ``(module, example_inputs)``: a seeded module in
eval mode whose BatchNorm statistics come from a random batch (so outputs are O(1) even with
random weights) and a tuple of batch-1 example tensors. Metadata lives in ``liteport.zoo``.
"""

# Lint venvs have no torch, so nn.Module is Any there; subclassing it is the point of this file.
# mypy: allow-subclassing-any

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Built = tuple[nn.Module, tuple[Tensor, ...]]


def _calibrate_batchnorm(model: nn.Module, batch: Tensor, passes: int = 2, affine: bool = True) -> None:
    """Set BatchNorm running stats to the cumulative average over ``passes`` forwards of ``batch``
    (first drawing random affine parameters, unless ``affine`` is False: they are kept)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # None = cumulative moving average: exact mean over the passes
        if affine:  # random affine parameters so BN folding is really exercised by converters
            with torch.no_grad():
                bn.weight.uniform_(0.8, 1.2)
                bn.bias.normal_(0.0, 0.1)
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(batch)
    for bn in norms:
        bn.momentum = 0.1  # restore the default so a user fine-tuning it sees ordinary BN
    model.eval()


def _conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: nn.Module | None = None
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- tiny_cnn


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(3, 16, 3, act=nn.ReLU()),
            nn.MaxPool2d(2),
            _conv_bn(16, 32, 3, act=nn.ReLU()),
            nn.MaxPool2d(2),
            _conv_bn(32, 64, 3, stride=2, act=nn.ReLU()),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(torch.flatten(self.features(x), 1))
        return out


def tiny_cnn() -> Built:
    torch.manual_seed(0)
    model = TinyCNN()
    _calibrate_batchnorm(model, torch.randn(16, 3, 32, 32))
    return model, (torch.randn(1, 3, 32, 32),)


# --------------------------------------------------------------------------- mobilenet_v2


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Channel rounding of the reference MobileNetV2 (never drop more than 10%)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn(cin, hidden, 1, act=nn.ReLU6()))
        layers += [
            _conv_bn(hidden, hidden, 3, stride=stride, groups=hidden, act=nn.ReLU6()),  # depthwise
            _conv_bn(hidden, cout, 1),  # linear bottleneck: no activation
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + self.conv(x) if self.use_residual else self.conv(x)
        return out


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018), the layout and init of the reference implementation."""

    # expansion t, channels c, repeats n, first stride s
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [_conv_bn(3, cin, 3, stride=2, act=nn.ReLU6())]
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(_conv_bn(cin, last, 1, act=nn.ReLU6()))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        out: Tensor = self.classifier(torch.flatten(x, 1))
        return out


def mobilenet_v2() -> Built:
    torch.manual_seed(0)
    model = MobileNetV2()
    _calibrate_batchnorm(model, torch.randn(8, 3, 224, 224), passes=1)
    return model, (torch.randn(1, 3, 224, 224),)


# --------------------------------------------------------------------------- resnet


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride=stride, act=nn.ReLU())
        self.conv2 = _conv_bn(cout, cout, 3)
        self.downsample = _conv_bn(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else None
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out: Tensor = self.relu(self.conv2(self.conv1(x)) + identity)
        return out


class ResNet(nn.Module):
    """ResNet-18 layout (2-2-2-2 basic blocks) with a configurable base width."""

    def __init__(
        self, width: int = 32, blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 100
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, width, 7, stride=2, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            for j in range(n):
                stages.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1)
        out: Tensor = self.fc(torch.flatten(x, 1))
        return out


def resnet() -> Built:
    torch.manual_seed(0)
    model = ResNet()
    _calibrate_batchnorm(model, torch.randn(16, 3, 64, 64))
    return model, (torch.randn(1, 3, 64, 64),)


# --------------------------------------------------------------------------- hardswish_se


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        squeezed = _make_divisible(channels / reduction)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(scale))))
        out: Tensor = x * scale
        return out


class V3Block(nn.Module):
    """MobileNetV3 bottleneck: expand (hardswish), depthwise (hardswish), SE, linear projection."""

    def __init__(self, cin: int, hidden: int, cout: int, k: int, stride: int, se: bool) -> None:
        super().__init__()
        self.use_residual = stride == 1 and cin == cout
        self.expand = _conv_bn(cin, hidden, 1, act=nn.Hardswish())
        self.depthwise = _conv_bn(hidden, hidden, k, stride=stride, groups=hidden, act=nn.Hardswish())
        self.se = SqueezeExcite(hidden) if se else nn.Identity()
        self.project = _conv_bn(hidden, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        out: Tensor = x + y if self.use_residual else y
        return out


class HardswishSE(nn.Module):
    """A MobileNetV3-like encoder with a small top-down path (nearest upsample + concat)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 16, 3, stride=2, act=nn.Hardswish())  # 32x32
        self.stage1 = nn.Sequential(
            V3Block(16, 64, 24, 3, 2, se=False), V3Block(24, 72, 24, 3, 1, se=False)
        )  # 16
        self.stage2 = nn.Sequential(
            V3Block(24, 96, 40, 5, 2, se=True), V3Block(40, 120, 40, 5, 1, se=True)
        )  # 8
        self.fuse = _conv_bn(24 + 40, 48, 3, act=nn.Hardswish())
        self.head = nn.Linear(48, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        low = self.stage1(self.stem(x))
        high = self.stage2(low)
        up = F.interpolate(high, scale_factor=2.0, mode="nearest")
        y = self.fuse(torch.cat([low, up], dim=1))
        out: Tensor = self.head(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))
        return out


def hardswish_se() -> Built:
    torch.manual_seed(0)
    model = HardswishSE()
    _calibrate_batchnorm(model, torch.randn(16, 3, 64, 64))
    return model, (torch.randn(1, 3, 64, 64),)


# --------------------------------------------------------------------------- attention_encoder


class SelfAttention(nn.Module):
    """Multi-head self-attention written with matmul + softmax (what converters see after export)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.head_dim**-0.5, dim=-1)
        y = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d)
        out: Tensor = self.out(y)
        return out


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        out: Tensor = x + self.mlp(self.norm2(x))
        return out


class AttentionEncoder(nn.Module):
    def __init__(self, seq: int = 16, dim: int = 64, heads: int = 4, mlp: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, seq, dim) * 0.1)
        self.layers = nn.Sequential(*[EncoderLayer(dim, heads, mlp) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, 32)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.proj(self.norm(self.layers(x + self.pos)))
        return out


def attention_encoder() -> Built:
    torch.manual_seed(0)
    model = AttentionEncoder().eval()
    return model, (torch.randn(1, 16, 64),)


# --------------------------------------------------------------------------- lstm, gru


class RecurrentHead(nn.Module):
    """A 2-layer LSTM or GRU over the sequence, a Linear head on its last step."""

    def __init__(
        self, cell: type[nn.LSTM] | type[nn.GRU], features: int = 16, hidden: int = 32, outputs: int = 10
    ) -> None:
        super().__init__()
        self.rnn = cell(features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: Tensor) -> Tensor:
        seq, _ = self.rnn(x)
        out: Tensor = self.head(seq[:, -1])
        return out


def _recurrent(cell: type[nn.LSTM] | type[nn.GRU]) -> Built:
    torch.manual_seed(0)
    model = RecurrentHead(cell).eval()
    with torch.no_grad():
        # The default init gives outputs near 0.1 (tiny hidden states); a wider head keeps them O(1).
        nn.init.normal_(model.head.weight, 0.0, 1.0)
    return model, (torch.randn(1, 20, 16),)


def lstm() -> Built:
    return _recurrent(nn.LSTM)


def gru() -> Built:
    return _recurrent(nn.GRU)


# --------------------------------------------------------------------------- zoo v2: sdpa_encoder


class SDPABlock(nn.Module):
    """Pre-LN transformer block on F.scaled_dot_product_attention (ONNX: opset 14 or later)."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(approximate="tanh"), nn.Linear(mlp, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.out(y.transpose(1, 2).reshape(b, n, d))
        out: Tensor = x + self.mlp(self.norm2(x))
        return out


class SDPAEncoder(nn.Module):
    def __init__(self, seq: int = 16, dim: int = 64, heads: int = 4, mlp: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, seq, dim) * 0.1)
        self.blocks = nn.Sequential(*[SDPABlock(dim, heads, mlp) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, 32)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.proj(self.norm(self.blocks(x + self.pos)))
        return out


def sdpa_encoder() -> Built:
    torch.manual_seed(0)
    return SDPAEncoder().eval(), (torch.randn(1, 16, 64),)


# --------------------------------------------------------------------------- groupnorm_net


class GNBlock(nn.Module):
    """Residual block with GroupNorm and SiLU (diffusion-model style)."""

    def __init__(self, cin: int, cout: int, groups: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.skip: nn.Module = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm2(self.conv2(F.silu(self.norm1(self.conv1(x)))))
        out: Tensor = F.silu(y + self.skip(x))
        return out


class GroupNormNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, stride=2, padding=1)
        self.block1 = GNBlock(32, 32)
        self.down = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.block2 = GNBlock(64, 64)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        y = self.block2(self.down(self.block1(self.stem(x))))
        out: Tensor = self.head(y.mean(dim=(2, 3)))
        return out


def groupnorm_net() -> Built:
    torch.manual_seed(0)
    model = GroupNormNet().eval()
    with torch.no_grad():
        nn.init.normal_(model.head.weight, 0.0, 0.5)  # outputs O(1)
    return model, (torch.randn(1, 3, 32, 32),)


# --------------------------------------------------------------------------- gelu_mixer


class MixerBlock(nn.Module):
    """MLP-Mixer block: token-mixing and channel-mixing MLPs with exact (erf) GELU."""

    def __init__(self, tokens: int, dim: int, token_mlp: int, channel_mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token = nn.Sequential(nn.Linear(tokens, token_mlp), nn.GELU(), nn.Linear(token_mlp, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel = nn.Sequential(nn.Linear(dim, channel_mlp), nn.GELU(), nn.Linear(channel_mlp, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.token(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        out: Tensor = x + self.channel(self.norm2(x))
        return out


class GeluMixer(nn.Module):
    def __init__(
        self, num_classes: int = 10, dim: int = 64, patch: int = 4, size: int = 32, depth: int = 2
    ) -> None:
        super().__init__()
        tokens = (size // patch) ** 2
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, dim, 64, 128) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        out: Tensor = self.head(self.norm(self.blocks(x)).mean(dim=1))
        return out


def gelu_mixer() -> Built:
    torch.manual_seed(0)
    model = GeluMixer().eval()
    with torch.no_grad():
        nn.init.normal_(model.head.weight, 0.0, 0.5)  # outputs O(1)
    return model, (torch.randn(1, 3, 32, 32),)


# --------------------------------------------------------------------------- logsoftmax_head


class LogSoftmaxNet(nn.Module):
    """A classifier whose head adds a learned log-prior to log_softmax (logit adjustment).

    The ADD after LOG_SOFTMAX makes int8 converters quantize LOG_SOFTMAX itself, whose int8 kernel
    demands output scale 16/256: litert-torch gives it the ADD's scale and LiteRT refuses the file.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(3, 16, 3, stride=2, act=nn.ReLU()),
            _conv_bn(16, 32, 3, stride=2, act=nn.ReLU()),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(32, num_classes)
        self.log_prior = nn.Parameter(torch.randn(1, num_classes) * 0.3)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = F.log_softmax(self.fc(torch.flatten(self.features(x), 1)), dim=1) + self.log_prior
        return out


def logsoftmax_head() -> Built:
    torch.manual_seed(0)
    model = LogSoftmaxNet()
    _calibrate_batchnorm(model, torch.randn(16, 3, 32, 32))
    return model, (torch.randn(1, 3, 32, 32),)


# --------------------------------------------------------------------------- unet


class UNet(nn.Module):
    """Two-level U-Net: max-pool down, transposed-conv and bilinear up, skip concatenations."""

    def __init__(self, cin: int = 3, cout: int = 2, width: int = 16) -> None:
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(_conv_bn(cin, w, 3, act=nn.ReLU()), _conv_bn(w, w, 3, act=nn.ReLU()))
        self.enc2 = nn.Sequential(
            _conv_bn(w, 2 * w, 3, act=nn.ReLU()), _conv_bn(2 * w, 2 * w, 3, act=nn.ReLU())
        )
        self.mid = nn.Sequential(
            _conv_bn(2 * w, 4 * w, 3, act=nn.ReLU()), _conv_bn(4 * w, 4 * w, 3, act=nn.ReLU())
        )
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _conv_bn(4 * w, 2 * w, 3, act=nn.ReLU())
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.reduce1 = nn.Conv2d(2 * w, w, 1)
        self.dec1 = _conv_bn(2 * w, w, 3, act=nn.ReLU())
        self.out = nn.Conv2d(w, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.reduce1(self.up1(d2)), e1], 1))
        out: Tensor = self.out(d1)
        return out


def unet() -> Built:
    torch.manual_seed(0)
    model = UNet()
    _calibrate_batchnorm(model, torch.randn(8, 3, 64, 64))
    return model, (torch.randn(1, 3, 64, 64),)


# --------------------------------------------------------------------------- multi_io


class MultiIO(nn.Module):
    """Two inputs (image, metadata vector), two outputs (class logits, scaled embedding).

    The image branch squeezes its pooled features (ONNX Squeeze), which onnx-tf takes only up to
    opset 12.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            _conv_bn(3, 16, 3, stride=2, act=nn.ReLU()),
            _conv_bn(16, 32, 3, stride=2, act=nn.ReLU()),
            nn.AdaptiveAvgPool2d(1),
        )
        self.vector = nn.Sequential(nn.Linear(8, 32), nn.ReLU())  # not "meta": GraphModule owns that name
        self.cls = nn.Linear(64, 10)
        self.emb = nn.Linear(64, 16)

    def forward(self, image: Tensor, vector: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.cat([self.cnn(image).squeeze(-1).squeeze(-1), self.vector(vector)], dim=1)
        return self.cls(h), F.normalize(self.emb(h), dim=1) * 4.0


def multi_io() -> Built:
    torch.manual_seed(0)
    model = MultiIO()
    _calibrate_batchnorm(model.cnn, torch.randn(16, 3, 32, 32))  # BatchNorm is in the image branch only
    model.eval()
    with torch.no_grad():
        nn.init.normal_(model.cls.weight, 0.0, 0.3)  # outputs O(1)
    return model, (torch.randn(1, 3, 32, 32), torch.randn(1, 8))


# --------------------------------------------------------------------------- adaptive_maxpool


class AdaptiveMaxNet(nn.Module):
    """A CNN whose head pools to a fixed 4x4 grid with adaptive_max_pool2d (16x16 input: divisible)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(3, 16, 3, act=nn.ReLU()), _conv_bn(16, 32, 3, stride=2, act=nn.ReLU())
        )
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc(torch.flatten(F.adaptive_max_pool2d(self.features(x), (4, 4)), 1))
        return out


def adaptive_maxpool() -> Built:
    torch.manual_seed(0)
    model = AdaptiveMaxNet()
    _calibrate_batchnorm(model, torch.randn(16, 3, 32, 32))
    return model, (torch.randn(1, 3, 32, 32),)


ZOO: dict[str, Callable[[], Built]] = {
    "tiny_cnn": tiny_cnn,
    "mobilenet_v2": mobilenet_v2,
    "resnet": resnet,
    "hardswish_se": hardswish_se,
    "attention_encoder": attention_encoder,
    "lstm": lstm,
    "sdpa_encoder": sdpa_encoder,
    "gru": gru,
    "groupnorm_net": groupnorm_net,
    "gelu_mixer": gelu_mixer,
    "logsoftmax_head": logsoftmax_head,
    "unet": unet,
    "multi_io": multi_io,
    "adaptive_maxpool": adaptive_maxpool,
}
