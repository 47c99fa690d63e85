"""SLU (selective layer update): SkipNet-style RNN gates and the FLOPs-aware loss; and the
block-dropping controls (stochastic depth, random per-sample block skipping).

Gates (Wang et al., SkipNet, ECCV 2018; used by E2-Train): before each residual block, the
block's input is average-pooled, embedded by a per-block 1x1 convolution and fed to one
recurrent cell shared by all blocks (an LSTM as in SkipNet, or a GRU as the device
trainer's gate, ``e2train.device.slu_gate``; ``cell=``); a linear read-out gives p = sigmoid(.) and the gate is the
hard decision p > 0.5 in the forward pass with the gradient of p in the backward
(straight-through); in training the decision is sampled, on with probability p, as in
SkipNet. The model runs each block only on the samples whose gate is on.

The regulariser of E2-Train's Eq. 1 (paper 004, section 3.2): min L(W, G) + alpha C(W, G),
"C(W, G) ... calculated by accumulating the computational cost (FLOPs) of the layers that
are selected". With ``cost="flops"`` (the default) C is r, the FLOPs of the blocks that ran
as a fraction of all blocks' FLOPs (r is straight-through, so its value is the ratio that
ran and its gradient reaches every gate probability); normalising by the total only rescales
alpha. ``cost="target"`` is our alternative, ``alpha * (r - target)**2``, which pulls the
executed fraction towards ``target`` from either side instead of always towards fewer
FLOPs (the device trainer's penalty).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.train_keys import GATE_CELLS, SLU_COSTS  # noqa: F401 (re-exported)
from .policy import Policy, StepContext

GATE_EMBED = 10        # SkipNet's RNN gate: 10-d embedding, 10-d hidden state
GATE_HIDDEN = 10
GATE_INIT_BIAS = 2.0   # p = 0.88 at the start: blocks begin on, the penalty turns them off




class RNNGates(nn.Module):
    def __init__(self, block_in_channels: list[int], embed: int = GATE_EMBED, hidden: int = GATE_HIDDEN,
                 cell: str = "lstm"):
        super().__init__()
        if cell not in GATE_CELLS:
            raise ValueError(f"SLU gate cell must be one of {', '.join(GATE_CELLS)}, not {cell!r}")
        self.cell = cell
        self.embed = nn.ModuleList(nn.Conv2d(c, embed, 1) for c in block_in_channels)
        self.rnn = nn.LSTMCell(embed, hidden) if cell == "lstm" else nn.GRUCell(embed, hidden)
        self.proj = nn.Linear(hidden, 1)
        nn.init.constant_(self.proj.bias, GATE_INIT_BIAS)
        self.last_probs: list[torch.Tensor] = []

    def step(self, i: int, x: torch.Tensor, state):
        """Gate of block i for input x; returns (straight-through gate value, new state)."""
        if i == 0 or state is None:
            self.last_probs = []
        gate, new_state, p = gate_step(self.embed[i], self.rnn, self.proj, x, state, self.training)
        self.last_probs.append(p)
        return gate, new_state


def gate_step(embed: nn.Module, rnn: nn.Module, proj: nn.Module, x: torch.Tensor, state, training: bool):
    """One gate decision: (straight-through gate value, new recurrent state, probability p).
    ``state`` is None before the first block, (h, c) for an LSTM cell, h for a GRU cell. Used by
    ``RNNGates`` and by the gated blocks of a pipeline stage (the state then crosses stages)."""
    e = embed(F.adaptive_avg_pool2d(x.detach(), 1)).flatten(1)
    if isinstance(rnn, nn.LSTMCell):
        h, c = rnn(e, state)
        new_state = (h, c)
    else:
        h = new_state = rnn(e, state)
    p = torch.sigmoid(proj(h)).squeeze(1)
    if training:
        # SkipNet samples each training decision from Bernoulli(p) and thresholds only at
        # inference. Thresholding in training made the gates all-or-nothing per block:
        # p hardly depends on the input (spread < 0.01 over a batch), so the FLOPs penalty
        # switched whole blocks off for every sample at once, and a block off for every
        # sample gets no task gradient to come back (measured on digits, ResNet-8).
        hard = (torch.rand(p.shape, device=p.device) < p.detach()).to(p.dtype)
    else:
        hard = (p > 0.5).to(p.dtype)
    return hard + p - p.detach(), new_state, p


def set_gate_cell(model: nn.Module, cell: str) -> None:
    """Give a gated model fresh gates built on ``cell`` (same blocks, same sizes)."""
    old = getattr(model, "gates", None)
    if old is None:
        raise ValueError("the model has no SLU gates: build it with gated=True")
    model.gates = RNNGates([e.in_channels for e in old.embed], old.embed[0].out_channels,
                           old.rnn.hidden_size, cell=cell)


def soft_exec_ratio(model, x_hw) -> torch.Tensor | None:
    """FLOPs-weighted mean of the straight-through gate values of the last forward."""
    frac = model.block_flops_fractions(x_hw)
    terms = [f * g.mean() for f, g in zip(frac, model.last_gate_values) if g is not None]
    fixed = sum(f for f, g in zip(frac, model.last_gate_values) if g is None)
    if not terms:
        return None
    return sum(terms) + fixed


class SLU(Policy):
    """Adds the FLOPs penalty to the loss and records execution ratios. The gating itself
    happens in the model (``gated=True``)."""

    name = "slu"

    def __init__(self, alpha: float = 2.0, target: float = 0.5, cost: str = "flops"):
        if not 0.0 < target <= 1.0:
            raise ValueError(f"SLU target execution ratio must be in (0, 1], got {target!r}")
        if alpha < 0:
            raise ValueError(f"SLU alpha must be >= 0, got {alpha!r}")
        if cost not in SLU_COSTS:
            raise ValueError(f"SLU cost must be one of {', '.join(SLU_COSTS)}, not {cost!r}")
        self.alpha, self.target, self.cost = float(alpha), float(target), cost

    def on_train_start(self, ctx: StepContext) -> None:
        if getattr(ctx.model, "gates", None) is None:
            raise ValueError("SLU needs a gated model: build it with gated=True (config slu=true does)")

    def extra_loss(self, ctx):
        r = soft_exec_ratio(ctx.model, tuple(ctx.x.shape[2:]))
        if r is None:
            return None
        return self.penalty(r)

    def penalty(self, r: torch.Tensor) -> torch.Tensor:
        """The cost term of the loss for the straight-through executed FLOPs ratio r."""
        if self.cost == "flops":
            return self.alpha * r                  # alpha * C(W, G): FLOPs of the selected blocks
        return self.alpha * (r - self.target) ** 2


class StochasticDepth(Policy):
    """Huang et al. 2016: each mini-batch drops whole blocks, block l (1..L) surviving with
    p_l = 1 - l/L * (1 - p_L); at test time each residual is scaled by p_l."""

    name = "stochastic-depth"

    def __init__(self, p_last: float = 0.5, seed: int = 0):
        if not 0.0 <= p_last <= 1.0:
            raise ValueError(f"stochastic depth p_L must be in [0, 1], got {p_last!r}")
        self.p_last = float(p_last)
        self.gen = torch.Generator().manual_seed(int(seed))

    def survival(self, n_blocks: int) -> list[float]:
        return [1.0 - (l + 1) / n_blocks * (1.0 - self.p_last) for l in range(n_blocks)]

    @staticmethod
    def matched_p_last(drop_ratio: float, flops_fractions: list[float]) -> float:
        """p_L whose expected FLOPs-weighted dropping ratio is ``drop_ratio`` (E2-Train,
        section 4.3: "we adjust the hyper-parameter p_L, so that the SD dropping ratio is
        always the same as SLU"). Block l of L drops with probability l/L (1 - p_L), so the
        ratio is (1 - p_L) sum_l f_l l/L with f_l the blocks' FLOPs shares."""
        n = len(flops_fractions)
        if n < 1:
            raise ValueError("stochastic depth needs at least one block")
        if not 0.0 <= drop_ratio <= 1.0:
            raise ValueError(f"a dropping ratio must be in [0, 1], not {drop_ratio!r}")
        tot = float(sum(flops_fractions))
        reach = sum(f / tot * (l + 1) / n for l, f in enumerate(flops_fractions))
        if drop_ratio > reach + 1e-12:
            raise ValueError(f"stochastic depth drops at most {reach:.3f} of the block FLOPs (p_L = 0); "
                             f"SLU dropped {drop_ratio:.3f}: no p_L matches it")
        return max(0.0, 1.0 - drop_ratio / reach)

    def on_train_start(self, ctx):
        ctx.model.eval_scales = self.survival(len(ctx.model.blocks))

    def block_masks(self, ctx):
        n = ctx.x.shape[0]
        keep = torch.rand(len(ctx.model.blocks), generator=self.gen) < torch.tensor(self.survival(len(ctx.model.blocks)))
        return [torch.full((n,), bool(k), device=ctx.x.device) for k in keep]

    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state):
        if "gen" in state:
            self.gen.set_state(state["gen"])


