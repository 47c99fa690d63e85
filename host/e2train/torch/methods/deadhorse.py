"""DeadHorse: skip the samples the network is already confident about.

Confidence is the largest softmax probability of a sample. Two families of policies:

* **Reactive** (decide on this step's own forward): the mini-batch is first run forward
  without autograd to read the confidences, then only the kept samples run forward and
  backward. The decision forward is real work and is counted; these policies save backward
  work only, and cost an extra forward of the skipped samples.

  - ``dh``: skip samples that are correct and confident (conf >= T).
  - ``ddh``: skip samples that are confident, correct or not.
  - ``sddh``: a confident sample is skipped with probability equal to its confidence
    (choice: the more confident, the likelier skipped; no extra hyper-parameter).

* **Predictive** (decide before the step, from what was seen in the previous pass): skipped
  samples run neither forward nor backward.

  - ``hsdh``: a sample that was correct and confident when last trained is skipped with
    probability equal to that confidence. Stochastic on purpose: a skipped sample's history
    is not refreshed, so a deterministic rule would skip it for ever.
  - ``hsddh``: the same with the DDH criterion (confident, correct or not).
  - ``cdh``: whole classes. A class whose mean true-class probability over its samples in the
    previous pass is >= T is skipped for the next pass; a class skipped for ``cdh_max_skip``
    passes in a row (default 1) is trained again to refresh its history.

  Samples never seen (the first pass) are always trained.

* **Random controls** (from the same paper): ``uniform`` skips each sample independently
  at a fixed rate; ``nonuniform`` matches a policy's measured skip probability per segment
  of training (e.g. per epoch). Both skip forward and backward, as predictive policies do.

The model's buffers (BN running statistics, the quantisers' running maxima) are snapshot
before a reactive policy's decision forward and restored after it, so the decision does not
count twice in them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..policy import Policy, StepContext
from .support import check_batch, data_sizes, run_data, tallied_forward

REACTIVE = ("dh", "ddh", "sddh")
PREDICTIVE = ("hsdh", "hsddh", "cdh")
CONTROLS = ("uniform", "nonuniform")
POLICIES = REACTIVE + PREDICTIVE


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"confidence threshold T must be in (0, 1], not {threshold}")


def confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(max softmax probability, predicted class, full probabilities) per sample."""
    p = torch.softmax(logits.detach().float(), dim=1)
    conf, pred = p.max(dim=1)
    return conf, pred, p


