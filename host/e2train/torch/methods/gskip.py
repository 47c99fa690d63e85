"""GSkip: layer-wise gradient skipping (paper 000, section "Layer-wise gradient skipping").

After every backward pass the controller compares, layer by layer, the current weight
gradient with the previous one (cosine similarity). When a layer's gradient keeps pointing
the same way *and* the loss has stagnated, that layer and every layer before it stop
computing gradients: the next backward pass ends early, above them.

The rules, as paper 000 states them, and the choices where it leaves a detail open (each a
field of ``GSkipConfig``, tested in tests/torch/methods/test_gskip_logic.py):

* **Cosine threshold** (paper: s_t = 1 / (1 + e^(-0.2 ASC)), ASC an adaptive saturating
  counter). Our choice: ASC saturates at ±``asc_limit`` (10, so s_t stays in
  [0.119, 0.881]) and starts at ``asc_init`` = 0 (s_t = 0.5).
* **Loss stagnation** (paper: a threshold l_t decides whether each new loss E indicates
  stagnation, "E ≈ LEMA"). The loss E of a step is compared with LEMA, the exponential
  moving average of the previous ``loss_window`` = 4 losses (span 4, alpha = 2/5; the paper
  "considers the past four network losses"): stagnating when |E - LEMA| < l_t, l_t starting
  at 5e-5 (the paper's setting). LEMA needs ``loss_window`` losses before the first check.
* **Skip history** (paper: "if the network has not skipped for multiple steps, GSkip loosens
  its similarity threshold ...; if it has skipped recently, it tightens the threshold").
  After warm-up: every step run with a skipped prefix ASC += 1 (s_t rises: tighter); every
  ``history_steps`` (4) consecutive steps without a skip ASC -= 1 (looser).
* **Monotone prefix.** A skipped layer has no gradient to compare, so it stays skipped until
  the next re-check: the skipped prefix only grows between re-checks. The last layer (the
  classifier) never skips, so some layer always trains.
* **Re-checks** (paper: "continuously rechecks skipped layers"). Every ``recheck_every``
  steps (100) after warm-up every layer is reactivated for one step; its fresh gradient is
  compared with the last one it had, so a layer that is still settled goes straight back.
* **Epoch review** (paper: "a degraded or stagnant loss prompts more conservative skipping
  (tightening l_t and resetting ASC), while an improving loss allows more skipping (relaxing
  l_t)"). At each epoch end after warm-up the epoch's mean loss is compared with the previous
  epoch's: a relative improvement above ``review_tolerance`` (1%, our choice of what counts as
  "stagnant") relaxes l_t (x ``review_factor`` = 2); otherwise l_t is tightened (/ 2) and ASC
  goes back to ``asc_init``.
* **Warm-up** (paper: 750 steps of full training). ``warmup_steps``; ``warmup_epochs``, when
  set, replaces it with that many epochs of the run (so a short run can still skip).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..policy import Policy, StepContext
from .layers import Layer, model_layers


@dataclass
class GSkipConfig:
    warmup_steps: int = 750
    warmup_epochs: float | None = None     # if set, the warm-up is this many epochs of the run
    loss_threshold: float = 5e-5
    loss_window: int = 4
    asc_limit: int = 10
    asc_init: int = 0
    slope: float = 0.2
    history_steps: int = 4
    recheck_every: int = 100
    review_factor: float = 2.0
    review_tolerance: float = 0.01

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, not {self.warmup_steps}")
        if self.warmup_epochs is not None and not self.warmup_epochs >= 0:
            raise ValueError(f"warmup_epochs must be >= 0, not {self.warmup_epochs}")
        if not self.loss_threshold > 0:
            raise ValueError(f"loss_threshold must be > 0, not {self.loss_threshold}")
        if self.loss_window < 1:
            raise ValueError(f"loss_window must be >= 1, not {self.loss_window}")
        if self.asc_limit < 0 or abs(self.asc_init) > self.asc_limit:
            raise ValueError(f"need 0 <= |asc_init| <= asc_limit, got {self.asc_init}, {self.asc_limit}")
        if self.history_steps < 1:
            raise ValueError(f"history_steps must be >= 1, not {self.history_steps}")
        if self.recheck_every < 1:
            raise ValueError(f"recheck_every must be >= 1, not {self.recheck_every}")
        if not self.review_factor > 1:
            raise ValueError(f"review_factor must be > 1, not {self.review_factor}")
        if not self.review_tolerance >= 0:
            raise ValueError(f"review_tolerance must be >= 0, not {self.review_tolerance}")


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two flattened gradients; 0 when either is all zero."""
    a = a.detach().reshape(-1).double()
    # a resumed run's previous gradient comes back from the checkpoint on the CPU
    b = b.detach().reshape(-1).to(a.device, torch.float64)
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float(torch.dot(a, b) / (na * nb))


