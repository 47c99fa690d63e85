"""One real, short grid through `e2train bench`: digits, ResNet-8, fp32 / SMD / PSG, with their
random and fewer-iterations controls, trained by the torch reference trainer.

Tolerances (stated here and in docs/harness.md):

* random control vs its method's measured skip ratio: the control draws each unit
  independently with p = the method's ratio, so its realised ratio over N offered units is
  binomial; it must lie within 3.5 standard deviations, 3.5 * sqrt(p(1-p)/N) (a two-sided
  miss probability of about 5e-4 for a fair draw; the seeds are fixed, so the test is
  deterministic). Its *target* must equal the method's measured ratio exactly.
* fewer-iterations control vs its method's final modelled energy: within 1.5 baseline steps
  (the plan rounds to whole steps and needs equal batches per epoch; torch_backend.plan_steps).
"""
from __future__ import annotations

import csv
import math

import pytest

from e2train.bench.records import read_csv
from e2train.app.cli import main

LIMIT, BATCH, EPOCHS = 480, 16, 2          # 30 batches an epoch: fast, enough for statistics


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = main(["bench", "--methods", "fp32,smd,psg", "--budgets", str(EPOCHS), "--seeds", "0",
               "--limit-train", str(LIMIT), "--batch-size", str(BATCH), "--targets", "0.5,0.8",
               "--out", str(out), "--quiet"])
    assert rc == 0
    return out, {(r.method, r.control_of): r for r in read_csv(out / "runs.csv")}


def n_psg_weights():
    import torch

    from e2train.torch.models import build_model
    from e2train.torch.psg import PSGConv2d
    m = build_model("resnet8", 1, 10, precision="psg")
    return sum(mod.w_master.numel() for mod in m.modules() if isinstance(mod, PSGConv2d))


def test_grid_has_methods_and_both_controls(grid):
    _, runs = grid
    assert set(runs) == {("fp32", ""), ("smd", ""), ("psg", ""), ("random-skip", "smd"), ("fewer-iters", "smd"),
                         ("random-skip", "psg"), ("fewer-iters", "psg")}
    for r in runs.values():
        assert len(r.epochs) >= 1 and r.energy_source == "modelled"
        assert all(0 <= e.acc <= 1 for e in r.epochs)
        es = [e.energy_j for e in r.epochs]
        assert es == sorted(es) and es[0] > 0


def test_random_control_matches_measured_ratio_smd(grid):
    _, runs = grid
    smd, ctl = runs[("smd", "")], runs[("random-skip", "smd")]
    p = smd.skip_ratio
    assert 0.2 < p < 0.8                      # SMD drops about half the batches
    assert ctl.skip_unit == smd.skip_unit == "batches"
    assert ctl.target_skip_ratio == pytest.approx(p, abs=1e-6)
    n = EPOCHS * math.ceil(LIMIT / BATCH)     # batches offered to the control
    assert abs(ctl.skip_ratio - p) <= 3.5 * math.sqrt(p * (1 - p) / n)
    # skipping is real: the control ran fewer steps, and spent correspondingly less energy
    fp32 = runs[("fp32", "")]
    assert ctl.final.steps == round((1 - ctl.skip_ratio) * n)
    assert ctl.final.energy_j == pytest.approx(fp32.final.energy_j * ctl.final.steps / fp32.final.steps, rel=1e-6)


def test_random_control_matches_measured_ratio_psg(grid):
    _, runs = grid
    psg, ctl = runs[("psg", "")], runs[("random-skip", "psg")]
    p = psg.skip_ratio
    assert 0.05 < p < 0.99
    assert ctl.skip_unit == "weight-signs" and ctl.target_skip_ratio == pytest.approx(p, abs=1e-6)
    n = n_psg_weights() * ctl.final.steps
    assert abs(ctl.skip_ratio - p) <= 3.5 * math.sqrt(p * (1 - p) / n) + 1e-6
    # the choice really is random: over ~1e5 signs an epoch, a random draw that reproduces the
    # predictor's own count in every epoch means the control never replaced the PSG rule
    assert [e.skip_ratio for e in ctl.epochs] != [e.skip_ratio for e in psg.epochs]
    # the same fraction of exact products skipped -> the same modelled energy, closely
    assert ctl.final.energy_j == pytest.approx(psg.final.energy_j, rel=0.01)


@pytest.mark.parametrize("method", ["smd", "psg"])
def test_fewer_iterations_control_matches_energy(grid, method):
    _, runs = grid
    m, ctl, fp32 = runs[(method, "")], runs[("fewer-iters", method)], runs[("fp32", "")]
    step_j = fp32.final.energy_j / fp32.final.steps          # every fp32 step here is a full batch
    assert abs(ctl.final.energy_j - m.final.energy_j) <= 1.5 * step_j
    assert ctl.final.steps < fp32.final.steps                 # really fewer iterations
    assert ctl.skip_ratio == 0.0


def test_outputs_exist_and_parse(grid):
    out, runs = grid
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == sum(len(r.epochs) for r in runs.values())
    md = (out / "summary.md").read_text()
    table = [l for l in md.splitlines() if l.startswith("| ")]
    assert len(table) == 1 + len(runs)
    assert "energy (modelled) J" in table[0] and "time-to-80% s" in table[0]
    # the energy in parts, platform and baseline named, for every run (each recorded its parts)
    parts = md.split("## Energy in parts (modelled)")[1].split("\n## ")[0]
    assert sum(l.startswith("- **") for l in parts.splitlines()) == len(runs)
    assert parts.count("(modelled, platform horowitz45)") == len(runs)
    assert parts.count("over fp32: ") == len(runs) - 1
    for r in runs.values():
        assert set(r.final.energy_parts) == {"compute", "on_chip", "dram", "static"}
        assert sum(r.final.energy_parts.values()) == pytest.approx(r.final.energy_j, rel=1e-6)
    for name in ("acc_vs_energy.png", "acc_vs_time.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_energy_budget_stops_at_the_first_epoch_that_reaches_it(tmp_path):
    from e2train.bench.grid import GridSpec
    from e2train.bench.records import Budget
    from e2train.bench.runner import run_grid
    from e2train.bench.torch_backend import TorchBackend
    be = TorchBackend(verbose=False, limit_train=LIMIT, base_config={"batch_size": BATCH})
    # first the energy of one epoch, then a budget of 1.5 epochs' worth
    one = run_grid(GridSpec(["fp32"], [Budget("epochs", 1)], [0]), be, progress=lambda s: None)[0]
    e1 = one.final.energy_j
    run = run_grid(GridSpec(["fp32"], [Budget("energy", 1.5 * e1)], [0]), be, progress=lambda s: None)[0]
    es = [e.energy_j for e in run.epochs]
    assert len(es) == 2 and es[-1] >= 1.5 * e1 > es[-2]
    assert run.budget.kind == "energy"
