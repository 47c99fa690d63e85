"""SLU (selective layer update): SkipNet-style RNN gates and the FLOPs-aware loss; and the
block-dropping controls (stochastic depth, random per-sample block skipping).

Gates (Wang et al., SkipNet, ECCV 2018; used by E2-Train): before each residual block, the
block's input is average-pooled, embedded by a per-block 1x1 convolution and fed to one
LSTM cell shared by all blocks; a linear read-out gives p = sigmoid(.) and the gate is the
hard decision p > 0.5 in the forward pass with the gradient of p in the backward
(straight-through); in training the decision is sampled, on with probability p, as in
SkipNet. The model runs each block only on the samples whose gate is on.

The FLOPs penalty, alpha * C(W, G), is ``alpha * (r - target)**2`` where r is the
FLOPs-weighted execution ratio of the blocks (straight-through, so its value is the ratio
that ran and its gradient reaches every gate probability): it pulls the executed fraction
towards ``target`` from either side instead of driving every gate off.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .policy import Policy, StepContext

GATE_EMBED = 10        # SkipNet's RNN gate: 10-d embedding, 10-d hidden state
GATE_HIDDEN = 10
GATE_INIT_BIAS = 2.0   # p = 0.88 at the start: blocks begin on, the penalty turns them off


class RNNGates(nn.Module):
    def __init__(self, block_in_channels: list[int], embed: int = GATE_EMBED, hidden: int = GATE_HIDDEN):
        super().__init__()
        self.embed = nn.ModuleList(nn.Conv2d(c, embed, 1) for c in block_in_channels)
        self.rnn = nn.LSTMCell(embed, hidden)
        self.proj = nn.Linear(hidden, 1)
        nn.init.constant_(self.proj.bias, GATE_INIT_BIAS)
        self.last_probs: list[torch.Tensor] = []

    def step(self, i: int, x: torch.Tensor, state):
        """Gate of block i for input x; returns (straight-through gate value, new state)."""
        if i == 0 or state is None:
            self.last_probs = []
        e = self.embed[i](F.adaptive_avg_pool2d(x.detach(), 1)).flatten(1)
        h, c = self.rnn(e, state)
        p = torch.sigmoid(self.proj(h)).squeeze(1)
        self.last_probs.append(p)
        if self.training:
            # SkipNet samples each training decision from Bernoulli(p) and thresholds only at
            # inference. Thresholding in training made the gates all-or-nothing per block:
            # p hardly depends on the input (spread < 0.01 over a batch), so the FLOPs penalty
            # switched whole blocks off for every sample at once, and a block off for every
            # sample gets no task gradient to come back (measured on digits, ResNet-8).
            hard = (torch.rand(p.shape, device=p.device) < p.detach()).to(p.dtype)
        else:
            hard = (p > 0.5).to(p.dtype)
        return hard + p - p.detach(), (h, c)


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

    def __init__(self, alpha: float = 2.0, target: float = 0.5):
        if not 0.0 < target <= 1.0:
            raise ValueError(f"SLU target execution ratio must be in (0, 1], got {target!r}")
        if alpha < 0:
            raise ValueError(f"SLU alpha must be >= 0, got {alpha!r}")
        self.alpha, self.target = float(alpha), float(target)

    def on_train_start(self, ctx: StepContext) -> None:
        if getattr(ctx.model, "gates", None) is None:
            raise ValueError("SLU needs a gated model: build it with gated=True (config slu=true does)")

    def extra_loss(self, ctx):
        r = soft_exec_ratio(ctx.model, tuple(ctx.x.shape[2:]))
        if r is None:
            return None
        return self.alpha * (r - self.target) ** 2


class StochasticDepth(Policy):
    """Huang et al. 2016: each mini-batch drops whole blocks, block l (1..L) surviving with
    p_l = 1 - l/L * (1 - p_L); at test time each residual is scaled by p_l."""

    name = "stochastic-depth"

    def __init__(self, p_last: float = 0.5, seed: int = 0):
        if not 0.0 < p_last <= 1.0:
            raise ValueError(f"stochastic depth p_L must be in (0, 1], got {p_last!r}")
        self.p_last = float(p_last)
        self.gen = torch.Generator().manual_seed(int(seed))

    def survival(self, n_blocks: int) -> list[float]:
        return [1.0 - (l + 1) / n_blocks * (1.0 - self.p_last) for l in range(n_blocks)]

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
