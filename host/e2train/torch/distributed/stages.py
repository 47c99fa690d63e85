"""A model as a sequence of layers, and pipeline stages as contiguous slices of it.

``layers_of(model)`` gives modules whose composition in order is ``model(x)``:
paper 003's Modified AlexNet is already its sixteen table rows; a ResNet-CIFAR becomes
[stem, block 0, ..., block n-1, head]. Every rank builds the whole model from the same seed
and keeps its slice, so the stages start from exactly the weights sequential training starts
from.

A ResNet-CIFAR with SLU gates (``gated=True``): the SkipNet gates run one recurrent cell over
the blocks in order, so the state after a block's gate is an input of the next block's gate,
wherever that block is. Each gated block takes and returns the carry (x, r, state..., cell weights...): the
activation, the straight-through executed FLOPs ratio r summed so far (the SLU cost, E2-Train
Eq. 1, is alpha * C of the whole network; the last stage adds it to the loss), and the gate's
hidden state (h, c for an LSTM, h for a GRU). A stage boundary sends the whole carry forward
and gets its gradient back, so the gradients are the one-process ones. The recurrent cell and its
read-out are one weight shared by all gates: the stage of the first block owns (stashes and
updates) it, and its weights travel in the carry too, so the later stages' gates run the very
version the owner's forward used and their gradients come back to the owner with the carry's
gradient (a few hundred floats per message).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..models import ResNetCifar
from ..modified_alexnet import LAYER_NAMES, ModifiedAlexNet
from ..slu import gate_step


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


class _GateCell(nn.Module):
    """The gates' recurrent cell and read-out, shared by all gated blocks."""

    def __init__(self, rnn: nn.Module, proj: nn.Module):
        super().__init__()
        self.rnn, self.proj = rnn, proj
        self.n_state = 2 if isinstance(rnn, nn.LSTMCell) else 1     # (h, c) or h

    def forward(self, embed: nn.Module, x, state, training: bool):
        return gate_step(embed, self.rnn, self.proj, x, state, training)


class _GatedBlock(nn.Module):
    """Block i with its SLU gate. Carry in: x (first block) or (x, r, *state, *cell weights);
    carry out: (x, r, *state, *cell weights). The first gated block owns the cell (its
    parameters are that stage's, stashed and updated there); the later blocks run the cell
    weights that came in the carry, so every gate of a mini-batch runs one version of the cell
    and their gradients all reach the owner through the carry, as in one process."""

    def __init__(self, block: nn.Module, embed: nn.Module, cell: _GateCell, flops_frac: float, owner: bool):
        super().__init__()
        self.block, self.embed, self.flops_frac, self.owner = block, embed, flops_frac, owner
        if owner:
            self.cell = cell
        else:
            self.__dict__["_cell"] = cell        # a template only: not a parameter of this stage
        self.cell_names = [n for n, _ in cell.named_parameters()]

    def forward(self, carry):
        if self.owner:
            x, r, state = carry, None, None
            gate, state, _ = self.cell(self.embed, x, state, self.training)
            weights = tuple(p for _, p in self.cell.named_parameters())
        else:
            x, r, *rest = carry
            k = self.__dict__["_cell"].n_state
            state = tuple(rest[:k]) if k > 1 else rest[0]
            weights = tuple(rest[k:])
            gate, state, _ = functional_call(self.__dict__["_cell"], dict(zip(self.cell_names, weights)),
                                             (self.embed, x, state, self.training))
        term = (self.flops_frac * gate.mean()).reshape(1)
        r = term if r is None else r + term
        x = self.block(x, gate.detach() > 0.5, gate)
        return (x, r) + (state if isinstance(state, tuple) else (state,)) + weights


class _GatedHead(_ResNetHead):
    """The head after gated blocks: (logits, r), r the executed FLOPs ratio for the SLU cost."""

    def forward(self, carry):
        return super().forward(carry[0]), carry[1]


def layers_of(model: nn.Module, image_hw: tuple[int, int] | None = None) -> list[tuple[str, nn.Module]]:
    """(name, module) in order; ValueError for models that cannot be cut into a chain.
    ``image_hw``: the input's height and width, needed for a gated model (the blocks' FLOPs shares)."""
    if isinstance(model, ModifiedAlexNet):
        return [(f"{i} {n}", m) for i, (n, m) in enumerate(zip(LAYER_NAMES, model))]
    if isinstance(model, ResNetCifar):
        if model.gates is not None:
            if image_hw is None:
                raise ValueError("a gated model's stages need the input's image_hw (the blocks' FLOPs shares)")
            frac = model.block_flops_fractions(tuple(image_hw))
            cell = _GateCell(model.gates.rnn, model.gates.proj)
            return ([("stem", _ResNetStem(model))]
                    + [(f"block{i}", _GatedBlock(b, model.gates.embed[i], cell, frac[i], owner=i == 0))
                       for i, b in enumerate(model.blocks)] + [("head", _GatedHead(model))])
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
