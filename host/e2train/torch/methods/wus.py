"""WUS and WUS+LR: weight update skipping (paper 002, section 3).

When validation accuracy has settled (its standard deviation stays under a threshold for two
successive epochs, section 3.1) training switches to *bias-only* updates: the weights compute
no gradient and are not updated, only the biases of the last ``n_bias_layers`` layers train
(section 3.3, 1L ... nL). Training goes back to full updates for one epoch when the best
validation accuracy has not improved for ``patience`` = 7 epochs (WUS, section 3.2.1 and its
Algorithm 1), or when the learning rate changes (WUS+LR, section 3.2.2).

Rules as the paper states them:

* **Patience** (Algorithm 1, ``WeightUpdateSkipping``): the counter counts epochs whose
  accuracy is not above the best so far (delta 0); it is reset by a new best and when it
  fires (one forced full epoch), *not* when bias-only training begins.
* **No std exit.** In the paper the bias-only phase ends only through the forced full epoch
  (or, for WUS+LR, the LR change). Leaving it when the accuracy's std rises again is our
  extension, off by default (``std_exit=True`` turns it on; then two settled epochs are needed
  to switch back).
* **Eq. 1** (section 4.4): N = E_wus * b + E_normal * (b + w), the parameters updated over
  the run; the policy reports 1 - N / (E * (b + w)), the reduction against training in full
  (``wus_eq1_reduction`` in each epoch record). Our reading of b in the E_wus term: the biases
  that actually train in the bias-only phase (the last x layers' for xL), not all biases.

Choices where the paper leaves a detail open:

* The standard deviation is the population std (ddof 0) of the last ``window`` = 3 validation
  accuracies, in percent; the condition "holds" at an epoch when std < ``std_threshold``
  (0.71) and at least ``window`` accuracies exist.
* After a forced full epoch the phase returns to bias-only.
* WUS+LR: the learning rate "changes" when it differs from the rate at which bias-only
  training began (or the last forced full epoch) by a relative amount >= ``lr_change_rel``
  (default 1e-3: any step of a step schedule). Under a cosine schedule, which changes the
  rate a little every epoch, set it to the change that should count (e.g. 0.5: a full epoch
  each time the rate has halved). The paper defines WUS+LR on a step schedule
  (``TrainConfig.schedule="step"``).
* The accuracy is the epoch record's ``val_acc`` when the run holds out a validation split
  (``TrainConfig.val_split``), else its ``test_acc``.
* "Biases" are parameters named ``bias`` (conv, linear, and BN's shift); BN's scale counts as a
  weight. A "layer" is a module that owns a bias, in registration order; the last
  ``n_bias_layers`` of them keep training (1L ... nL; more than the model has is an error).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import nn

from ..policy import Policy, StepContext

FULL = "full"
BIAS = "bias"


@dataclass
class WUSConfig:
    std_threshold: float = 0.71
    window: int = 3
    settle_epochs: int = 2
    patience: int = 7
    trigger: str = "patience"        # "patience" (WUS) or "lr" (WUS+LR)
    lr_change_rel: float = 1e-3
    n_bias_layers: int = 1
    std_exit: bool = False           # leave bias-only when the std rises again (not in the paper)

    def __post_init__(self) -> None:
        if self.trigger not in ("patience", "lr"):
            raise ValueError(f"WUS trigger must be 'patience' (WUS) or 'lr' (WUS+LR), not {self.trigger!r}")
        if self.window < 2:
            raise ValueError(f"the std window needs >= 2 epochs, not {self.window}")
        if self.std_threshold <= 0 or self.patience < 1 or self.settle_epochs < 1:
            raise ValueError("std_threshold, patience and settle_epochs must be positive")
        if self.n_bias_layers < 1:
            raise ValueError(f"n_bias_layers must be >= 1, not {self.n_bias_layers}")


class WUSController:
    """Epoch-level phase machine: call ``end_epoch(val_acc_percent, lr)``; read ``phase``."""

    def __init__(self, config: WUSConfig | None = None):
        self.cfg = config or WUSConfig()
        self.accs: list[float] = []
        self.phase = FULL             # phase of the next epoch
        self.mode = FULL              # FULL, or BIAS (possibly interrupted by one full epoch)
        self._settled_run = 0
        self._best = -float("inf")
        self._since_best = 0
        self._ref_lr: float | None = None   # lr when bias-only began or last forced a full epoch
        self.phases: list[str] = []   # phase each finished epoch ran in

    def settled(self) -> bool:
        w = self.cfg.window
        if len(self.accs) < w:
            return False
        return statistics.pstdev(self.accs[-w:]) < self.cfg.std_threshold

    def end_epoch(self, val_acc: float, lr: float | None = None) -> str:
        """Record the finished epoch; return the phase of the next one."""
        if not 0.0 <= val_acc <= 100.0:
            raise ValueError(f"validation accuracy must be a percentage in [0, 100], not {val_acc}")
        self.phases.append(self.phase)
        self.accs.append(float(val_acc))
        if val_acc > self._best:
            self._best, self._since_best = val_acc, 0
        else:
            self._since_best += 1
        lr_changed = (lr is not None and self._ref_lr is not None and self._ref_lr != 0
                      and abs(lr - self._ref_lr) / abs(self._ref_lr) >= self.cfg.lr_change_rel)

        settled = self.settled()
        self._settled_run = self._settled_run + 1 if settled else 0
        if self.mode == FULL:
            if self._settled_run >= self.cfg.settle_epochs:
                self.mode = BIAS            # the patience counter runs on (Algorithm 1)
                self._ref_lr = lr
        elif not settled and self.cfg.std_exit:
            self.mode = FULL
        if self.mode == FULL:
            self.phase = FULL
            return self.phase
        forced = (self._since_best >= self.cfg.patience if self.cfg.trigger == "patience"
                  else lr_changed)
        if forced:
            self._since_best = 0
            self._ref_lr = lr
            self.phase = FULL
        else:
            self.phase = BIAS
        return self.phase


# --- as a policy of the trainer ------------------------------------------------------------

def bias_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(module name, bias parameter name) of every module owning a ``bias``, in registration order."""
    out = []
    for mname, mod in model.named_modules():
        b = getattr(mod, "bias", None)
        if isinstance(b, nn.Parameter):
            out.append((mname, f"{mname}.bias" if mname else "bias"))
    return out


