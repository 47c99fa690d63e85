"""`e2train bench` argument handling: bad grids fail before training, presets, report-only."""
from __future__ import annotations

import pytest

from e2train.bench.records import read_csv, write_csv
from e2train.app.cli import main


def test_bad_grid_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "never"
    rc = main(["bench", "--methods", "fp32,smdd", "--budgets", "3,3", "--seeds", "0,0", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown method 'smdd'" in err and "registered methods:" in err and "smd" in err
    assert "budget is listed twice" in err and "seed is listed twice" in err
    assert "nothing has run" in err
    assert not out.exists()


@pytest.mark.parametrize("argv, msg", [
    (["--budgets", "ten"], "bad budget 'ten'"),
    (["--seeds", "a,b"], "--seeds"),
    (["--targets", "120"], "--targets"),
    (["--methods", "fp32", "--limit-train", "0"], "--limit-train must be >= 1"),
    (["--methods", "fp32", "--dataset", "svhn"], "unknown data set 'svhn'"),
    ([], "no methods"),
    (["--methods", "smd", "--baseline", "smd"], "the fewer-iterations controls need one of fp32"),
    (["--methods", "fp32", "--dataset", "cifar10", "--data-dir", "/nonexistent"], "cannot be loaded"),
])
def test_bad_options_explain_themselves(argv, msg, capsys):
    args = ["bench", *argv] if "--methods" in argv or not argv else ["bench", "--methods", "fp32", *argv]
    assert main(args) == 2
    assert msg in capsys.readouterr().err


def test_presets_validate_against_the_registries(capsys):
    # both presets name only registered methods (the methods preset fails clearly otherwise)
    from argparse import Namespace

    from e2train.bench.cli import build_spec
    from e2train.bench.runner import validate_for
    from e2train.bench.torch_backend import TorchBackend
    be = TorchBackend()
    for preset in ("e2train", "methods"):
        ns = Namespace(preset=preset, methods=None, budgets=None, seeds=None, targets=None, dataset=None,
                       model=None, baseline=None, no_random_controls=False, no_fewer_iters=False, ci_level=0.95)
        spec = build_spec(ns)
        be.require_methods(spec.methods, f"--preset {preset}")
        validate_for(spec, be)
    from e2train.bench.grid import GridError
    with pytest.raises(GridError, match="not registered in e2train.torch.methods: nosuch"):
        be.require_methods(["fp32", "nosuch"], "--preset methods")


def test_report_only_rewrites_outputs(tmp_path, synthetic_runs, capsys):
    synthetic_runs[0].epochs[-1].skips = {"batches": 0.5, "block-samples": 0.25}
    csv_path = write_csv(synthetic_runs, tmp_path / "runs.csv")
    back = read_csv(csv_path)
    assert back[0].epochs[-1].skips == {"batches": 0.5, "block-samples": 0.25}
    assert main(["bench", "--report-only", str(csv_path), "--targets", "85"]) == 0
    md = (tmp_path / "summary.md").read_text()
    assert "time-to-85% s" in md
    assert (tmp_path / "acc_vs_energy.png").stat().st_size > 10_000
    (tmp_path / "bad.csv").write_text("method,kind\nx,y\n")
    assert main(["bench", "--report-only", str(tmp_path / "bad.csv")]) == 2
    assert "missing columns" in capsys.readouterr().err
