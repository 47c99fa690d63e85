"""The skip-policy hook interface of the trainer.

Every work-skipping method -- E2-Train's SMD, SLU and PSG, stochastic depth, the methods in
``e2train.torch.methods`` and the random controls of the evaluation harness -- is a
:class:`Policy`. The trainer (``e2train.torch.trainer.train``) calls the hooks at fixed
points of one loop; a hook that returns ``None``/``False`` leaves the step alone. What a hook
decides to skip is really skipped by the trainer (never computed-then-zeroed), and the work
tally that prices energy only counts what ran.

One training step, with the hooks in order::

    on_epoch_start(ctx)
    for each batch:
        if skip_batch(ctx):               -> no forward, no backward, no optimizer step
            continue
        keep = sample_mask(ctx)           -> only x[keep], y[keep] are forwarded
        block_masks(ctx)                  -> per-block, per-sample execution masks (or None
                                             to let the model's own gates decide)
        before_forward(ctx)               -> e.g. requires_grad_(False) on early layers to stop
                                             the backward there, or freeze whole layers
        out = model(x)                    -> ctx.logits, ctx.loss (per-sample losses in
        ctx.loss += extra_loss(ctx)          ctx.sample_losses)
        loss.backward()
        after_backward(ctx)               -> observe losses / gradients
        skip = skip_params(ctx)           -> names of parameters NOT to update this step
        optimizer(s).step()               (the skipped parameters' grads are set to None first)
        after_step(ctx)
    on_epoch_end(ctx, record)             -> after the epoch's evaluation; may add keys to the
                                             epoch record (before it is stored/checkpointed)
    optimizer_for_epoch(ctx)              -> may swap the optimizer for the next phase

Several policies compose with :class:`Compose` (skip_batch: any; sample masks: and;
skip_params: union; extra losses: sum).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn


@dataclass
class StepContext:
    """What a hook can see and change. One object lives for the whole run; the trainer
    updates its fields before each hook."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    epoch: int = 0                       # 0-based
    step: int = 0                        # global index of the batch (run or skipped)
    batch_in_epoch: int = 0
    batches_per_epoch: int = 0
    epochs: int = 0
    x: torch.Tensor | None = None        # the batch (after sample_mask, once applied)
    y: torch.Tensor | None = None
    indices: torch.Tensor | None = None  # data-set indices of the batch's samples
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None     # the mean loss that backward() will see
    sample_losses: torch.Tensor | None = None   # per-sample cross entropy, detached
    generator: torch.Generator | None = None    # seeded, for reproducible random decisions
    # free room for policies; the trainer puts "config" (TrainConfig) and "work_meter"
    # (WorkMeter; ``forward_only()`` tallies a forward a method runs outside the step) here
    state: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def named_grads(self) -> Iterable[tuple[str, torch.Tensor]]:
        """(name, grad) of the parameters that received a gradient this step."""
        for n, p in self.model.named_parameters():
            if p.grad is not None:
                yield n, p.grad


