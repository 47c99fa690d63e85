"""A grid's jobs as distributed runs (gloo on 127.0.0.1): the record lands in runs.csv and the
summary like a one-process job's, with nproc and schedule; refusals are named up front."""
from __future__ import annotations

import math

import pytest

from e2train.bench.grid import GridError, GridSpec
from e2train.bench.output import write_outputs
from e2train.bench.records import Budget, read_csv
from e2train.bench.runner import run_grid
from e2train.bench.torch_backend import TorchBackend
from e2train.app.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook")

# gloo on loopback, also where CUDA is present; 6 batches of 32: seconds
_TRAIN = {"device": "cpu", "batch_size": 32, "max_batches": 6}


def _backend():
    return TorchBackend(threads=1, verbose=False, limit_train=384, base_config=dict(_TRAIN))


def test_two_process_grid_job_lands_in_runs_csv_and_summary(tmp_path):
    spec = GridSpec(methods=["fp32", "smd"], budgets=[Budget("epochs", 1)], seeds=[0], random_controls=False,
                    fewer_iters_controls=False, distributed={"nproc": 2, "timeout_s": 60})
    runs = run_grid(spec, _backend(), tmp_path, progress=lambda s: None)
    assert [(r.method, r.nproc, r.schedule, r.energy_source) for r in runs] == \
        [("fp32", 2, "ddp", "none"), ("smd", 2, "ddp", "none")]
    fp32, smd = runs
    assert fp32.final.steps == 6 and math.isnan(fp32.final.energy_j) and 0 < fp32.final.acc <= 1
    # SMD's dropped batches are measured from what the ranks ran (p = 0.5 of 6)
    assert smd.final.steps < 6 and smd.skip_unit == "batches"
    assert smd.final.skip_ratio == pytest.approx(1 - smd.final.steps / 6)
    paths = write_outputs(runs, tmp_path, [0.5])
    back = read_csv(paths["runs.csv"])
    assert [(r.method, r.nproc, r.schedule) for r in back] == [("fp32", 2, "ddp"), ("smd", 2, "ddp")]
    assert back[0].final.acc == pytest.approx(fp32.final.acc, abs=1e-6)
    md = paths["summary.md"].read_text()
    assert "fp32: 2 processes (ddp)" in md and "smd: 2 processes (ddp)" in md
    assert f"{100 * fp32.final.acc:.2f}" in md


def test_one_process_csv_reads_as_one_process(tmp_path, make_run):
    from e2train.bench.records import write_csv
    path = write_csv([make_run("fp32", 0, [0.5, 0.6])], tmp_path / "runs.csv")
    text = path.read_text().splitlines()
    # files written before the columns existed still read
    cut = [",".join(line.split(",")[:-2]) for line in text]
    (tmp_path / "old.csv").write_text("\n".join(cut) + "\n")
    for p in (path, tmp_path / "old.csv"):
        (r,) = read_csv(p)
        assert (r.nproc, r.schedule) == (1, "")


def test_refusals_are_listed_before_anything_runs():
    spec = GridSpec(methods=["fp32", "psg", "slu", "gskip"], budgets=[Budget("energy", 0.5)], seeds=[0],
                    distributed={"nproc": 2})
    with pytest.raises(GridError) as e:
        run_grid(spec, _backend(), None, progress=lambda s: None)
    msg = str(e.value)
    assert msg.startswith("bad benchmark grid (nothing has run)")
    assert "budgets must be epochs" in msg
    assert "pass --no-random-controls --no-fewer-iters" in msg
    assert "psg: " in msg and "slu: " in msg and "gskip is a trainer policy" in msg
    assert "fp32:" not in msg
    spec = GridSpec(methods=["fp32", "slu"], budgets=[Budget("epochs", 1)], seeds=[0], random_controls=False,
                    fewer_iters_controls=False, distributed={"pipeline": 2, "pipe_schedule": "gpipe"})
    with pytest.raises(GridError, match="slu: --pipeline with slu"):
        run_grid(spec, _backend(), None, progress=lambda s: None)


def test_cli_flags_and_one_line_errors(tmp_path, capsys):
    assert main(["bench", "--methods", "fp32", "--budgets", "1", "--seeds", "0", "--nproc", "2",
                 "--pipeline", "3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nproc must be 3 or unset" in err and len(err.strip().splitlines()) == 1
    assert main(["bench", "--methods", "fp32,smd", "--budgets", "1", "--seeds", "0", "--nproc", "2",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--no-random-controls --no-fewer-iters" in err and "Traceback" not in err


def test_pipeline_grid_job_records_its_schedule(tmp_path):
    spec = GridSpec(methods=["fp32"], budgets=[Budget("epochs", 1)], seeds=[0], random_controls=False,
                    fewer_iters_controls=False, dataset="sat6synthetic", model="modified_alexnet",
                    distributed={"pipeline": 2, "pipe_schedule": "gpipe", "split": "paper", "timeout_s": 60})
    backend = TorchBackend(threads=1, verbose=False, base_config={"device": "cpu", "batch_size": 16, "max_batches": 3})
    (run,) = run_grid(spec, backend, tmp_path, progress=lambda s: None)
    assert (run.nproc, run.schedule, run.final.steps) == (2, "gpipe", 3)
    (back,) = read_csv(tmp_path / "runs.csv")
    assert (back.nproc, back.schedule) == (2, "gpipe")