class GSkipController:
    """Decides, after each step, how many leading layers skip their gradient next step.

    ``observe(loss, grads)`` takes the step's loss and one flattened weight gradient per
    layer in forward order (``None`` for a layer that skipped) and returns the depth d of
    the skipped prefix for the next step: layers 0..d-1 compute no gradient.
    """

    def __init__(self, n_layers: int, config: GSkipConfig | None = None):
        if n_layers < 1:
            raise ValueError(f"GSkip needs at least one layer, got {n_layers}")
        self.cfg = config or GSkipConfig()
        self.n_layers = n_layers
        self.warmup_steps = self.cfg.warmup_steps
        self.asc = self.cfg.asc_init
        self.loss_threshold = self.cfg.loss_threshold
        self.step = 0                       # steps observed so far
        self.depth = 0                      # prefix skipped in the step being run
        self.lema: float | None = None      # EMA of the losses before the current one
        self.n_losses = 0
        self.last_stagnant = False
        self.unskipped_run = 0              # consecutive steps (after warm-up) without a skip
        self._prev: list[torch.Tensor | None] = [None] * n_layers
        self.last_cos: list[float | None] = [None] * n_layers
        self.rechecks = 0
        # epoch tallies for the review
        self._epoch_losses: list[float] = []
        self._prev_epoch_loss: float | None = None
        # whole-run tallies
        self.layer_steps = 0
        self.skipped_layer_steps = 0

    @property
    def threshold(self) -> float:
        """s_t = 1 / (1 + e^(-slope * ASC))."""
        return 1.0 / (1.0 + math.exp(-self.cfg.slope * self.asc))

    def is_stagnant(self, loss: float) -> bool:
        """E ~ LEMA: the new loss within l_t of the EMA of the previous ``loss_window`` losses."""
        if self.lema is None or self.n_losses < self.cfg.loss_window:
            return False
        return abs(loss - self.lema) < self.loss_threshold

    def _update_lema(self, loss: float) -> None:
        alpha = 2.0 / (self.cfg.loss_window + 1)
        self.lema = loss if self.lema is None else alpha * loss + (1 - alpha) * self.lema
        self.n_losses += 1

    def _saturate(self, v: int) -> int:
        return max(-self.cfg.asc_limit, min(self.cfg.asc_limit, v))

    def _skip_history(self, ran_depth: int) -> None:
        """Skipped recently -> tighten (ASC + 1); ``history_steps`` steps without -> loosen."""
        if ran_depth > 0:
            self.asc = self._saturate(self.asc + 1)
            self.unskipped_run = 0
            return
        self.unskipped_run += 1
        if self.unskipped_run >= self.cfg.history_steps:
            self.asc = self._saturate(self.asc - 1)
            self.unskipped_run = 0

    def observe(self, loss: float, grads: Sequence[torch.Tensor | None]) -> int:
        if len(grads) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layer gradients, got {len(grads)}")
        loss = float(loss)
        if not math.isfinite(loss):
            raise ValueError(f"GSkip got a non-finite loss {loss}; lower the learning rate")
        ran_depth = self.depth
        for i in range(ran_depth):
            if grads[i] is not None:
                raise ValueError(f"layer {i} was to skip this step but has a gradient")
        self.layer_steps += self.n_layers
        self.skipped_layer_steps += ran_depth
        self._epoch_losses.append(loss)

        self.last_stagnant = self.is_stagnant(loss)
        self._update_lema(loss)

        for i, g in enumerate(grads):
            if g is None:
                continue
            g = g.detach().reshape(-1).clone()
            self.last_cos[i] = None if self._prev[i] is None else cosine(g, self._prev[i])
            self._prev[i] = g
        self.step += 1

        if self.step < self.warmup_steps:
            self.depth = 0
            return 0
        if self.step > self.warmup_steps:   # the history starts with the first step after warm-up
            self._skip_history(ran_depth)
        if ran_depth > 0 and (self.step - self.warmup_steps) % self.cfg.recheck_every == 0:
            self.rechecks += 1
            self.depth = 0
            return 0
        if self.last_stagnant:
            s = self.threshold
            similar = [i for i in range(ran_depth, self.n_layers - 1)
                       if grads[i] is not None and self.last_cos[i] is not None and self.last_cos[i] >= s]
            if similar:
                self.depth = max(ran_depth, similar[-1] + 1)
                return self.depth
        self.depth = ran_depth
        return self.depth

    def end_epoch(self) -> None:
        """Epoch review on the loss: improving -> relax l_t; degraded or stagnant -> tighten
        l_t and reset the counter."""
        mean_loss = sum(self._epoch_losses) / len(self._epoch_losses) if self._epoch_losses else None
        prev = self._prev_epoch_loss
        if self.step >= self.warmup_steps and mean_loss is not None and prev is not None:
            improvement = (prev - mean_loss) / abs(prev) if prev else prev - mean_loss
            if improvement > self.cfg.review_tolerance:
                self.loss_threshold *= self.cfg.review_factor
            else:
                self.loss_threshold /= self.cfg.review_factor
                self.asc = self.cfg.asc_init
        if mean_loss is not None:
            self._prev_epoch_loss = mean_loss
        self._epoch_losses = []

    @property
    def skip_ratio(self) -> float:
        """Fraction of layer-steps whose weight gradient did not run."""
        return self.skipped_layer_steps / self.layer_steps if self.layer_steps else 0.0


