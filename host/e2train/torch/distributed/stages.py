"""A model as a sequence of layers, and pipeline stages as contiguous slices of it.

``layers_of(model)`` gives modules whose composition in order is ``model(x)``:
paper 003's Modified AlexNet is already its sixteen table rows; a ResNet-CIFAR becomes
[stem, block 0, ..., block n-1, head]. Every rank builds the whole model from the same seed
and keeps its slice, so the stages start from exactly the weights sequential training starts
from.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import ResNetCifar
from ..modified_alexnet import LAYER_NAMES, ModifiedAlexNet


class _ResNetStem(nn.Module):
    def __init__(self, net: ResNetCifar):
        super().__init__()
        self.conv1, self.bn1 = net.conv1, net.bn1

    def forward(self, x):
        return F.relu(self.bn1(self.conv1(x)))


class _ResNetHead(nn.Module):
    def __init__(self, net: ResNetCifar):
        super().__init__()
        self.fc = net.fc

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _Block(nn.Module):
    """A residual block run whole (no gate: see ``layers_of``)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x):
        return self.block(x)


def layers_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) in order; ValueError for models that cannot be cut into a chain."""
    if isinstance(model, ModifiedAlexNet):
        return [(f"{i} {n}", m) for i, (n, m) in enumerate(zip(LAYER_NAMES, model))]
    if isinstance(model, ResNetCifar):
        if model.gates is not None:
            raise ValueError("pipeline stages cannot cut a model with SLU gates: the gates share one LSTM "
                             "state across all blocks; train slu without --pipeline")
        return ([("stem", _ResNetStem(model))] + [(f"block{i}", _Block(b)) for i, b in enumerate(model.blocks)]
                + [("head", _ResNetHead(model))])
    raise ValueError(f"{type(model).__name__} cannot be cut into pipeline stages: use modified_alexnet or resnet<6n+2>")


def stage_module(layers: list[tuple[str, nn.Module]], bounds: list[int], index: int) -> nn.Sequential:
    """Stage ``index`` of the split ``bounds`` (layer indices, bounds[0] = 0, bounds[-1] = len)."""
    return nn.Sequential(*(m for _, m in layers[bounds[index]: bounds[index + 1]]))


def check_bounds(bounds: list[int], n_layers: int) -> None:
    if bounds[0] != 0 or bounds[-1] != n_layers or any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"a split must be increasing layer indices from 0 to {n_layers} with no empty stage, "
                         f"got {bounds}")
