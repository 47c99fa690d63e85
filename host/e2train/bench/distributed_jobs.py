"""A grid's jobs as distributed runs: every job trains through ``torch.distributed``
(``e2train.torch.distributed``: DDP for ``nproc = N``, pipeline stages for ``pipeline = S``),
launched by the same launcher as ``e2train torch-train --nproc/--pipeline``.

    e2train bench --methods fp32,smd --budgets 5 --seeds 0-1 --nproc 2 --no-random-controls --no-fewer-iters
    e2train bench --methods fp32 --budgets 5 --pipeline 2 --pipe-schedule 1f1b --model modified_alexnet \\
        --dataset sat6synthetic

Each job's record lands in runs.csv and the summary like a one-process job's (same columns),
with ``nproc`` and ``schedule`` filled in. What the distributed trainers do not do is refused
before anything runs, every problem at once:

* energy: the distributed trainers attach no energy model (their records say so), so budgets
  are epochs and energy columns are NaN (``energy_source`` "none");
* controls: a random control needs a skipping policy inside the trainer and a
  fewer-iterations control an energy to match; neither exists in a distributed run, so a grid
  with a skipping method must pass ``--no-random-controls --no-fewer-iters``;
* methods: E2-Train's flag methods only (the registry's methods are trainer policies), and of
  those what ``check_ddp_config`` / ``check_pipeline_config`` accept (e.g. PSG is refused by
  data parallel, SLU by the pipeline), in their own words.
"""
from __future__ import annotations

import math
from typing import Callable

from .grid import GridError
from .records import EpochRecord, RunRecord
from .runner import Job, MethodResult

# what a batch-skipping method measured, the only unit the distributed trainers report
_BATCHES = "batches"


def schedule_name(dcfg) -> str:
    return dcfg.pipe_schedule if dcfg.pipeline else "ddp"


def check_grid(spec, backend):
    """The grid's DistConfig, or GridError listing every job the distributed trainers refuse."""
    import torch

    from ..torch.distributed.config import DistConfig, DistConfigError
    from ..torch.distributed.ddp import check_ddp_config
    from ..torch.distributed.launch import backend_for
    from ..torch.distributed.pipeline import check_pipeline_config
    from ..torch.trainer import ConfigError
    from .torch_backend import E2_METHODS

    try:
        dcfg = DistConfig.from_dict(dict(spec.distributed))
    except (DistConfigError, TypeError) as e:
        raise GridError(f"bad benchmark grid (nothing has run): distributed: {e}") from None
    problems = []
    mode = f"--pipeline {dcfg.pipeline}" if dcfg.pipeline else f"--nproc {dcfg.world}"
    if any(b.kind != "epochs" for b in spec.budgets):
        problems.append(f"{mode}: distributed runs model no energy, so budgets must be epochs ('5' or '5ep'), "
                        f"not {', '.join(b.label for b in spec.budgets if b.kind != 'epochs')}")
    skipping = [m for m in spec.methods if m in backend.skipping_methods()]
    if skipping and (spec.random_controls or spec.fewer_iters_controls):
        problems.append(f"{mode}: the controls of {', '.join(skipping)} need a trainer policy (random control) and "
                        "a modelled energy (fewer-iterations control), which distributed runs lack: "
                        "pass --no-random-controls --no-fewer-iters")
    for m in spec.methods:
        if m not in E2_METHODS:
            if m in backend.methods():
                problems.append(f"{mode}: {m} is a trainer policy, which distributed runs do not take; "
                                f"they run {', '.join(E2_METHODS)}")
            continue
        job = Job(m, spec.seeds[0], spec.budgets[0], spec.dataset, spec.model,
                  options=tuple(sorted(spec.method_options.get(m, {}).items())))
        try:
            cfg = backend._plan(job).cfg
            if backend_for(cfg.device) == "nccl" and torch.cuda.device_count() < dcfg.world:
                problems.append(f"{m}: {dcfg.world} processes on NCCL need {dcfg.world} CUDA devices, this machine "
                                f"has {torch.cuda.device_count()}: pass --device cpu (gloo) or fewer processes")
                continue
            if dcfg.pipeline:
                check_pipeline_config(cfg, dcfg)
            else:
                check_ddp_config(cfg, dcfg)
        except (ConfigError, GridError) as e:
            problems.append(f"{m}: {e}")
    if problems:
        raise GridError("bad benchmark grid (nothing has run):\n  - " + "\n  - ".join(problems))
    return dcfg


def run_distributed(backend, job: Job, progress: Callable[[str], None]) -> MethodResult:
    """One grid job trained by DDP or the pipeline; its epochs as the harness's records."""
    from ..core.run_record import torch_record
    from ..torch.distributed.ddp import train_ddp
    from ..torch.distributed.launch import DistributedError
    from ..torch.distributed.pipeline import train_pipeline
    from ..torch.trainer import ConfigError

    if job.kind != "method":      # check_grid refused controls; a direct caller gets the same line
        raise GridError(f"{job.describe()}: distributed grids run no controls")
    dcfg = backend.dist
    plan = backend._plan(job)
    try:
        res = (train_pipeline if dcfg.pipeline else train_ddp)(plan.cfg, dcfg)
    except (DistributedError, ConfigError) as e:
        raise GridError(f"{job.describe()}: {e}") from None
    epochs: list[EpochRecord] = []
    run = offered = 0
    units = plan.units
    skips: dict[str, float] = {}
    for r in torch_record(res).epochs:     # the run record's epochs: accuracy a fraction
        run += r["batches_run"]
        offered += r["batches_run"] + r["batches_skipped"]
        skips = {_BATCHES: (offered - run) / offered if offered else 0.0} if _BATCHES in units else {}
        epochs.append(EpochRecord(epoch=r["epoch"], wall_s=r["wall_s"], energy_j=math.nan, acc=r["test_acc"],
                                  skip_ratio=next(iter(skips.values()), 0.0), steps=run, skips=skips))
        if backend.verbose:
            progress(f"    epoch {r['epoch']}/{plan.cfg.run_epochs}: acc {100 * r['test_acc']:.2f}%  wall {r['wall_s']:.1f} s"
                     f"  ({dcfg.world} processes, {schedule_name(dcfg)}; no energy modelled)")
    rec = RunRecord(method=job.method, seed=job.seed, budget=job.budget, kind=job.kind, control_of=job.control_of,
                    skip_unit=_BATCHES if skips else "", energy_source="none", epochs=epochs,
                    nproc=dcfg.world, schedule=schedule_name(dcfg))
    return MethodResult(rec, dict(skips))