# --- as a policy of the trainer ------------------------------------------------------------


class GSkipPolicy(Policy):
    """GSkip in the trainer: the skipped prefix gets ``requires_grad_(False)`` before the
    forward, so autograd records nothing for it and the backward stops above it."""

    name = "gskip"
    skip_unit = "layer-step"

    def __init__(self, config: GSkipConfig | None = None, **overrides):
        self.cfg = config or GSkipConfig(**overrides)
        self.layers: list[Layer] = []
        self.ctl: GSkipController | None = None
        self._ran_depth = 0
        self.depth_per_step: list[int] = []

    def on_train_start(self, ctx: StepContext) -> None:
        self.layers = model_layers(ctx.model)
        if self.ctl is None:
            self.ctl = GSkipController(len(self.layers), self.cfg)
            if self.cfg.warmup_epochs is not None:
                self.ctl.warmup_steps = int(round(self.cfg.warmup_epochs * ctx.batches_per_epoch))
        elif self.ctl.n_layers != len(self.layers):
            raise ValueError(f"GSkip state is for {self.ctl.n_layers} layers, the model has {len(self.layers)}")

    def before_forward(self, ctx: StepContext) -> None:
        self._ran_depth = self.ctl.depth
        for i, layer in enumerate(self.layers):
            layer.set_trainable(i >= self._ran_depth)

    def after_backward(self, ctx: StepContext) -> None:
        self.depth_per_step.append(self._ran_depth)
        self.ctl.observe(float(ctx.loss.detach()), [l.flat_grad() for l in self.layers])

    def skip_params(self, ctx: StepContext) -> set[str] | None:
        return set().union(*(l.param_names for l in self.layers[: self._ran_depth])) or None

    def on_epoch_end(self, ctx: StepContext, record: dict) -> None:
        self.ctl.end_epoch()
        for layer in self.layers:          # leave the model trainable between epochs
            layer.set_trainable(True)
        record["gskip_skip_ratio"] = self.ctl.skip_ratio
        record["gskip_loss_threshold"] = self.ctl.loss_threshold
        record["gskip_rechecks"] = self.ctl.rechecks

    def skip_ratios(self) -> dict[str, float]:
        return {self.skip_unit: self.ctl.skip_ratio if self.ctl else 0.0}

    def state_dict(self) -> dict:
        if self.ctl is None:
            return {}
        return {"ctl": {k: v for k, v in vars(self.ctl).items() if k != "cfg"},
                "depth_per_step": list(self.depth_per_step)}

    def load_state_dict(self, state: dict) -> None:
        if "ctl" in state:
            self.ctl = GSkipController(len(state["ctl"]["_prev"]), self.cfg)
            vars(self.ctl).update(state["ctl"])
            self.depth_per_step = list(state.get("depth_per_step", []))


class RandomPrefixSkip(GSkipPolicy):
    """Random control of layer-prefix skipping: each step a prefix of random depth skips its
    gradient, with the depth drawn from {floor(r*L), ceil(r*L)} so that the expected
    fraction of skipped layer-steps is exactly ``ratio`` (the last layer never skips)."""

    name = "random-prefix-skip"

    def __init__(self, ratio: float, seed: int = 0):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"random prefix skip ratio must be in [0, 1), not {ratio}")
        super().__init__(GSkipConfig())
        self.ratio = float(ratio)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.skipped = self.total = 0

    def on_train_start(self, ctx: StepContext) -> None:
        self.layers = model_layers(ctx.model)
        target = self.ratio * len(self.layers)
        if target > len(self.layers) - 1:
            raise ValueError(f"a skip ratio of {self.ratio:.3f} needs more than all but the last of "
                             f"{len(self.layers)} layers")

    def before_forward(self, ctx: StepContext) -> None:
        target = self.ratio * len(self.layers)
        lo = math.floor(target)
        d = lo + int(torch.rand((), generator=self.gen).item() < target - lo)
        self._ran_depth = d
        for i, layer in enumerate(self.layers):
            layer.set_trainable(i >= d)

    def after_backward(self, ctx: StepContext) -> None:
        self.depth_per_step.append(self._ran_depth)
        self.skipped += self._ran_depth
        self.total += len(self.layers)

    def on_epoch_end(self, ctx: StepContext, record: dict) -> None:
        for layer in self.layers:
            layer.set_trainable(True)

    def skip_ratios(self) -> dict[str, float]:
        return {self.skip_unit: self.skipped / self.total if self.total else 0.0}

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "skipped": self.skipped, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        if "gen" in state:
            self.gen.set_state(state["gen"])
            self.skipped, self.total = state["skipped"], state["total"]
