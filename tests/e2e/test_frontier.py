"""`e2train frontier`: the energy/accuracy sweep over settings and seeds on the device trainer.
Its table must say what the runs did (accuracy change and modelled energy ratio, from the
trainer's own figures), a rerun must train only what is missing, and bad input must end in
one line with the usage exit code."""
from __future__ import annotations

import json

import numpy as np
import pytest

from e2train.app import cli
from e2train.app.exit_codes import EXIT_USAGE
from e2train.core import csim

TINY = json.dumps({"epochs": 1, "model": "resnet8", "width": 4})
BACKEND = "csim" if csim.available() else "golden"


def _frontier(out, *extra):
    return cli.main(["frontier", "--seeds", "3", "--config", TINY, "--backend", BACKEND, "--jobs", "1",
                     "--out", str(out), *extra])


def test_the_table_gives_each_setting_its_accuracy_change_and_its_modelled_energy_ratio(tmp_path, capsys):
    from e2train.core.energy import ARM_OPS_PER_SECOND
    assert _frontier(tmp_path, "--setting", 'plain={"smd_energy_ratio": 0.5}',
                     "--arm-rates", f"{ARM_OPS_PER_SECOND},4e8") == 0
    runs = tmp_path / "runs"
    base = json.loads((runs / "baseline-s3.json").read_text())
    e2 = json.loads((runs / "plain-s3.json").read_text())
    from e2train.device.trainer import BASELINE_SWITCHES
    assert {k: base["config"][k] for k in BASELINE_SWITCHES} == BASELINE_SWITCHES
    assert not set(BASELINE_SWITCHES) & set(e2["config"])       # E²-Train: the switches' defaults
    assert e2["config"]["smd_energy_ratio"] == 0.5 and e2["config"]["seed"] == base["config"]["seed"] == 3
    rows = json.loads((tmp_path / "frontier.json").read_text())["rows"]
    assert [r["setting"] for r in rows] == ["plain"]
    # the trainer's own modelled energies, not the sweep's re-pricing of the tallies
    assert rows[0]["ratio_8bit"][0] == pytest.approx(e2["energy_j"] / base["energy_j"], rel=1e-9)
    delta = 100 * (e2["test_acc"] - base["test_acc"])
    assert rows[0]["deltas"] == [pytest.approx(delta)]
    assert rows[0]["within_bound"] == (delta >= -1.5)
    # re-priced at the rate it ran at, the ratio is the recorded one; a faster ARM, or none, is no dearer
    at = rows[0]["mean_ratio_8bit_at_arm_rates"]
    assert at[str(ARM_OPS_PER_SECOND)] == pytest.approx(rows[0]["mean_ratio_8bit"], rel=1e-9)
    assert rows[0]["mean_ratio_8bit_arm_free"] <= at["400000000.0"] <= rows[0]["mean_ratio_8bit"]
    # the floor: E²-Train's path with every gated block skipped at no cost, over the baseline's
    floor = rows[0]["mean_slu_floor"]
    assert floor == pytest.approx(e2["slu_floor_s"] / base["critical_path_s"], rel=1e-9)
    assert 0 < floor < e2["critical_path_s"] / base["critical_path_s"]
    out = capsys.readouterr().out
    assert f"| plain | {delta:+.2f} | {delta:+.2f} | {rows[0]['mean_ratio_8bit']:.3f} " in out
    line = next(ln for ln in out.splitlines() if ln.startswith("| plain |"))
    assert line.endswith(f"| {floor:.3f} | {delta:+.2f} (n=1) |")        # one seed: no interval
    assert rows[0]["mean_delta_ci95"] is None
    assert (tmp_path / "frontier.png").stat().st_size > 0 and "plain" in (tmp_path / "summary.md").read_text()