class Policy:
    """Base class: every hook does nothing. Override the ones a method needs."""

    name = "none"

    def on_train_start(self, ctx: StepContext) -> None:
        """Once, after the model and optimizer exist (and after a resume)."""

    def on_epoch_start(self, ctx: StepContext) -> None:
        """Before the first batch of each epoch."""

    def skip_batch(self, ctx: StepContext) -> bool:
        """True: this batch does no forward, no backward and no optimizer step."""
        return False

    def sample_mask(self, ctx: StepContext) -> torch.Tensor | None:
        """Bool mask over the batch of the samples to train on (None = all). Samples left
        out are not forwarded at all. An all-False mask skips the batch."""
        return None

    def block_masks(self, ctx: StepContext) -> list[torch.Tensor | None] | None:
        """For gated models: a per-block bool mask over the (masked) batch of the samples
        each block computes; None lets the model's gates decide. Stochastic depth and the
        random controls use it."""
        return None

    def before_forward(self, ctx: StepContext) -> None:
        """Last chance to change the model before the forward (requires_grad, train/eval)."""

    def extra_loss(self, ctx: StepContext) -> torch.Tensor | None:
        """A term added to ``ctx.loss`` before backward (e.g. SLU's FLOPs penalty)."""
        return None

    def after_backward(self, ctx: StepContext) -> None:
        """Gradients are in ``p.grad``; losses in ``ctx.loss``/``ctx.sample_losses``."""

    def skip_params(self, ctx: StepContext) -> set[str] | None:
        """Names (``model.named_parameters()``) of parameters not to update this step."""
        return None

    def after_step(self, ctx: StepContext) -> None:
        """After the optimizer step."""

    def on_epoch_end(self, ctx: StepContext, record: dict) -> None:
        """After the epoch's test evaluation (``record`` already holds ``test_acc``, energy and
        the epoch's counts) and before the record is stored, passed to the trainer's callback
        and checkpointed; keys added here (JSON-safe) appear in all three. Model changes made
        here take effect from the next epoch and are not seen by this epoch's evaluation."""

    def optimizer_for_epoch(self, ctx: StepContext) -> torch.optim.Optimizer | None:
        """A new optimizer for the next epoch (phase change), or None to keep the current."""
        return None

    # checkpointing: a policy with state (RNG, counters, histories) saves and restores it
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Compose(Policy):
    """Several policies at once, in order."""

    def __init__(self, policies: Iterable[Policy]):
        self.policies = [p for p in policies if p is not None]
        self.name = "+".join(p.name for p in self.policies) or "none"

    def on_train_start(self, ctx):
        for p in self.policies:
            p.on_train_start(ctx)

    def on_epoch_start(self, ctx):
        for p in self.policies:
            p.on_epoch_start(ctx)

    def skip_batch(self, ctx):
        # every policy is asked (an RNG-driven one must draw each step to stay reproducible)
        return any([p.skip_batch(ctx) for p in self.policies])

    def sample_mask(self, ctx):
        mask = None
        for p in self.policies:
            m = p.sample_mask(ctx)
            if m is not None:
                mask = m if mask is None else (mask & m)
        return mask

    def block_masks(self, ctx):
        for p in self.policies:
            m = p.block_masks(ctx)
            if m is not None:
                return m
        return None

    def before_forward(self, ctx):
        for p in self.policies:
            p.before_forward(ctx)

    def extra_loss(self, ctx):
        terms = [t for t in (p.extra_loss(ctx) for p in self.policies) if t is not None]
        return sum(terms) if terms else None

    def after_backward(self, ctx):
        for p in self.policies:
            p.after_backward(ctx)

    def skip_params(self, ctx):
        out: set[str] = set()
        for p in self.policies:
            out |= set(p.skip_params(ctx) or ())
        return out or None

    def after_step(self, ctx):
        for p in self.policies:
            p.after_step(ctx)

    def on_epoch_end(self, ctx, record):
        for p in self.policies:
            p.on_epoch_end(ctx, record)

    def optimizer_for_epoch(self, ctx):
        opt = None
        for p in self.policies:
            o = p.optimizer_for_epoch(ctx)
            opt = o if o is not None else opt
        return opt

    def state_dict(self):
        return {str(i): p.state_dict() for i, p in enumerate(self.policies)}

    def load_state_dict(self, state):
        for i, p in enumerate(self.policies):
            p.load_state_dict(state.get(str(i), {}))


class RandomBatchSkip(Policy):
    """Skip each batch with probability p (seeded): SMD, and the random control of any
    method that skips whole batches at a measured ratio."""

    name = "random-batch-skip"

    def __init__(self, p: float, seed: int = 0):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"batch skip probability must be in [0, 1), got {p!r}")
        self.p, self.seed = float(p), int(seed)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.skipped: list[int] = []     # global step indices that were dropped

    def skip_batch(self, ctx):
        drop = bool(torch.rand((), generator=self.gen).item() < self.p)
        if drop:
            self.skipped.append(ctx.step)
        return drop

    def state_dict(self):
        return {"gen": self.gen.get_state(), "skipped": list(self.skipped)}

    def load_state_dict(self, state):
        if "gen" in state:
            self.gen.set_state(state["gen"])
            self.skipped = list(state.get("skipped", []))


class RandomBatchOmission(Policy):
    """Omit exactly round(ratio * N) of the run's N batches, chosen uniformly at random
    (seeded) at the start: random mini-batch omission at a stated workload ratio (paper 000's
    control for GSkip). Unlike ``RandomBatchSkip``'s independent draws, the realised ratio is
    the target to within half a batch."""

    name = "random-batch-omission"

    def __init__(self, ratio: float, seed: int = 0):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"batch omission ratio must be in [0, 1), got {ratio!r}")
        self.ratio, self.seed = float(ratio), int(seed)
        self.omit: set[int] | None = None

    def on_train_start(self, ctx):
        if self.omit is not None:
            return                         # resumed: the draw was restored
        cfg = ctx.state.get("config")
        n = ctx.epochs * ctx.batches_per_epoch
        if cfg is not None and getattr(cfg, "iterations", None):
            n = min(n, cfg.iterations)
        k = round(self.ratio * n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        self.omit = set(perm[:k].tolist())

    def skip_batch(self, ctx):
        return ctx.step in self.omit

    def state_dict(self):
        return {"omit": sorted(self.omit or ())}

    def load_state_dict(self, state):
        if "omit" in state:
            self.omit = set(state["omit"])


class RandomSampleSkip(Policy):
    """Skip each sample with probability p (seeded): the random control of per-sample methods."""

    name = "random-sample-skip"

    def __init__(self, p: float, seed: int = 0):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"sample skip probability must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.gen = torch.Generator().manual_seed(int(seed))

    def sample_mask(self, ctx):
        return torch.rand(ctx.x.shape[0], generator=self.gen) >= self.p

    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state):
        if "gen" in state:
            self.gen.set_state(state["gen"])