class WUSPolicy(Policy):
    """WUS in the trainer. In a bias-only epoch every parameter but the kept biases gets
    ``requires_grad_(False)`` before the forward, so no weight gradient is computed (autograd
    skips the weight-gradient half of each convolution's backward) and none is updated."""

    skip_unit = "weight-step"

    def __init__(self, config: WUSConfig | None = None, acc_key: str | None = None, **overrides):
        self.cfg = config or WUSConfig(**overrides)
        self.name = "wus" if self.cfg.trigger == "patience" else "wus-lr"
        self.acc_key = acc_key
        self.ctl = WUSController(self.cfg)
        self.trainable: set[str] = set()
        self.bias_steps = self.steps = 0
        self.n_weights = self.n_biases = self.n_kept = 0
        self.updated_params = self.full_params = 0     # Eq. 1's N, and N of training in full

    def on_train_start(self, ctx: StepContext) -> None:
        layers = bias_layers(ctx.model)
        if not layers:
            raise ValueError("WUS needs a model with bias parameters; this one has none")
        if self.cfg.n_bias_layers > len(layers):
            raise ValueError(f"WUS n_bias_layers={self.cfg.n_bias_layers} but the model has {len(layers)} layers "
                             f"with a bias: choose 1..{len(layers)} (1L..{len(layers)}L)")
        self.trainable = {pname for _, pname in layers[-self.cfg.n_bias_layers:]}
        params = dict(ctx.model.named_parameters())
        biases = {pname for _, pname in layers}
        self.n_biases = sum(params[n].numel() for n in biases)
        self.n_weights = sum(p.numel() for n, p in params.items() if n not in biases)
        self.n_kept = sum(params[n].numel() for n in self.trainable)

    @property
    def eq1_reduction(self) -> float:
        """Paper 002, Eq. 1: 1 - N / N_full over the epochs run so far."""
        return 1.0 - self.updated_params / self.full_params if self.full_params else 0.0

    def _set(self, model: nn.Module, bias_only: bool) -> None:
        for n, p in model.named_parameters():
            p.requires_grad_(not bias_only or n in self.trainable)

    def before_forward(self, ctx: StepContext) -> None:
        self._set(ctx.model, self.ctl.phase == BIAS)

    def after_backward(self, ctx: StepContext) -> None:
        self.steps += 1
        self.bias_steps += self.ctl.phase == BIAS

    def skip_params(self, ctx: StepContext) -> set[str] | None:
        if self.ctl.phase != BIAS:
            return None
        return {n for n, _ in ctx.model.named_parameters() if n not in self.trainable}

    def _acc_percent(self, record: dict) -> float:
        key = self.acc_key or ("val_acc" if record.get("val_acc") is not None else "test_acc")
        if record.get(key) is None:
            raise KeyError(f"WUS needs the epoch's validation accuracy (percent) under {key!r}; "
                           f"the epoch record has {sorted(record)}")
        return float(record[key])

    def _count_eq1(self, ran: str, record: dict) -> None:
        self.full_params += self.n_weights + self.n_biases
        self.updated_params += self.n_kept if ran == BIAS else self.n_weights + self.n_biases
        record["wus_eq1_reduction"] = self.eq1_reduction

    def on_epoch_end(self, ctx: StepContext, record: dict) -> None:
        lr = ctx.optimizer.param_groups[0]["lr"] if ctx.optimizer is not None else None
        ran = self.ctl.phase
        nxt = self.ctl.end_epoch(self._acc_percent(record), lr)
        self._set(ctx.model, False)
        record["wus_phase"] = ran
        record["wus_next_phase"] = nxt
        self._count_eq1(ran, record)

    def skip_ratios(self) -> dict[str, float]:
        return {self.skip_unit: self.bias_steps / self.steps if self.steps else 0.0}

    def state_dict(self) -> dict:
        return {"ctl": {k: v for k, v in vars(self.ctl).items() if k != "cfg"},
                "bias_steps": self.bias_steps, "steps": self.steps,
                "eq1": [self.updated_params, self.full_params]}

    def load_state_dict(self, state: dict) -> None:
        if "ctl" in state:
            vars(self.ctl).update(state["ctl"])
            self.bias_steps, self.steps = state["bias_steps"], state["steps"]
            self.updated_params, self.full_params = state.get("eq1", [0, 0])