class MatchedStochasticDepth(StochasticDepth):
    """Stochastic depth with p_L chosen at the start of the run so that its expected
    dropping ratio equals ``drop_ratio`` (a measured SLU ratio; E2-Train section 4.3):
    count-weighted over the blocks by default (the harness's ``block-samples`` unit), or
    FLOPs-weighted with ``flops_weighted=True``."""

    name = "stochastic-depth-matched"

    def __init__(self, drop_ratio: float, seed: int = 0, flops_weighted: bool = False):
        super().__init__(1.0, seed)
        self.drop_ratio = float(drop_ratio)
        self.flops_weighted = flops_weighted

    def on_train_start(self, ctx):
        blocks = list(ctx.model.blocks)
        if self.flops_weighted:
            w = ctx.model.block_flops_fractions(tuple(ctx.state["data"].image_hw))
        else:
            w = [1.0] * len(blocks)
        self.p_last = self.matched_p_last(self.drop_ratio, w)
        super().on_train_start(ctx)


class RandomBlockSkip(Policy):
    """Random control for SLU-like methods: each (sample, block) runs with probability
    ``exec_ratio``, independently; at test time every block runs."""

    name = "random-block-skip"

    def __init__(self, exec_ratio: float, seed: int = 0):
        if not 0.0 < exec_ratio <= 1.0:
            raise ValueError(f"execution ratio must be in (0, 1], got {exec_ratio!r}")
        self.exec_ratio = float(exec_ratio)
        self.gen = torch.Generator().manual_seed(int(seed))

    def block_masks(self, ctx):
        n = ctx.x.shape[0]
        return [(torch.rand(n, generator=self.gen) < self.exec_ratio).to(ctx.x.device)
                for _ in ctx.model.blocks]

    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state):
        if "gen" in state:
            self.gen.set_state(state["gen"])
