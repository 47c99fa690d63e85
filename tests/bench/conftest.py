"""Synthetic run records for the harness's unit tests."""
from __future__ import annotations

import pytest

from e2train.bench.records import Budget, EpochRecord, RunRecord


def make_run(method: str, seed: int, accs, *, wall_per_ep: float = 1.0, joules_per_ep: float = 10.0,
             skip: float = 0.0, kind: str = "method", control_of: str = "", budget: Budget | None = None,
             unit: str = "") -> RunRecord:
    eps = [EpochRecord(epoch=i + 1, wall_s=wall_per_ep * (i + 1), energy_j=joules_per_ep * (i + 1),
                       acc=a, skip_ratio=skip, steps=10 * (i + 1)) for i, a in enumerate(accs)]
    return RunRecord(method=method, seed=seed, budget=budget or Budget("epochs", len(accs)), kind=kind,
                     control_of=control_of, skip_unit=unit, epochs=eps)


@pytest.fixture(name="make_run")
def _make_run_fixture():
    return make_run


@pytest.fixture
def synthetic_runs():
    runs = []
    for seed, jitter in ((0, 0.0), (1, 0.02), (2, -0.02)):
        runs.append(make_run("fp32", seed, [0.5 + jitter, 0.8 + jitter, 0.9 + jitter], joules_per_ep=10))
        runs.append(make_run("smd", seed, [0.4 + jitter, 0.7 + jitter, 0.85 + jitter], joules_per_ep=5,
                             wall_per_ep=0.5, skip=0.5, unit="batches"))
        runs.append(make_run("random-skip", seed, [0.4, 0.68, 0.84], joules_per_ep=5, wall_per_ep=0.5,
                             skip=0.49, kind="random-control", control_of="smd", unit="batches"))
    return runs