class RandomBiasEpochs(WUSPolicy):
    """Random control of WUS: round(ratio * epochs) epochs, drawn uniformly at random from
    the run's epochs (never the first), train biases only; the rest train in full."""

    def __init__(self, ratio: float, seed: int = 0, n_bias_layers: int = 1):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"random bias-only ratio must be in [0, 1), not {ratio}")
        super().__init__(WUSConfig(n_bias_layers=n_bias_layers))
        self.name = "random-bias-epochs"
        self.ratio = ratio
        self.seed = int(seed)
        self.bias_epochs: set[int] = set()

    def on_train_start(self, ctx: StepContext) -> None:
        super().on_train_start(ctx)
        if ctx.epochs < 2:
            return
        k = min(round(self.ratio * ctx.epochs), ctx.epochs - 1)
        order = torch.randperm(ctx.epochs - 1, generator=torch.Generator().manual_seed(self.seed)) + 1
        self.bias_epochs = set(order[:k].tolist())

    def on_epoch_start(self, ctx: StepContext) -> None:
        self.ctl.phase = BIAS if ctx.epoch in self.bias_epochs else FULL

    def on_epoch_end(self, ctx: StepContext, record: dict) -> None:
        self._set(ctx.model, False)
        record["wus_phase"] = self.ctl.phase
        self._count_eq1(self.ctl.phase, record)
