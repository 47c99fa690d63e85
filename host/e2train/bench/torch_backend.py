"""The harness's backend on the PyTorch reference trainer (``e2train.torch.trainer``).

Methods it knows:

* E2-Train's own, built from ``TrainConfig`` flags: ``fp32`` (32-bit float SGD, the default
  baseline), ``int8_fp32grad`` and ``int8_int16grad`` (8-bit training without PSG), ``smd``,
  ``slu``, ``psg``, ``e2train`` (SMD + SLU + PSG) and ``stochastic-depth``;
* every method of ``e2train.torch.methods.REGISTRY`` (GSkip, DeadHorse, Learn&Drop, WUS, ...),
  by its registered name.

Skip ratios are measured, per granularity, from what ran:

* ``batches``: batches dropped / batches offered (the trainer's epoch records);
* ``block-samples``: (sample, residual block) executions that did not run / all, counted from
  the block masks of every training forward (an observer policy, below), count-weighted;
* ``weight-signs``: PSG weight signs decided by the MSB predictor / all signs decided;
* a registered method's own unit, from its policy's ``skip_ratios()``.

Random controls use the same granularity: ``RandomBatchSkip``, ``RandomBlockSkip``, a random
choice of which weight signs take the predictor's sign (:mod:`.psg_control`), and the
registry's ``random_control`` for its methods -- except where a paper names its own control:

* SLU: stochastic depth with p_L matched to SLU's measured block dropping ratio (E2-Train,
  section 4.3, Fig. 4);
* GSkip, Learn&Drop, freezing (``control_match="workload"``): random mini-batch omission at
  the method's *workload* ratio, 1 - its modelled energy / the baseline's for the same epochs
  (paper 000, Table 2: "we set the skipping rate to mirror GSkip's proportion of skipped
  workload");
* DeadHorse: per-epoch (segment-wise) rates of the method, and for the reactive policies the
  same decision forward the method pays (paper 000's DeadHorse controls).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

from .grid import GridError
from .records import EpochRecord, RunRecord
from .runner import Job, MethodResult


class BackendUnavailable(RuntimeError):
    pass


try:
    import torch

    from ..data.datasets import DatasetError
    from ..torch import data as tdata
    from ..torch.policy import Policy, RandomBatchOmission, RandomBatchSkip
    from ..torch.psg import PSGConv2d
    from ..torch.slu import MatchedStochasticDepth, RandomBlockSkip
    from ..torch.trainer import ConfigError, TrainConfig, train
except ImportError as _e:  # pragma: no cover - the host extra is missing
    raise BackendUnavailable(f"the torch reference trainer cannot be imported ({_e}); install the host "
                             f"extra: pip install -e '.[host]'") from None

try:
    from ..torch.methods import RANDOM_CONTROLS, REGISTRY
except ImportError:  # pragma: no cover - the registry is optional for E2-Train's own grid
    REGISTRY, RANDOM_CONTROLS = {}, {}

# E2-Train's methods: TrainConfig flags, and the granularities they skip at (in that order).
E2_METHODS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "fp32": (dict(precision="fp32"), ()),
    "signsgd": (dict(precision="signsgd"), ()),
    "int8_fp32grad": (dict(precision="int8_fp32grad"), ()),
    "int8_int16grad": (dict(precision="int8_int16grad"), ()),
    "smd": (dict(precision="fp32", smd=True), ("batches",)),
    "slu": (dict(precision="fp32", slu=True), ("block-samples",)),
    "psg": (dict(precision="psg"), ("weight-signs",)),
    "e2train": (dict(precision="psg", smd=True, slu=True), ("batches", "block-samples", "weight-signs")),
    "stochastic-depth": (dict(precision="fp32", stochastic_depth=0.5), ("block-samples",)),
}
DATASETS = ("digits", "cifar10", "cifar100", "mnist", "imagenette", "sat6", "sat6synthetic")
MODELS = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet56", "resnet110", "mobilenetv2",
          "vgg11", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "densenet121", "modified_alexnet")

_SEED_OFFSET_CONTROL = 1000     # controls draw from streams unrelated to the method's own


class SkipObserver(Policy):
    """Counts what ran, for the skip ratios: block executions per sample, PSG decisions."""

    name = "bench-observer"

    def __init__(self) -> None:
        self.block_total = 0
        self.block_run = 0
        self.signs_decided = 0
        self.signs_predicted = 0
        self._psg: list[PSGConv2d] = []

    def on_train_start(self, ctx):
        self._psg = [m for m in ctx.model.modules() if isinstance(m, PSGConv2d)]

    def after_backward(self, ctx):
        masks = getattr(ctx.model, "last_masks", None) or []
        n = ctx.x.shape[0]
        for m in masks:
            self.block_total += n
            self.block_run += n if m is None else int(m.sum())

    def on_epoch_end(self, ctx, record):
        # the layers' counters cover this epoch (the trainer resets them at epoch start)
        self.signs_decided += sum(m.n_decided for m in self._psg)
        self.signs_predicted += sum(m.n_predicted for m in self._psg)

    def block_skip_ratio(self) -> float:
        return 1.0 - self.block_run / self.block_total if self.block_total else 0.0

    def predicted_ratio(self) -> float:
        return self.signs_predicted / self.signs_decided if self.signs_decided else 0.0


class _Stop(Exception):
    """Raised from the epoch callback when an energy budget is spent."""


@dataclass
class _Plan:
    cfg: TrainConfig
    policies: list
    units: tuple[str, ...]
    unit_policy: object | None = None    # a registered policy with skip_ratios()


class TorchBackend:
    def __init__(self, threads: int = 1, verbose: bool = True, data_dir: str | None = None,
                 limit_train: int | None = None, base_config: dict | None = None):
        self.threads = threads
        self.verbose = verbose
        self.data_dir = data_dir
        self.limit_train = limit_train
        self.base_config = dict(base_config or {})
        self._data: dict[str, object] = {}
        self._batch_energy: dict[tuple, float] = {}
        self._epoch_energy: dict[tuple, float] = {}
        self.dist = None          # the grid's DistConfig (set by preflight): every job distributed

    # -- what it offers -------------------------------------------------------------------
    def methods(self) -> list[str]:
        return list(E2_METHODS) + [m for m in REGISTRY if m not in E2_METHODS]

    def skipping_methods(self) -> list[str]:
        return [m for m, (_, units) in E2_METHODS.items() if units] + list(REGISTRY)

    def datasets(self) -> list[str]:
        return list(DATASETS)

    def models(self) -> list[str]:
        return list(MODELS)

    def unit_of(self, method: str) -> tuple[str, ...]:
        if method in E2_METHODS:
            return E2_METHODS[method][1]
        return (REGISTRY[method].skip_unit,)

    def require_methods(self, names: list[str], what: str) -> None:
        missing = [m for m in names if m not in self.methods()]
        if missing:
            raise GridError(f"{what} needs methods that are not registered in e2train.torch.methods: "
                            f"{', '.join(missing)} (registered: {', '.join(REGISTRY) or 'none'})")

    def preflight(self, spec) -> None:
        """Load the grid's data set now, so missing CIFAR files fail before any training;
        and refuse a skipping baseline for the fewer-iterations controls (its steps would not
        all cost the same, so no number of steps matches an energy)."""
        steady = [m for m, (_, units) in E2_METHODS.items() if not units]
        if spec.fewer_iters_controls and spec.baseline not in steady:
            raise GridError(f"bad benchmark grid (nothing has run): --baseline {spec.baseline!r} skips work; "
                            f"the fewer-iterations controls need one of {', '.join(steady)}")
        self._data_for(self._config(Job(spec.methods[0], spec.seeds[0], spec.budgets[0], spec.dataset, spec.model)))
        self.dist = None
        if spec.distributed:
            from .distributed_jobs import check_grid
            self.dist = check_grid(spec, self)

    # -- building a run ---------------------------------------------------------------------
    def _config(self, job: Job, **flags) -> TrainConfig:
        kw = dict(self.base_config)
        kw.update(dataset=job.dataset, model=job.model, seed=job.seed, threads=self.threads,
                  progress=False, data_dir=self.data_dir, limit_train=self.limit_train)
        if job.budget.kind == "epochs":
            kw["epochs"] = int(job.budget.value)
        kw.update(flags)
        try:
            return TrainConfig.from_dict(kw)       # unknown keys and wrong types: named
        except ConfigError as e:
            raise GridError(f"{job.describe()}: {e}") from None

    def _data_for(self, cfg: TrainConfig):
        key = (cfg.dataset, cfg.data_dir, cfg.limit_train)
        if key not in self._data:
            try:
                self._data[key] = tdata.load(cfg.dataset, cfg.data_dir, cfg.limit_train)
            except (OSError, ValueError, DatasetError) as e:
                raise GridError(f"data set {cfg.dataset!r} cannot be loaded: {e}") from None
        return self._data[key]

    def _plan(self, job: Job) -> _Plan:
        if job.kind == "method":
            opts = dict(job.options)
            if job.method in E2_METHODS:
                flags, units = E2_METHODS[job.method]
                return _Plan(self._config(job, **flags, **opts), [], units)
            spec = REGISTRY[job.method]
            pol = spec.factory(seed=job.seed, **opts)
            return _Plan(self._config(job, precision="fp32"), [pol], (spec.skip_unit,), pol)
        if job.kind == "random-control":
            return self._random_plan(job)
        raise ValueError(f"unknown job kind {job.kind!r}")

    def _random_plan(self, job: Job) -> _Plan:
        """Random skipping at the method's measured ratio, unit by unit."""
        ratios = dict(job.skip_ratios)
        seed = job.seed + _SEED_OFFSET_CONTROL
        m = job.control_of
        policies: list = []
        flags: dict = {"precision": "fp32"}
        if m in E2_METHODS:
            flags = {"precision": E2_METHODS[m][0]["precision"]}
            for unit, r in ratios.items():
                if unit == "batches":
                    policies.append(RandomBatchSkip(r, seed=seed + 1))
                elif unit == "block-samples" and m == "slu":
                    policies.append(MatchedStochasticDepth(r, seed=seed + 2))
                elif unit == "block-samples":
                    policies.append(RandomBlockSkip(1.0 - r, seed=seed + 2))
                elif unit == "weight-signs":
                    from .psg_control import RandomPredictorChoice
                    policies.append(RandomPredictorChoice(r, seed=seed + 3))
                else:  # pragma: no cover - E2_METHODS lists only the units above
                    raise ValueError(f"no random control for unit {unit!r}")
            return _Plan(self._config(job, **flags), policies, tuple(ratios))
        spec = REGISTRY[m]
        (unit, r), = ratios.items()
        if unit == "batches":          # workload-matched: random mini-batch omission, exact count
            return _Plan(self._config(job, **flags), [RandomBatchOmission(r, seed=seed + 1)], (unit,))
        pol = spec.random_control(r, seed, **dict(job.options))
        return _Plan(self._config(job, **flags), [pol], (unit,), pol)

    # -- energy of one standard step, for the fewer-iterations controls ---------------------
    def batch_energy_j(self, job: Job, baseline: str) -> float:
        """Modelled energy of one full training step of the baseline (a one-step probe run)."""
        flags = dict(E2_METHODS[baseline][0]) if baseline in E2_METHODS else {"precision": "fp32"}
        cfg = self._config(job, **flags, epochs=1, max_batches=1, augment=False)
        key = (cfg.dataset, cfg.model, cfg.precision, cfg.batch_size, cfg.limit_train)
        if key not in self._batch_energy:
            res = train(cfg, data=self._data_for(cfg))
            self._batch_energy[key] = res.records[0]["energy_j"]
        return self._batch_energy[key]

    def epoch_energy_j(self, job: Job, baseline: str) -> float:
        """Modelled energy of one whole epoch of the baseline (a one-epoch probe run; the
        tally depends on the shapes that ran, not on the data's values)."""
        flags = dict(E2_METHODS[baseline][0]) if baseline in E2_METHODS else {"precision": "fp32"}
        cfg = self._config(job, **flags, epochs=1, augment=False)
        key = (cfg.dataset, cfg.model, cfg.precision, cfg.batch_size, cfg.limit_train, cfg.max_batches)
        if key not in self._epoch_energy:
            res = train(cfg, data=self._data_for(cfg))
            self._epoch_energy[key] = res.records[0]["energy_j"]
        return self._epoch_energy[key]

    def workload_ratio(self, job: Job, energy_j: float, epochs: int) -> float:
        """Share of the baseline's modelled work for the same epochs that the run did not do."""
        full = epochs * self.epoch_energy_j(job, "fp32")
        return 1.0 - energy_j / full if full > 0 else 0.0

    def _fewer_plan(self, job: Job) -> tuple[_Plan, float]:
        baseline = dict(job.options)["baseline"]
        if baseline not in E2_METHODS or E2_METHODS[baseline][1]:
            raise GridError(f"the fewer-iterations control needs a baseline that skips nothing "
                            f"({', '.join(m for m, (_, u) in E2_METHODS.items() if not u)}), not {baseline!r}")
        e_step = self.batch_energy_j(job, baseline)
        flags = dict(E2_METHODS[baseline][0])
        cfg0 = self._config(job, **flags)
        data = self._data_for(cfg0)
        n = data.x_train.shape[0]
        full = n // cfg0.batch_size       # full batches per epoch: every step costs e_step
        if full < 1:
            raise GridError(f"{job.describe()}: the training set ({n}) is smaller than one batch")
        want = job.energy_cap_j / e_step
        epochs_hint = int(dict(job.options).get("method_epochs", 1))
        epochs, per_epoch = plan_steps(want, full, epochs_hint)
        lr = dict(job.options).get("lr")      # the learning-rate grid control (E2-Train Fig. 3b)
        if lr is not None:
            flags["lr"] = float(lr)
        cfg = self._config(job, **flags, epochs=epochs, max_batches=per_epoch)
        return _Plan(cfg, [], ()), e_step

    # -- running ----------------------------------------------------------------------------
    def run(self, job: Job, progress: Callable[[str], None]) -> MethodResult:
        if self.dist is not None:
            from .distributed_jobs import run_distributed
            return run_distributed(self, job, progress)
        if job.kind == "fewer-iters-control":
            plan, _ = self._fewer_plan(job)
        else:
            plan = self._plan(job)
        observer = SkipObserver()
        cfg = plan.cfg
        if job.budget.kind == "energy" and job.kind != "fewer-iters-control":
            cfg = self._energy_budget_config(job, plan, cfg)
        epochs: list[EpochRecord] = []
        platform = [""]
        totals = {"run": 0, "skipped": 0}

        def ratios_now(rec: dict) -> dict[str, float]:
            totals["run"] += rec["batches_run"]
            totals["skipped"] += rec["batches_skipped"]
            out = {}
            for unit in plan.units:
                if plan.unit_policy is not None:
                    out[unit] = float(plan.unit_policy.skip_ratios().get(unit, 0.0))
                elif unit == "batches":
                    offered = totals["run"] + totals["skipped"]
                    out[unit] = totals["skipped"] / offered if offered else 0.0
                elif unit == "block-samples":
                    out[unit] = observer.block_skip_ratio()
                elif unit == "weight-signs":
                    out[unit] = observer.predicted_ratio()
            return out

        def on_event(ev: dict) -> None:
            if ev["event"] == "epoch":      # the run record's epoch entry: accuracy a fraction
                on_epoch(ev)

        def on_epoch(rec: dict) -> None:
            skips = ratios_now(rec)
            first = next(iter(skips.values()), 0.0)
            steps = (epochs[-1].steps if epochs else 0) + rec["batches_run"]
            val = rec.get("val_acc")          # decisions read the validation split when held out
            epochs.append(EpochRecord(epoch=rec["epoch"], wall_s=rec["wall_s"], energy_j=rec["energy_j"],
                                      acc=rec["test_acc"] if val is None else val, skip_ratio=first,
                                      steps=steps, skips=skips, peak_mem_mb=rec.get("peak_mem_mb", math.nan),
                                      test_acc=math.nan if val is None else rec["test_acc"],
                                      energy_parts=dict(rec.get("energy_parts_j") or {})))
            platform[0] = rec.get("energy_platform") or platform[0]
            if self.verbose:
                sk = ", ".join(f"{100 * r:.1f}% {u}" for u, r in skips.items())
                progress(f"    epoch {rec['epoch']}/{cfg.run_epochs}: acc {100 * rec['test_acc']:.2f}%  "
                         f"energy {rec['energy_j']:.4g} J (modelled)  wall {rec['wall_s']:.1f} s"
                         + (f"  skipped {sk}" if sk else ""))
            if job.budget.kind == "energy" and job.kind != "fewer-iters-control" \
                    and rec["energy_j"] >= job.budget.value:
                raise _Stop

        try:
            train(cfg, [*plan.policies, observer], data=self._data_for(cfg), on_event=on_event)
        except _Stop:
            pass
        except ConfigError as e:
            raise GridError(f"{job.describe()}: {e}") from None
        rec = RunRecord(method=job.method, seed=job.seed, budget=job.budget, kind=job.kind,
                        control_of=job.control_of, skip_unit=plan.units[0] if plan.units else "",
                        energy_source="modelled", epochs=epochs, energy_platform=platform[0])
        final = epochs[-1].skips if epochs else {}
        out = MethodResult(rec, dict(final))
        spec = REGISTRY.get(job.method) if job.kind == "method" else None
        if spec is not None and spec.control_match == "workload" and epochs:
            out.control_ratios = {"batches": self.workload_ratio(job, epochs[-1].energy_j, len(epochs))}
        if plan.unit_policy is not None and hasattr(plan.unit_policy, "control_options") and job.kind == "method":
            out.control_options = plan.unit_policy.control_options()
        return out

    def _energy_budget_config(self, job: Job, plan: _Plan, cfg: TrainConfig) -> TrainConfig:
        """Plan the schedule of an energy-budget run: epochs = budget / the method's own
        first-epoch energy (a one-epoch probe with the same seed), rounded up. The run then
        stops at the end of the first epoch whose cumulative energy reaches the budget."""
        # the probe gets policies of its own: the run's must start with fresh state
        fresh = self._plan(job) if job.kind == "method" else self._random_plan(job)
        res = train(dataclasses.replace(cfg, epochs=1), [*fresh.policies], data=self._data_for(cfg))
        e1 = res.records[0]["energy_j"]
        epochs = max(1, math.ceil(job.budget.value / e1)) if e1 > 0 else 1
        return dataclasses.replace(cfg, epochs=epochs)


def plan_steps(steps: float, full_batches: int, epochs_hint: int) -> tuple[int, int]:
    """(epochs, batches per epoch) for a run of about ``steps`` full-batch steps.

    The trainer's schedule needs the same number of batches in every epoch, so not every
    total is reachable: any plan within one step of round(steps) counts as a match, and among
    matches the epoch count closest to ``epochs_hint`` (the method's) wins, so the control is
    evaluated about as often as its method (23 epochs of one batch each would also total 23
    steps, and waste 22 evaluations). With ``steps`` rounded, the total is within 1.5 steps
    of ``steps``. Batches per epoch never exceed ``full_batches``.
    """
    if not (steps > 0 and math.isfinite(steps)):
        raise ValueError(f"a fewer-iterations control needs a positive number of steps, not {steps!r}")
    target = max(1, round(steps))
    best = None
    lo = max(1, math.ceil(target / full_batches) - 1)
    for e in range(lo, target + 1):
        k = min(full_batches, max(1, round(target / e)))
        err = abs(e * k - target)
        key = (max(0, err - 1), abs(e - epochs_hint), err, e)
        if best is None or key < best[0]:
            best = (key, e, k)
    return best[1], best[2]
