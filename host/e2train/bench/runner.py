"""Run a grid: every method, then its two controls, derived from what the method measured.

For each seed and budget, each method runs first. If it skipped work (a measured skip ratio
above zero, at its own granularity), two controls follow with the same seed and budget:

* **random control** -- the same kind of skipping at the same granularity, but choosing what
  to skip uniformly at random, at the ratio the method *measured* in that run (not its
  nominal ratio: a policy whose gate settles at 31% is compared with 31% random);
* **fewer-iterations control** -- the standard training (the baseline method, no skipping)
  stopped when its energy reaches the method's final energy, with its learning-rate schedule
  planned for that shorter run.

The runner knows nothing about torch: a *backend* trains one job and returns its record.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol

from .grid import GridSpec, validate
from .records import KIND_FEWER, KIND_METHOD, KIND_RANDOM, Budget, RunRecord, write_csv

RANDOM_CONTROL = "random-skip"
FEWER_CONTROL = "fewer-iters"


@dataclass(frozen=True)
class Job:
    method: str
    seed: int
    budget: Budget
    dataset: str
    model: str
    kind: str = KIND_METHOD
    control_of: str = ""
    # random control: skip this fraction of these units, chosen at random
    skip_ratio: float = math.nan
    skip_unit: str = ""
    # a method's per-unit ratios when it skips at several granularities (E2-Train: SMD+SLU+PSG)
    skip_ratios: tuple[tuple[str, float], ...] = ()
    # fewer-iterations control: stop when the energy reaches this many joules
    energy_cap_j: float = math.nan
    options: tuple[tuple[str, object], ...] = ()

    def describe(self) -> str:
        what = self.method if self.kind == KIND_METHOD else f"{self.method}[{self.control_of}]"
        extra = ""
        if self.kind == KIND_RANDOM:
            extra = " at " + ", ".join(f"{100 * r:.1f}% {u}" for u, r in self.skip_ratios)
        elif self.kind == KIND_FEWER:
            extra = f" to {self.energy_cap_j:.4g} J"
        return f"{what} seed={self.seed} budget={self.budget.label}{extra}"


@dataclass
class MethodResult:
    """What a backend returns: the run record, and its skip ratio per granularity."""

    record: RunRecord
    skip_ratios: dict[str, float] = field(default_factory=dict)
    # what the random control matches, when not the method's own skip ratios: e.g. GSkip's
    # {"batches": workload ratio} (paper 000: random mini-batch omission at its workload)
    control_ratios: dict[str, float] = field(default_factory=dict)
    # how the control is built beyond its ratio (DeadHorse: per-epoch rates, decision forward)
    control_options: dict = field(default_factory=dict)


class Backend(Protocol):
    def methods(self) -> list[str]: ...
    def skipping_methods(self) -> list[str]: ...
    def datasets(self) -> list[str]: ...
    def models(self) -> list[str]: ...
    def run(self, job: Job, progress: Callable[[str], None]) -> MethodResult: ...


def validate_for(spec: GridSpec, backend: Backend) -> None:
    validate(spec, backend.methods(), backend.datasets(), backend.models(), backend.skipping_methods())
    preflight = getattr(backend, "preflight", None)     # e.g. load the data set once, up front
    if preflight is not None:
        preflight(spec)


def random_control_job(method_job: Job, result: MethodResult) -> Job | None:
    """The random control of a method run, or None if it skipped nothing (in the units its
    control matches: the method's own, or its workload)."""
    ratios = {u: r for u, r in (result.control_ratios or result.skip_ratios).items() if r > 0}
    if not ratios:
        return None
    first_unit, first_ratio = next(iter(ratios.items()))
    return replace(method_job, method=RANDOM_CONTROL, kind=KIND_RANDOM, control_of=method_job.method,
                   skip_ratio=first_ratio, skip_unit=first_unit,
                   skip_ratios=tuple(ratios.items()), options=tuple(sorted(result.control_options.items())))


def fewer_iters_job(method_job: Job, result: MethodResult, baseline: str) -> Job:
    return replace(method_job, method=FEWER_CONTROL, kind=KIND_FEWER, control_of=method_job.method,
                   energy_cap_j=result.record.final.energy_j,
                   options=(("baseline", baseline), ("method_epochs", len(result.record.epochs))))


def run_grid(spec: GridSpec, backend: Backend, out_dir: str | Path | None = None,
             progress: Callable[[str], None] = print) -> list[RunRecord]:
    """Run the grid; after every run, runs.csv is rewritten so an interrupted grid loses
    only the run in flight."""
    validate_for(spec, backend)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    skipping = set(backend.skipping_methods())
    records: list[RunRecord] = []
    total = spec.n_method_runs
    i = 0
    t0 = time.monotonic()

    def do(job: Job) -> MethodResult:
        progress(f"[{time.monotonic() - t0:7.1f}s] {job.describe()}")
        res = backend.run(job, progress)
        rec = res.record
        # The runner, not the backend, owns a run's identity in the grid.
        rec.method, rec.seed, rec.budget = job.method, job.seed, job.budget
        rec.kind, rec.control_of = job.kind, job.control_of      # nproc / schedule: the backend's
        if job.kind == KIND_RANDOM:
            rec.target_skip_ratio = job.skip_ratio
        if not rec.epochs:
            raise RuntimeError(f"{job.describe()}: the trainer returned no epochs")
        records.append(rec)
        if out_dir is not None:
            write_csv(records, Path(out_dir) / "runs.csv")
        f = rec.final
        energy = "no energy modelled" if rec.energy_source == "none" else f"energy {f.energy_j:.4g} J ({rec.energy_source})"
        progress(f"    -> acc {100 * f.acc:.2f}%  {energy}  "
                 f"wall {f.wall_s:.1f} s  skipped {100 * f.skip_ratio:.1f}% {rec.skip_unit}".rstrip())
        return res

    for seed in spec.seeds:
        for budget in spec.budgets:
            for m in spec.methods:
                i += 1
                progress(f"== run {i}/{total} (+ controls)")
                job = Job(m, seed, budget, spec.dataset, spec.model,
                          options=tuple(sorted(spec.method_options.get(m, {}).items())))
                res = do(job)
                if m not in skipping:
                    continue
                if spec.random_controls:
                    rj = random_control_job(job, res)
                    if rj is None:
                        progress(f"    {m} skipped nothing in this run: no random control to run")
                    else:
                        do(rj)
                if spec.fewer_iters_controls:
                    fj = fewer_iters_job(job, res, spec.baseline)
                    do(fj)
                    for lr in spec.lr_grid:     # E2-Train Fig. 3b: the same energy, other learning rates
                        do(replace(fj, method=f"{FEWER_CONTROL}-lr{lr:g}", options=fj.options + (("lr", lr),)))
    return records