def test_a_rerun_trains_only_what_is_missing_or_changed(tmp_path, capsys):
    assert _frontier(tmp_path, "--setting", 'a={"smd_energy_ratio": 0.5}') == 0
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    capsys.readouterr()
    assert _frontier(tmp_path, "--setting", 'a={"smd_energy_ratio": 0.5}', "--setting", 'b={"slu": false}') == 0
    err = capsys.readouterr().err
    assert "3 runs, 2 already" in err and "1 to train" in err
    now = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    assert {k: now[k] for k in first} == first and "b-s3.json" in now
    # a setting whose settings changed under the same name is trained again
    assert _frontier(tmp_path, "--setting", 'a={"smd_energy_ratio": 0.58}') == 0
    assert "2 runs, 1 already" in capsys.readouterr().err
    assert json.loads((tmp_path / "runs" / "a-s3.json").read_text())["config"]["smd_energy_ratio"] == 0.58
    # another backend's runs are not this one's; a file cut short is trained again
    (tmp_path / "runs" / "baseline-s3.json").write_text('{"config": ')
    other = "golden" if BACKEND == "csim" else "csim"
    if other == "csim" and not csim.available():
        other = BACKEND
    assert cli.main(["frontier", "--seeds", "3", "--config", TINY, "--backend", other, "--jobs", "1",
                     "--out", str(tmp_path), "--setting", 'a={"smd_energy_ratio": 0.58}']) == 0
    err = capsys.readouterr().err
    assert ("2 runs, 0 already" if other != BACKEND else "2 runs, 1 already") in err


def test_runs_priced_by_another_model_are_trained_again(tmp_path, capsys, monkeypatch):
    """A saved run records the model it was priced by (a hash of the trainer's and the pricing's
    source): after the model changes, a rerun into the same folder trains it again and says why,
    rather than mixing old figures into the new table."""
    from e2train.app import frontier
    ONE = ("--setting", 'a={"smd_energy_ratio": 0.5}')
    assert _frontier(tmp_path, *ONE) == 0
    saved = json.loads((tmp_path / "runs" / "baseline-s3.json").read_text())
    assert saved["source"]["model"] == frontier.model_fingerprint()
    capsys.readouterr()
    assert _frontier(tmp_path, *ONE) == 0
    assert "2 runs, 2 already" in capsys.readouterr().err
    monkeypatch.setattr(frontier, "model_fingerprint", lambda: "another-model")
    assert _frontier(tmp_path, *ONE) == 0
    err = capsys.readouterr().err
    assert "2 runs, 0 already" in err and "2 of them saved under another model version" in err
    assert json.loads((tmp_path / "runs" / "baseline-s3.json").read_text())["source"]["model"] == "another-model"


def test_holdout_trains_on_the_rest_and_never_reads_the_test_set(tmp_path, capsys, monkeypatch):
    """--holdout F: every run trains on the training set less one held-out split and is scored
    on that split, so a setting can be chosen without the test digits; such runs are not mixed
    with test-set runs saved in the same folder."""
    from e2train.app import frontier
    from e2train.data import datasets
    from e2train.device import trainer as dtrainer
    xtr, ytr, xte, yte = datasets.load("digits")
    keep, held = datasets.holdout_indices(len(ytr), 0.25, frontier.HOLDOUT_SPLIT_SEED)
    assert len(held) == round(0.25 * len(ytr)) and not set(keep) & set(held)
    assert sorted([*keep, *held]) == list(range(len(ytr)))
    real, log = dtrainer.Trainer, tmp_path / "seen"
    log.mkdir()

    class Spy(real):          # the runs train in forked workers: what each was given goes to a file
        def __init__(self, cfg, data, backend, **kw):
            np.savez(log / f"{len(list(log.iterdir())):02d}.npz",
                     *(getattr(a, "standardised", lambda a=a: a)() for a in data))     # Pixels as their images
            super().__init__(cfg, data, backend, **kw)

    def seen():
        return [tuple(f[f"arr_{i}"] for i in range(4)) for f in map(np.load, sorted(log.iterdir()))]
    monkeypatch.setattr(dtrainer, "Trainer", Spy)
    ONE = ("--setting", 'a={"smd_energy_ratio": 0.5}')
    assert _frontier(tmp_path, *ONE, "--holdout", "0.25") == 0
    assert len(seen()) == 2
    for x, y, xe, ye in seen():
        assert np.array_equal(x, xtr[keep]) and np.array_equal(y, ytr[keep])
        assert np.array_equal(xe, xtr[held]) and np.array_equal(ye, ytr[held])
    out = capsys.readouterr()
    assert "held-out 0.25 acc" in out.err and "held-out 0.25 of the training set" in (tmp_path / "summary.md").read_text()
    assert json.loads((tmp_path / "frontier.json").read_text())["holdout"] == 0.25
    # the same settings scored on the test set are other runs: trained again, on the whole training set
    assert _frontier(tmp_path, *ONE) == 0
    assert "2 runs, 0 already" in capsys.readouterr().err
    assert len(seen()[2][0]) == len(xtr) and np.array_equal(seen()[2][2], xte)


