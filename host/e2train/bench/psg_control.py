"""The random control of PSG: the same fraction of weight signs taken from the MSB predictor,
but at positions chosen uniformly at random instead of where the predictor is confident.

Same granularity (one decision per weight per step), same work (every weight-gradient MAC
runs the 4x10-bit predictor product; the exact 8x16-bit product runs only for the weights
not taken from the predictor, as the layer's own bookkeeping counts them), so the only
difference from PSG is *which* signs come from the predictor.

The random choice is installed through the layer's public decision hook
(``PSGConv2d.decide``); everything else (the exact and MSB sums, the counters, the MACs
the energy model prices) is the layer's own code.
"""
from __future__ import annotations

import torch

from ..torch import psg as _psg
from ..torch.policy import Policy


class RandomPredictorChoice(Policy):
    name = "random-predictor-choice"

    def __init__(self, ratio: float, seed: int = 0):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"predicted fraction must be in [0, 1], got {ratio!r}")
        self.ratio = float(ratio)
        self.gen = torch.Generator().manual_seed(int(seed))

    def _decide(self, g_msb: torch.Tensor, g_exact: torch.Tensor, beta_q: int):
        gm = g_msb.round().to(torch.int64)
        # drawn on the (CPU) generator, then moved: the same seed picks the same weights on any device
        predicted = torch.rand(gm.shape, generator=self.gen).to(gm.device) < self.ratio
        exact = torch.sign(g_exact.round().to(torch.int64))
        sign = torch.where(predicted, torch.sign(gm), exact)
        return sign, predicted, int(gm.abs().max()) if gm.numel() else 0

    def on_train_start(self, ctx):
        layers = [m for m in ctx.model.modules() if isinstance(m, _psg.PSGConv2d)]
        if not layers:
            raise ValueError("the random PSG control needs a model with PSG layers (precision psg)")
        for layer in layers:
            layer.decide = self._decide

    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state):
        if "gen" in state:
            self.gen.set_state(state["gen"])
