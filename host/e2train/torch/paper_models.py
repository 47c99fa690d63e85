"""The other papers' models, with CIFAR stems: VGG-11/16/19 (with batch norm, as Learn&Drop
recommends, paper 001 section 4.1), ResNet-18/34/50 (He et al. 2016: basic blocks, and
bottlenecks for 50; 3x3 stride-1 stem, no max-pool), DenseNet-121 (Huang et al. 2017: growth
32, blocks 6-12-24-16, compression 0.5, 3x3 stem). Used by GSkip (paper 000), Learn&Drop
(paper 001) and WUS (paper 002).

They are plain networks: no SLU gates or block masks (SLU and stochastic depth need the
ResNet-CIFAR or MobileNetV2 of ``models.py``). Each lists its ``sequential_units()`` and its
forward applies them in that order (Learn&Drop cuts between them). Convolutions come from
``models.make_conv``, so the precisions apply; PSG refuses layers wider than the kernels take
(``core.shapes.MAX_DIM``).
Any input size works (global average pooling before the classifier; VGG pools only while the
map is larger than 1x1), so digits' 8x8 inputs run too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VGG_CFG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
RESNET_CFG = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3])}
DENSENET_CFG = {121: [6, 12, 24, 16]}


def _conv(ci, co, k, stride=1, conv_kw=None):
    from .models import make_conv
    return make_conv(ci, co, k, stride, **(conv_kw or {}))


class _Pool(nn.Module):
    """2x2 max-pool while the map is larger than 1x1 (small inputs run through every stage)."""

    def forward(self, x):
        return F.max_pool2d(x, 2) if min(x.shape[2:]) >= 2 else x


class _ConvBNReLU(nn.Sequential):
    def __init__(self, ci, co, conv_kw, pool=False):
        layers = [_conv(ci, co, 3, 1, conv_kw), nn.BatchNorm2d(co), nn.ReLU(inplace=False)]
        if pool:
            layers.append(_Pool())
        super().__init__(*layers)


class _Head(nn.Module):
    def __init__(self, ci, num_classes):
        super().__init__()
        self.fc = nn.Linear(ci, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _UnitChain(nn.Module):
    """A network that is its units applied one after the other: ``forward`` runs
    ``sequential_units()`` in order, so the units Learn&Drop cuts between (paper 001) are the
    forward pass by construction, not by a second copy of it."""

    def sequential_units(self) -> list[tuple[str, nn.Module]]:
        raise NotImplementedError

    def forward(self, x):
        for _, unit in self.sequential_units():
            x = unit(x)
        return x


class VGG(_UnitChain):
    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10, conv_kw: dict | None = None):
        super().__init__()
        cfg = VGG_CFG[depth]
        layers, ci = [], in_channels
        for i, v in enumerate(cfg):
            if v == "M":
                continue
            pool = i + 1 < len(cfg) and cfg[i + 1] == "M"
            layers.append(_ConvBNReLU(ci, v, conv_kw, pool))
            ci = v
        self.features = nn.ModuleList(layers)
        self.head = _Head(ci, num_classes)

    def sequential_units(self):
        return [*((f"features.{i}", m) for i, m in enumerate(self.features)), ("head", self.head)]


def _projection(ci, co, stride, conv_kw):
    """A residual block's shortcut: the identity (None) unless the block changes the stride or
    the width, then a 1x1 convolution with batch norm (He et al. 2016, projection shortcut)."""
    if stride == 1 and ci == co:
        return None
    return nn.Sequential(_conv(ci, co, 1, stride, conv_kw), nn.BatchNorm2d(co))


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, ci, co, stride, conv_kw):
        super().__init__()
        self.conv1, self.bn1 = _conv(ci, co, 3, stride, conv_kw), nn.BatchNorm2d(co)
        self.conv2, self.bn2 = _conv(co, co, 3, 1, conv_kw), nn.BatchNorm2d(co)
        self.proj = _projection(ci, co, stride, conv_kw)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.proj is None else self.proj(x)))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, ci, width, stride, conv_kw):
        super().__init__()
        co = width * 4
        self.conv1, self.bn1 = _conv(ci, width, 1, 1, conv_kw), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride, conv_kw), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = _conv(width, co, 1, 1, conv_kw), nn.BatchNorm2d(co)
        self.proj = _projection(ci, co, stride, conv_kw)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.proj is None else self.proj(x)))


class _Stem(nn.Module):
    def __init__(self, ci, co, conv_kw):
        super().__init__()
        self.conv, self.bn = _conv(ci, co, 3, 1, {**(conv_kw or {}), "x_unsigned": False}), nn.BatchNorm2d(co)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class ResNetHe(_UnitChain):
    """ResNet-18/34/50 of He et al. with a CIFAR stem (3x3, stride 1, no max-pool)."""

    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10, conv_kw: dict | None = None):
        super().__init__()
        kind, counts = RESNET_CFG[depth]
        block = _Basic if kind == "basic" else _Bottleneck
        self.stem = _Stem(in_channels, 64, conv_kw)
        layers, ci = [], 64
        for stage, (w, n) in enumerate(zip((64, 128, 256, 512), counts)):
            for j in range(n):
                layers.append(block(ci, w, 2 if (stage and j == 0) else 1, conv_kw))
                ci = w * block.expansion
        self.blocks = nn.ModuleList(layers)
        self.head = _Head(ci, num_classes)

    def sequential_units(self):
        return [("stem", self.stem), *((f"blocks.{i}", b) for i, b in enumerate(self.blocks)), ("head", self.head)]


class _DenseLayer(nn.Module):
    def __init__(self, ci, growth, conv_kw):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(ci), _conv(ci, 4 * growth, 1, 1, conv_kw)
        self.bn2, self.conv2 = nn.BatchNorm2d(4 * growth), _conv(4 * growth, growth, 3, 1, conv_kw)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class _Transition(nn.Module):
    def __init__(self, ci, co, conv_kw):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(ci), _conv(ci, co, 1, 1, conv_kw)
        self.pool = _Pool()

    def forward(self, x):
        return self.pool(self.conv(F.relu(self.bn(x))))


class _DenseHead(_Head):
    def __init__(self, ci, num_classes):
        super().__init__(ci, num_classes)
        self.bn = nn.BatchNorm2d(ci)

    def forward(self, x):
        return super().forward(F.relu(self.bn(x)))


class DenseNet(_UnitChain):
    """DenseNet-BC-121 for CIFAR: growth 32, 3x3 stem of 2 x growth channels, compression 0.5."""

    def __init__(self, depth: int = 121, in_channels: int = 3, num_classes: int = 10, conv_kw: dict | None = None,
                 growth: int = 32):
        super().__init__()
        self.stem = _conv(in_channels, 2 * growth, 3, 1, {**(conv_kw or {}), "x_unsigned": False})
        units, ci = [], 2 * growth
        for i, n in enumerate(DENSENET_CFG[depth]):
            for _ in range(n):
                units.append(_DenseLayer(ci, growth, conv_kw))
                ci += growth
            if i < len(DENSENET_CFG[depth]) - 1:
                units.append(_Transition(ci, ci // 2, conv_kw))
                ci //= 2
        self.layers = nn.ModuleList(units)
        self.head = _DenseHead(ci, num_classes)

    def sequential_units(self):
        return [("stem", self.stem), *((f"layers.{i}", m) for i, m in enumerate(self.layers)), ("head", self.head)]


def build_paper_model(kind: str, depth: int, in_channels: int, num_classes: int, conv_kw: dict) -> nn.Module:
    cls = {"vgg": VGG, "resnet-he": ResNetHe, "densenet": DenseNet}[kind]
    return cls(depth, in_channels, num_classes, conv_kw)