def test_holdout_indices_are_seeded_and_refuse_an_empty_part():
    from e2train.data import datasets
    a, b = datasets.holdout_indices(50, 0.2, seed=1), datasets.holdout_indices(50, 0.2, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], datasets.holdout_indices(50, 0.2, seed=2)[1])
    assert list(a[0]) == sorted(a[0]) and list(a[1]) == sorted(a[1])
    for bad, says in ((0.0, "in \\(0, 1\\)"), (0.01, "non-empty")):
        with pytest.raises(ValueError, match=says):
            datasets.holdout_indices(50, bad)


@pytest.mark.parametrize("args, says", [
    (["--setting", "nojson"], "is not NAME=JSON"),
    (["--setting", "x={bad"], "--setting x is not valid JSON"),
    (["--setting", 'x={"smd_p": 7}'], "setting x: "),
    (["--setting", 'baseline={"smd_p": 0.5}'], "is taken"),
    (["--config", "[1]"], "--config must be a JSON object"),
    (["--seeds", "a,b"], "--seeds 'a,b' is not"),
    (["--arm-rates", "fast"], "--arm-rates 'fast' is not"),
    (["--arm-rates", "0"], "--arm-rates '0' is not"),
    (["--data", "cifar10", "--data-dir", "/nonexistent"], "cifar10 not found"),
    (["--holdout", "1.5"], "--holdout 1.5 is not a fraction"),
])
def test_bad_input_is_one_line_and_trains_nothing(tmp_path, capsys, args, says):
    code = cli.main(["frontier", "--out", str(tmp_path / "out"), "--config", TINY, *args])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_accuracy_change_has_its_t_interval_over_the_seeds(monkeypatch):
    """Five seeds' changes: the mean with Student's t half-width (bench.stats, 4 degrees of
    freedom: t = 2.776), the harness's rule for intervals across seeds."""
    from e2train.app import frontier
    from e2train.core.work import Work
    deltas = [0.83, -1.39, -1.39, -0.56, -0.56]
    work = lambda s: Work().add_time(s).to_dict()           # noqa: E731
    base = {"test_acc": 0.9, "critical_path_s": 1.0, "work": work(1.0)}
    results = {(frontier.BASELINE, s): base for s in range(5)}
    results.update({("x", s): {"test_acc": 0.9 + d / 100, "critical_path_s": 0.5, "work": work(0.5)}
                    for s, d in enumerate(deltas)})
    import statistics

    from e2train.core import energy
    # these tallies have no recorded steps to re-price at other ARM rates: the column is not this test's
    monkeypatch.setattr(energy, "arm_rate_table", lambda *a, **k: [{"ratio_to_8bit": 0.5}])
    row = frontier.summarise(results, ["x"], list(range(5)), 1.5, 0.25)[0]
    half = 2.7764451 * statistics.stdev(deltas) / 5 ** 0.5
    assert row["mean_delta"] == pytest.approx(-0.614, abs=1e-9) and row["mean_delta_ci95"] == pytest.approx(half, rel=1e-6)
    assert frontier.table_md([row], list(range(5)), 1.5, 0.25).splitlines()[-1].endswith(f"| -0.61 ± {half:.2f} |")
