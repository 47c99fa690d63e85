"""Grid validation and the control derivation of the runner, with a scripted backend.

The real-backend checks (a measured skip ratio reproduced by the random control, energy
matched by the fewer-iterations control) are in test_end_to_end.py.
"""
from __future__ import annotations

import math

import pytest

from e2train.bench.grid import GridError, GridSpec, parse_seeds, parse_targets
from e2train.bench.records import Budget, EpochRecord, RunRecord
from e2train.bench.runner import Job, MethodResult, run_grid


class ScriptedBackend:
    """Returns made-up records; remembers every job it was asked to run."""

    def __init__(self, ratios):
        self.ratios = ratios          # method -> {unit: measured ratio}
        self.jobs: list[Job] = []

    def methods(self):
        return ["fp32", "smd", "slu", "never-skips"]

    def skipping_methods(self):
        return ["smd", "slu", "never-skips"]

    def datasets(self):
        return ["digits"]

    def models(self):
        return ["resnet8"]

    def run(self, job, progress):
        self.jobs.append(job)
        if job.kind == "random-control":
            ratios = dict(job.skip_ratios)
        elif job.kind == "fewer-iters-control":
            ratios = {}
        else:
            ratios = self.ratios.get(job.method, {})
        unit, ratio = next(iter(ratios.items()), ("", 0.0))
        e_per_epoch = 10.0 * (1 - ratio)
        n = int(job.budget.value)
        if job.kind == "fewer-iters-control":
            n = max(1, int(job.energy_cap_j // 10.0))
        eps = [EpochRecord(i + 1, 0.1 * (i + 1), e_per_epoch * (i + 1), 0.5 + 0.1 * i, ratio) for i in range(n)]
        rec = RunRecord(job.method, job.seed, job.budget, kind=job.kind, control_of=job.control_of,
                        skip_unit=unit, epochs=eps)
        return MethodResult(rec, ratios)


def spec(**kw):
    base = dict(methods=["fp32", "smd", "slu", "never-skips"], budgets=[Budget("epochs", 3)], seeds=[0, 1])
    base.update(kw)
    return GridSpec(**base)


def test_controls_follow_each_skipping_method_at_its_measured_ratio(tmp_path):
    be = ScriptedBackend({"smd": {"batches": 0.48}, "slu": {"block-samples": 0.31}})
    recs = run_grid(spec(), be, tmp_path, progress=lambda s: None)
    kinds = [(j.method, j.kind, j.control_of, j.seed) for j in be.jobs]
    # seed 0: fp32; smd + 2 controls; slu + 2 controls; never-skips + fewer-iters only
    assert kinds[:9] == [
        ("fp32", "method", "", 0),
        ("smd", "method", "", 0), ("random-skip", "random-control", "smd", 0), ("fewer-iters", "fewer-iters-control", "smd", 0),
        ("slu", "method", "", 0), ("random-skip", "random-control", "slu", 0), ("fewer-iters", "fewer-iters-control", "slu", 0),
        ("never-skips", "method", "", 0), ("fewer-iters", "fewer-iters-control", "never-skips", 0)]
    assert len(be.jobs) == 18 and len(recs) == 18
    rnd = [j for j in be.jobs if j.kind == "random-control"]
    assert {(j.control_of, j.skip_unit, j.skip_ratio) for j in rnd} == {("smd", "batches", 0.48), ("slu", "block-samples", 0.31)}
    fewer = [j for j in be.jobs if j.kind == "fewer-iters-control" and j.control_of == "smd"]
    assert all(j.energy_cap_j == pytest.approx(30 * 0.52) for j in fewer)
    assert all(dict(j.options)["baseline"] == "fp32" for j in fewer)
    assert (tmp_path / "runs.csv").exists()


def test_bad_grid_fails_before_anything_runs():
    be = ScriptedBackend({})
    with pytest.raises(GridError) as ei:
        run_grid(spec(methods=["fp32", "smdd", "fp32"], seeds=[0, 0], dataset="mnist", model="vgg"), be,
                 progress=lambda s: None)
    msg = str(ei.value)
    for part in ("unknown method 'smdd'", "registered methods: fp32, never-skips, slu, smd", "listed twice: fp32",
                 "seed is listed twice", "unknown data set 'mnist'", "unknown model 'vgg'", "nothing has run"):
        assert part in msg
    assert be.jobs == []


def test_missing_baseline_is_reported():
    with pytest.raises(GridError, match="--baseline"):
        run_grid(spec(baseline="sgd"), ScriptedBackend({}), progress=lambda s: None)
    # without fewer-iterations controls no baseline is needed
    run_grid(spec(baseline="sgd", fewer_iters_controls=False, seeds=[0], methods=["smd"]),
             ScriptedBackend({"smd": {"batches": 0.5}}), progress=lambda s: None)


def test_seed_and_target_parsing():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("4,2") == [4, 2]
    assert parse_targets("0.9,95,97.5%") == [0.9, 0.95, 0.975]
    for bad in ("a", "3-1", "1,,2"):
        with pytest.raises(GridError, match="seeds"):
            parse_seeds(bad)
    for bad in ("x", "0", "150"):
        with pytest.raises(GridError, match="targets"):
            parse_targets(bad)


def test_lr_grid_reruns_the_fewer_iterations_control_at_each_rate(tmp_path):
    """E2-Train section 4.2, Fig. 3b: standard training with fewer iterations *and* a grid of
    larger learning rates, at the method's energy, is the control SMD must beat."""
    be = ScriptedBackend({"smd": {"batches": 0.5}})
    run_grid(spec(methods=["fp32", "smd"], seeds=[0], lr_grid=[0.12, 0.2]), be, tmp_path, progress=lambda s: None)
    fewer = [j for j in be.jobs if j.kind == "fewer-iters-control"]
    assert [j.method for j in fewer] == ["fewer-iters", "fewer-iters-lr0.12", "fewer-iters-lr0.2"]
    assert [dict(j.options).get("lr") for j in fewer] == [None, 0.12, 0.2]
    assert len({j.energy_cap_j for j in fewer}) == 1
    with pytest.raises(GridError, match="positive learning rates"):
        run_grid(spec(lr_grid=[0.0]), be, tmp_path, progress=lambda s: None)


def test_lr_grid_sets_the_controls_learning_rate():
    from e2train.bench.torch_backend import TorchBackend
    be = TorchBackend(limit_train=64, base_config={"batch_size": 32})
    j = Job("fewer-iters-lr0.2", 0, Budget("epochs", 1), "digits", "resnet8", kind="fewer-iters-control",
            control_of="smd", energy_cap_j=1e-3, options=(("baseline", "fp32"), ("method_epochs", 1), ("lr", 0.2)))
    plan, _ = be._fewer_plan(j)
    assert plan.cfg.lr == 0.2 and plan.cfg.precision == "fp32"
