"""ResNet-CIFAR (depth 6n+2) and MobileNetV2-CIFAR, ungated or with SLU gates.

Residual blocks take a per-sample execution mask: the block runs on the samples whose mask
is on (gathered into a smaller batch) and the identity shortcut carries the others, so a
gated-off sample costs no convolution at all -- in wall clock and in the work tally.

Masks come from the model's own SLU gates (``gated=True``, ``e2train.torch.slu.RNNGates``)
or from the caller (``model(x, block_masks=[...])``: stochastic depth, random controls).
The first convolution accepts any number of input channels and any image size (digits are
1 x 8 x 8). Convolutions are made by ``make_conv`` for the chosen precision.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.model_names import parse_model  # noqa: F401 (re-exported: the trainers' one model-name parser)
from ..core.shapes import MAX_DIM
from ..core.train_keys import PRECISIONS
from .psg import PSGConv2d, QConv2d


def make_conv(ci: int, co: int, k: int, stride: int = 1, *, precision: str = "fp32", beta: float = 0.05,
              x_unsigned: bool = True, groups: int = 1) -> nn.Module:
    """A bias-free k x k convolution (padding k//2) in the given precision.

    fp32 / signsgd: float ``nn.Conv2d``; int8_fp32grad: 8-bit forward, float backward;
    int8_int16grad: the fixed-point contract with every sign exact (PSG's beta = 0);
    psg: the contract with the PSG predictor at ``beta``.
    """
    if precision in ("fp32", "signsgd"):
        conv = nn.Conv2d(ci, co, k, stride, k // 2, groups=groups, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        return conv
    if precision == "int8_fp32grad":
        return QConv2d(ci, co, k, stride, k // 2, groups=groups, x_unsigned=x_unsigned)
    if precision == "int8_int16grad":
        return PSGConv2d(ci, co, k, stride, groups=groups, beta=0.0, x_unsigned=x_unsigned)
    if precision == "psg":
        return PSGConv2d(ci, co, k, stride, groups=groups, beta=beta, x_unsigned=x_unsigned)
    raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _masked(block_fn, shortcut_fn, x: torch.Tensor, mask: torch.Tensor | None,
            gate: torch.Tensor | None, post=None) -> torch.Tensor:
    """out = post(shortcut(x) + gate * F(x)) on the masked samples, shortcut(x) elsewhere.

    F runs on x[mask] only. ``gate`` (straight-through, value 1 where on) lets the task
    loss reach the gate of every sample that ran. The shortcut is a per-sample function
    (identity, or subsample + zero channels), so the active samples take theirs from the
    one gathered copy of x: one gather and one scatter per block, whose backward is one
    index-add and one masked fill. (At 8x8 inputs the convolutions of half a batch already
    cost about 0.65 of the full batch's, so every extra full-size op shows; see the speed
    section of docs/torch.md.)
    """
    post = post or _identity
    if mask is None:
        r = block_fn(x)
        return post(shortcut_fn(x) + (r if gate is None else gate.view(-1, 1, 1, 1) * r))
    idx = mask.nonzero().view(-1)
    if idx.numel() == 0:
        return shortcut_fn(x)
    if idx.numel() == x.shape[0]:
        return _masked(block_fn, shortcut_fn, x, None, gate, post)
    xa = x.index_select(0, idx)
    r = block_fn(xa)
    if gate is not None:
        r = gate.index_select(0, idx).view(-1, 1, 1, 1) * r
    part = post(shortcut_fn(xa) + r)
    return shortcut_fn(x).index_copy(0, idx, part)


class BasicBlock(nn.Module):
    """3x3-3x3 residual block; option-A shortcut (subsample + zero channels), as in He et al.
    for CIFAR, so that skipping a block needs no convolution at all."""

    def __init__(self, ci: int, co: int, stride: int, conv_kw: dict):
        super().__init__()
        self.conv1 = make_conv(ci, co, 3, stride, **conv_kw)
        self.bn1 = nn.BatchNorm2d(co)
        self.conv2 = make_conv(co, co, 3, 1, **conv_kw)
        self.bn2 = nn.BatchNorm2d(co)
        self.stride, self.pad_c = stride, co - ci
        self.in_channels, self.out_channels = ci, co

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad_c == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_c // 2, self.pad_c - self.pad_c // 2))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x, mask=None, gate=None, scale: float = 1.0):
        res = self.residual if scale == 1.0 else (lambda t: scale * self.residual(t))
        return _masked(res, self.shortcut, x, mask, gate, post=F.relu)


class GatedNet(nn.Module):
    """Shared machinery: blocks with masks, optional SLU gates, skip statistics."""

    blocks: nn.ModuleList

    def _init_gating(self, gated: bool, block_in_channels: list[int]) -> None:
        from .slu import RNNGates
        self.gates = RNNGates(block_in_channels) if gated else None
        self.eval_scales: list[float] | None = None    # stochastic depth: E[survival] at test
        self.last_gate_values: list[torch.Tensor | None] = []   # straight-through gate values
        self.last_masks: list[torch.Tensor | None] = []
        self._flops_frac = None

    def block_flops_fractions(self, x_hw: tuple[int, int]) -> list[float]:
        """Each block's share of the blocks' conv MACs (per sample), for the FLOPs penalty
        and for execution ratios."""
        if self._flops_frac is None:
            flops = []
            h, w = x_hw
            h, w = self._stem_hw(h, w)
            for b in self.blocks:
                h2, w2 = -(-h // b.stride), -(-w // b.stride)
                flops.append(b.macs_per_sample(h, w))
                h, w = h2, w2
            tot = float(sum(flops))
            self._flops_frac = [f / tot for f in flops]
        return self._flops_frac

    def _stem_hw(self, h, w):
        return h, w

    def run_blocks(self, x: torch.Tensor, block_masks=None) -> torch.Tensor:
        n = len(self.blocks)
        if block_masks is not None and len(block_masks) != n:
            raise ValueError(f"block_masks must have one entry per block ({n}), got {len(block_masks)}")
        self.last_gate_values, self.last_masks = [], []
        state = None
        for i, b in enumerate(self.blocks):
            gate = mask = None
            if not getattr(b, "use_res", True):
                pass                        # no identity path: the block always runs
            elif block_masks is not None:
                mask = block_masks[i]
                if mask is not None:          # a policy may draw its masks on the host
                    mask = mask.to(x.device)
            elif self.gates is not None:
                gate, state = self.gates.step(i, x, state)
                mask = gate.detach() > 0.5
            scale = 1.0
            if not self.training and self.eval_scales is not None and block_masks is None:
                scale = self.eval_scales[i]
            self.last_gate_values.append(gate)
            self.last_masks.append(mask)
            x = b(x, mask, gate, scale)
        return x

    def exec_ratio(self, x_hw: tuple[int, int]) -> float:
        """FLOPs-weighted fraction of block computation that ran in the last forward."""
        frac = self.block_flops_fractions(x_hw)
        tot = 0.0
        for f, m in zip(frac, self.last_masks):
            tot += f * (1.0 if m is None else float(m.float().mean()) if m.numel() else 0.0)
        return tot


class ResNetCifar(GatedNet):
    """ResNet for CIFAR-sized inputs, depth = 6n + 2 (8, 14, 20, 38, 74, 110, ...)."""

    def __init__(self, depth: int = 20, in_channels: int = 3, num_classes: int = 10, *,
                 precision: str = "fp32", beta: float = 0.05, gated: bool = False, width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet-CIFAR depth must be 6n+2 with n >= 1 (8, 14, 20, 38, 74, 110), got {depth}")
        n = (depth - 2) // 6
        kw = dict(precision=precision, beta=beta)
        # the network input is standardised (signed): int8 codes for the first conv
        self.conv1 = make_conv(in_channels, width, 3, 1, x_unsigned=False, **kw)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, ci = [], width
        for stage, co in enumerate((width, 2 * width, 4 * width)):
            for j in range(n):
                blocks.append(BasicBlock(ci, co, 2 if (stage and j == 0) else 1, kw))
                ci = co
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(ci, num_classes)
        self.depth = depth
        self._init_gating(gated, [b.in_channels for b in blocks])

    def forward(self, x: torch.Tensor, block_masks=None) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.run_blocks(x, block_masks)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _basic_macs(self: BasicBlock, h: int, w: int) -> int:
    ho, wo = -(-h // self.stride), -(-w // self.stride)
    return ho * wo * self.out_channels * 9 * (self.in_channels + self.out_channels)


BasicBlock.macs_per_sample = _basic_macs


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, ci: int, co: int, stride: int, expand: int, conv_kw: dict):
        super().__init__()
        hid = ci * expand
        self.in_channels, self.out_channels, self.stride, self.hidden = ci, co, stride, hid
        self.use_res = stride == 1 and ci == co
        layers: list[nn.Module] = []
        if expand != 1:
            # the block input is a linear bottleneck (signed): int8 codes
            layers += [make_conv(ci, hid, 1, 1, x_unsigned=False, **conv_kw), nn.BatchNorm2d(hid), nn.ReLU6()]
        layers += [make_conv(hid, hid, 3, stride, groups=hid, x_unsigned=expand != 1, **conv_kw),
                   nn.BatchNorm2d(hid), nn.ReLU6(),
                   make_conv(hid, co, 1, 1, x_unsigned=True, **conv_kw), nn.BatchNorm2d(co)]
        self.body = nn.Sequential(*layers)

    def macs_per_sample(self, h: int, w: int) -> int:
        ho, wo = -(-h // self.stride), -(-w // self.stride)
        exp = h * w * self.in_channels * self.hidden if self.hidden != self.in_channels else 0
        return exp + ho * wo * self.hidden * 9 + ho * wo * self.hidden * self.out_channels

    def forward(self, x, mask=None, gate=None, scale: float = 1.0):
        if not self.use_res:               # no identity path: this block always runs
            return self.body(x)
        res = self.body if scale == 1.0 else (lambda t: scale * self.body(t))
        return _masked(res, _identity, x, mask, gate)


class MobileNetV2Cifar(GatedNet):
    """MobileNetV2 for small inputs (stride 1 stem; CIFAR variant). Only blocks with an
    identity shortcut can be gated or dropped; the others always run (mask ignored)."""

    CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, in_channels: int = 3, num_classes: int = 10, *, precision: str = "fp32",
                 beta: float = 0.05, gated: bool = False, width_mult: float = 1.0):
        super().__init__()
        kw = dict(precision=precision, beta=beta)
        c = lambda v: max(8, int(round(v * width_mult / 8)) * 8)  # noqa: E731
        stem = c(32)
        self.conv1 = make_conv(in_channels, stem, 3, 1, x_unsigned=False, **kw)
        self.bn1 = nn.BatchNorm2d(stem)
        blocks, ci = [], stem
        for t, ch, n, s in self.CFG:
            for j in range(n):
                blocks.append(InvertedResidual(ci, c(ch), s if j == 0 else 1, t, kw))
                ci = c(ch)
        self.blocks = nn.ModuleList(blocks)
        last = c(1280) if width_mult > 1 else 1280
        if precision not in ("fp32", "signsgd", "int8_fp32grad"):
            last = min(last, MAX_DIM)      # the kernels take at most 1024 channels (core.shapes)
        self.conv_last = make_conv(ci, last, 1, 1, x_unsigned=False, **kw)
        self.bn_last = nn.BatchNorm2d(last)
        self.fc = nn.Linear(last, num_classes)
        self._init_gating(gated, [b.in_channels for b in blocks])

    def forward(self, x, block_masks=None):
        x = F.relu6(self.bn1(self.conv1(x)))
        x = self.run_blocks(x, block_masks)
        x = F.relu6(self.bn_last(self.conv_last(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_model(name: str, in_channels: int, num_classes: int, *, precision: str = "fp32",
                beta: float = 0.05, gated: bool = False) -> nn.Module:
    """'resnet8' ... 'resnet110' (any 6n+2), 'mobilenetv2' / 'mobilenetv2_0.5' (width),
    the other papers' models (``paper_models``: plain networks, no SLU gates), or paper 003's
    'modified_alexnet'."""
    kind, arg = parse_model(name)
    if kind == "modified_alexnet":
        from .modified_alexnet import ModifiedAlexNet
        if precision != "fp32" or gated:
            raise ValueError("modified_alexnet is a float model without residual blocks: precision fp32, no slu")
        return ModifiedAlexNet(in_channels, num_classes)
    if kind == "resnet":
        return ResNetCifar(int(arg), in_channels, num_classes, precision=precision, beta=beta, gated=gated)
    if kind == "mobilenetv2":
        return MobileNetV2Cifar(in_channels, num_classes, precision=precision, beta=beta, gated=gated, width_mult=arg)
    if gated:
        raise ValueError(f"SLU gates need residual blocks with an identity path: use resnet<6n+2> or "
                         f"mobilenetv2, not {name}")
    from .paper_models import build_paper_model
    return build_paper_model(kind, int(arg), in_channels, num_classes, dict(precision=precision, beta=beta))