def reactive_skip(policy: str, logits: torch.Tensor, labels: torch.Tensor, threshold: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean mask of the samples a reactive policy skips (True = no backward)."""
    _check_threshold(threshold)
    conf, pred, _ = confidence(logits)
    confident = conf >= threshold
    if policy == "dh":
        return confident & (pred == labels)
    if policy == "ddh":
        return confident
    if policy == "sddh":
        # drawn on the (CPU) generator, then moved: the same seed skips the same samples on any device
        u = torch.rand(conf.shape, generator=generator).to(conf.device)
        return confident & (u < conf)
    raise ValueError(f"unknown reactive DeadHorse policy {policy!r}; choose one of {REACTIVE}")


class SampleHistory:
    """Per-sample record of the last time each sample was trained (predictive policies)."""

    def __init__(self, n_samples: int, n_classes: int):
        self.seen = torch.zeros(n_samples, dtype=torch.bool)
        self.conf = torch.zeros(n_samples)
        self.correct = torch.zeros(n_samples, dtype=torch.bool)
        self.true_prob = torch.zeros(n_samples)
        self.labels = torch.full((n_samples,), -1, dtype=torch.long)
        self.n_classes = n_classes

    def record(self, indices: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        conf, pred, p = confidence(logits)
        self.seen[indices] = True
        self.conf[indices] = conf
        self.correct[indices] = pred == labels
        self.true_prob[indices] = p.gather(1, labels.view(-1, 1)).view(-1)
        self.labels[indices] = labels


class PredictivePolicy:
    """HSDH / HSDDH / CDH: which samples of a batch to drop before running anything."""

    def __init__(self, policy: str, history: SampleHistory, threshold: float,
                 generator: torch.Generator | None = None, cdh_max_skip: int = 1):
        if policy not in PREDICTIVE:
            raise ValueError(f"unknown predictive DeadHorse policy {policy!r}; choose one of {PREDICTIVE}")
        _check_threshold(threshold)
        if cdh_max_skip < 1:
            raise ValueError(f"cdh_max_skip must be >= 1, not {cdh_max_skip}")
        self.policy = policy
        self.history = history
        self.threshold = threshold
        self.generator = generator
        self.cdh_max_skip = cdh_max_skip
        self.skipped_classes: set[int] = set()
        self._class_skip_run = [0] * history.n_classes

    def start_pass(self) -> None:
        """CDH: choose the classes to skip this pass from the previous pass's history."""
        if self.policy != "cdh":
            return
        h = self.history
        chosen: set[int] = set()
        for c in range(h.n_classes):
            members = h.seen & (h.labels == c)
            was_skipped = c in self.skipped_classes
            if was_skipped and self._class_skip_run[c] >= self.cdh_max_skip:
                self._class_skip_run[c] = 0          # train it again: refresh its history
                continue
            if members.any() and float(h.true_prob[members].mean()) >= self.threshold:
                chosen.add(c)
                self._class_skip_run[c] += 1
            else:
                self._class_skip_run[c] = 0
        self.skipped_classes = chosen

    def skip(self, indices: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Boolean mask over the batch (True = skip forward and backward)."""
        h = self.history
        if self.policy == "cdh":
            if not self.skipped_classes:
                return torch.zeros(len(indices), dtype=torch.bool, device=labels.device)
            return torch.isin(labels, torch.tensor(sorted(self.skipped_classes), device=labels.device))
        seen = h.seen[indices]
        conf = h.conf[indices]
        eligible = seen & (conf >= self.threshold)
        if self.policy == "hsdh":
            eligible &= h.correct[indices]
        u = torch.rand(conf.shape, generator=self.generator).to(conf.device)
        return eligible & (u < conf)


class UniformRandom:
    """Control: skip each sample independently with probability ``rate``."""

    def __init__(self, rate: float, generator: torch.Generator | None = None):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"random skip rate must be in [0, 1), not {rate}")
        self.rate = rate
        self.generator = generator

    def rate_at(self, segment: int) -> float:
        return self.rate

    def skip(self, n: int, segment: int = 0) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) < self.rate_at(segment)


class NonUniformRandom(UniformRandom):
    """Control: skip at the policy's measured rate of each segment of training.

    ``rates[k]`` is the fraction of samples the policy skipped in segment k (an epoch by
    default); segments past the end of the list reuse the last rate.
    """

    def __init__(self, rates: Sequence[float], generator: torch.Generator | None = None):
        if not rates:
            raise ValueError("a non-uniform random control needs at least one segment rate")
        for r in rates:
            if not 0.0 <= r < 1.0:
                raise ValueError(f"segment skip rate must be in [0, 1), not {r}")
        super().__init__(float(rates[0]), generator)
        self.rates = [float(r) for r in rates]

    def rate_at(self, segment: int) -> float:
        return self.rates[min(segment, len(self.rates) - 1)]


@dataclass
class SkipTally:
    """Samples presented, and samples whose forward / backward did not run."""

    samples: int = 0
    fwd_skipped: int = 0
    bwd_skipped: int = 0
    decision_forwards: int = 0    # samples run forward only to decide (reactive policies)

    def add(self, n: int, fwd_skipped: int, bwd_skipped: int, decision_forwards: int = 0) -> None:
        self.samples += n
        self.fwd_skipped += fwd_skipped
        self.bwd_skipped += bwd_skipped
        self.decision_forwards += decision_forwards

    @property
    def skip_ratio(self) -> float:
        """Fraction of samples whose backward did not run."""
        return self.bwd_skipped / self.samples if self.samples else 0.0


# --- as policies of the trainer ------------------------------------------------------------

def _buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every buffer with a copy: BN running statistics, and the running activation maxima
    of the quantised convolutions, which a training-mode forward also moves."""
    return [(b, b.detach().clone()) for b in model.buffers()]


class DeadHorsePolicy(Policy):
    """One of DH, DDH, SDDH (reactive) or HSDH, HSDDH, CDH (predictive) in the trainer.

    Reactive: ``sample_mask`` runs the decision forward (no autograd, every buffer -- BN
    statistics, quantisers' running maxima -- restored after it) and keeps the unconfident samples; the trainer then forwards and backwards
    those only. The decision forward is counted in ``tally.decision_forwards`` and in the
    run's work meter (so the modelled energy includes it).
    Predictive: ``sample_mask`` reads the history only; the history is refreshed from the
    logits of the samples that trained.
    """

    skip_unit = "sample"

    def __init__(self, policy: str = "dh", threshold: float = 0.9, seed: int = 0,
                 n_samples: int | None = None, n_classes: int | None = None, cdh_max_skip: int = 1):
        if policy not in POLICIES:
            raise ValueError(f"unknown DeadHorse policy {policy!r}; choose one of {POLICIES}")
        _check_threshold(threshold)
        self.policy = policy
        self.name = policy
        self.threshold = threshold
        self.gen = torch.Generator().manual_seed(int(seed))
        self.tally = SkipTally()
        self.epoch_rates: list[float] = []      # skip ratio per epoch (for the non-uniform control)
        self._epoch = SkipTally()
        self.n_samples, self.n_classes, self.cdh_max_skip = n_samples, n_classes, cdh_max_skip
        self.predictive: PredictivePolicy | None = None
        self._data = None

    def on_train_start(self, ctx: StepContext) -> None:
        if self.policy in PREDICTIVE:
            # sizes given explicitly are trusted; sizes from the run's data are checked batch by batch
            self._data = None if self.n_samples and self.n_classes else run_data(ctx)
        if self.policy in PREDICTIVE and self.predictive is None:
            n, k = data_sizes(ctx, self.n_samples, self.n_classes)
            self.predictive = PredictivePolicy(self.policy, SampleHistory(n, k),
                                               self.threshold, self.gen, self.cdh_max_skip)

    def on_epoch_start(self, ctx: StepContext) -> None:
        self._epoch = SkipTally()
        if self.predictive is not None:
            self.predictive.start_pass()

    def _decision_forward(self, ctx: StepContext) -> torch.Tensor:
        saved = _buffers(ctx.model)
        with tallied_forward(ctx):
            logits = ctx.model(ctx.x)
        for live, copy in saved:
            live.copy_(copy)
        return logits

    def sample_mask(self, ctx: StepContext) -> torch.Tensor | None:
        n = ctx.x.shape[0]
        if self.policy in REACTIVE:
            logits = self._decision_forward(ctx)
            skip = reactive_skip(self.policy, logits, ctx.y, self.threshold, self.gen)
            k = int(skip.sum())
            self.tally.add(n, 0, k, decision_forwards=n)
            self._epoch.add(n, 0, k, decision_forwards=n)
        else:
            if ctx.indices is None:
                raise ValueError(f"{self.policy} needs the data-set indices of each batch (ctx.indices)")
            if self._data is not None:
                check_batch(ctx, self._data)
            skip = self.predictive.skip(ctx.indices.cpu(), ctx.y.cpu())
            k = int(skip.sum())
            self.tally.add(n, k, k)
            self._epoch.add(n, k, k)
        return ~skip.to(ctx.x.device)

    def after_backward(self, ctx: StepContext) -> None:
        if self.predictive is not None:       # ctx holds the kept samples only
            self.predictive.history.record(ctx.indices.cpu(), ctx.logits.detach().cpu(), ctx.y.cpu())

    def on_epoch_end(self, ctx: StepContext, record: dict) -> None:
        self.epoch_rates.append(self._epoch.skip_ratio)
        record["deadhorse_skip_ratio"] = self._epoch.skip_ratio
        record["deadhorse_fwd_skip_ratio"] = (self._epoch.fwd_skipped / self._epoch.samples
                                              if self._epoch.samples else 0.0)

    def skip_ratios(self) -> dict[str, float]:
        return {self.skip_unit: self.tally.skip_ratio}

    def control_options(self) -> dict:
        """How its random control is built (paper 000): at the method's per-epoch rates
        (segment-wise), and, for a reactive policy, with the decision forward it pays."""
        return {"epoch_rates": tuple(self.epoch_rates), "decision_forward": self.policy in REACTIVE}

    def state_dict(self) -> dict:
        st = {"gen": self.gen.get_state(), "tally": vars(self.tally).copy(),
              "epoch_rates": list(self.epoch_rates)}
        if self.predictive is not None:
            st["history"] = vars(self.predictive.history).copy()
            st["skipped_classes"] = sorted(self.predictive.skipped_classes)
            st["class_skip_run"] = list(self.predictive._class_skip_run)
        return st

    def load_state_dict(self, state: dict) -> None:
        if "gen" not in state:
            return
        self.gen.set_state(state["gen"])
        vars(self.tally).update(state["tally"])
        self.epoch_rates = list(state["epoch_rates"])
        if "history" in state:
            h = SampleHistory(1, 1)
            vars(h).update(state["history"])
            self.predictive = PredictivePolicy(self.policy, h, self.threshold, self.gen, self.cdh_max_skip)
            self.predictive.skipped_classes = set(state["skipped_classes"])
            self.predictive._class_skip_run = list(state["class_skip_run"])


class RandomSamplePolicy(Policy):
    """The random controls: ``UniformRandom`` or ``NonUniformRandom`` (segment = epoch).
    Skipped samples run neither forward nor backward.

    ``decision_forward=True`` prices the control like a reactive DeadHorse policy (paper 000,
    DeadHorse's controls): the whole batch first runs the same tallied, discarded forward the
    method runs to decide, so method and control differ only in *which* samples skip."""

    skip_unit = "sample"

    def __init__(self, rates: float | Sequence[float], seed: int = 0, decision_forward: bool = False):
        self.decision_forward = bool(decision_forward)
        gen = torch.Generator().manual_seed(int(seed))
        if isinstance(rates, (int, float)):
            self.sampler: UniformRandom = UniformRandom(float(rates), gen)
            self.name = "random-uniform"
        else:
            self.sampler = NonUniformRandom(list(rates), gen)
            self.name = "random-nonuniform"
        self.gen = gen
        self.tally = SkipTally()
        self._segment = 0

    def on_epoch_start(self, ctx: StepContext) -> None:
        self._segment = ctx.epoch

    def sample_mask(self, ctx: StepContext) -> torch.Tensor:
        n = ctx.x.shape[0]
        if self.decision_forward:
            saved = _buffers(ctx.model)
            with tallied_forward(ctx):
                ctx.model(ctx.x)
            for live, copy in saved:
                live.copy_(copy)
        skip = self.sampler.skip(n, self._segment)
        k = int(skip.sum())
        self.tally.add(n, 0 if self.decision_forward else k, k, decision_forwards=n if self.decision_forward else 0)
        return ~skip.to(ctx.x.device)

    def skip_ratios(self) -> dict[str, float]:
        return {self.skip_unit: self.tally.skip_ratio}

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "tally": vars(self.tally).copy()}

    def load_state_dict(self, state: dict) -> None:
        if "gen" in state:
            self.gen.set_state(state["gen"])
            vars(self.tally).update(state["tally"])
