"""runs.csv round trip, summary.md contents and the PNG plots, on synthetic records."""
from __future__ import annotations

import math

import pytest

from e2train.bench.plots import plot_accuracy
from e2train.bench.records import Budget, RunRecord, read_csv, write_csv
from e2train.bench.report import fronts_by_method, group_arms, summary_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_csv_round_trip(tmp_path, synthetic_runs):
    p = write_csv(synthetic_runs, tmp_path / "runs.csv")
    back = read_csv(p)
    assert len(back) == len(synthetic_runs)
    by_key = {(r.arm, r.seed): r for r in back}
    for r in synthetic_runs:
        b = by_key[(r.arm, r.seed)]
        assert (b.kind, b.control_of, b.budget, b.skip_unit, b.energy_source) == \
               (r.kind, r.control_of, r.budget, r.skip_unit, r.energy_source)
        assert [e.acc for e in b.epochs] == pytest.approx([e.acc for e in r.epochs])
        assert [e.energy_j for e in b.epochs] == pytest.approx([e.energy_j for e in r.epochs])
    header = p.read_text().splitlines()[0]
    assert "energy_source" in header
    assert len(p.read_text().splitlines()) == 1 + sum(len(r.epochs) for r in synthetic_runs)


def test_csv_malformed_rows_name_the_line(tmp_path, synthetic_runs):
    p = write_csv(synthetic_runs, tmp_path / "runs.csv")
    lines = p.read_text().splitlines()
    cols = lines[0].split(",")
    cells = lines[3].split(",")
    cells[cols.index("acc")] = "oops"           # line 4 of the file (header is line 1)
    lines[3] = ",".join(cells)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"runs.csv:4: malformed"):
        read_csv(p)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_csv(tmp_path / "other.csv")


def test_budget_parse_and_errors():
    assert Budget.parse("10") == Budget("epochs", 10)
    assert Budget.parse("3ep") == Budget("epochs", 3)
    assert Budget.parse("250J") == Budget("energy", 250)
    for bad in ("ten", "-3", "2.5", "0J", "nanJ"):
        with pytest.raises(ValueError, match="budget"):
            Budget.parse(bad)


def test_control_must_name_its_method():
    with pytest.raises(ValueError, match="control_of"):
        RunRecord(method="random-skip", seed=0, budget=Budget("epochs", 1), kind="random-control")
    with pytest.raises(ValueError, match="energy source"):
        RunRecord(method="m", seed=0, budget=Budget("epochs", 1), energy_source="guessed")


def test_summary_table(synthetic_runs):
    """Paper 000, guideline 4: wall clock is the first column, energy beside it."""
    md = summary_markdown(synthetic_runs, targets=[0.8, 0.99])
    rows = [l for l in md.splitlines() if l.startswith("| ")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    assert head[:14] == ["wall-clock s", "energy (modelled) J", "method", "control-of", "budget", "seeds",
                         "skip ratio", "control target -> realised", "clock/modelled saving", "peak mem MiB",
                         "final acc % (± 95% CI)", "final test acc %", "steps", "time-to-80% s"]
    body = {r.split("|")[3].strip() + "/" + r.split("|")[4].strip(): [c.strip() for c in r.strip("|").split("|")]
            for r in rows[1:]}
    fp32 = body["fp32/-"]
    assert fp32[0] == "3.0" and fp32[1] == "30"
    # final acc of fp32: 0.90, 0.92, 0.88 -> mean 90.00, half = t(2) * 0.02 / sqrt 3 = 4.97
    assert fp32[10] == "90.00 ± 4.97"
    assert fp32[12] == "30"                       # optimizer steps
    # time-to-80%: seeds reach at ep 2, 2, 3 (0.78 < 0.8) -> median 2.0 s; energy 20 J
    assert fp32[13] == "2.0 (3/3)" and fp32[14] == "20.000 (3/3)"
    assert fp32[15] == "not reached (0/3)"
    assert fp32[8] == "-"                         # the baseline has no saving against itself
    ctl = body["random-skip/smd"]
    assert ctl[6] == "49.0% batches"
    assert "modelled" in md and "Pareto front" in md


def test_saving_ratio_control_ratio_and_verdict(synthetic_runs):
    """Paper 000: measured vs theoretical saving per method, target vs realised ratio per
    control, polynomial fits, and a verdict against the controls on the Pareto front."""
    from e2train.bench.report import beats, control_ratio, poly_fit, saving_ratio
    from e2train.bench.metrics import Point
    arms = {a.name: a for a in group_arms(synthetic_runs)}
    base, smd, ctl = arms["fp32"], arms["smd"], arms["random-skip[smd]"]
    sw = 1 - smd.mean_final("wall_s") / base.mean_final("wall_s")
    se = 1 - smd.mean_final("energy_j") / base.mean_final("energy_j")
    assert saving_ratio(smd, base).startswith(f"{sw / se:.2f}")
    for r in ctl.runs:
        r.target_skip_ratio = 0.5
    assert control_ratio(ctl).startswith("50.0% -> 49.0% batches (2.0% off)")
    line = [p for p in (0.0, 1.0, 2.0, 3.0)]
    up = [Point(c, 0.5 + 0.1 * c) for c in line]
    down = [Point(c, 0.4 + 0.1 * c) for c in line]
    assert beats(up, down) is True and beats(down, up) is False
    # a control done before the method's first checkpoint, at the method's best accuracy
    late = [Point(10.0, 0.9), Point(11.0, 0.95)]
    assert beats(late, [Point(1.0, 0.9), Point(2.0, 0.95)]) is False
    assert beats(up, []) is None
    md = summary_markdown(synthetic_runs, targets=[0.8])
    assert "## Verdict per method" in md and "**smd** beats its controls: **yes**" in md   # 0.70 vs 0.68, 0.85 vs 0.84 at equal times
    assert poly_fit(up) == pytest.approx([0.0, 0.1, 0.5], abs=1e-9)


def test_fronts_per_method(synthetic_runs):
    fronts = fronts_by_method(group_arms(synthetic_runs), "energy_j")
    assert set(fronts) == {"fp32", "smd", "random-skip[smd]"}
    # each arm's accuracy rises every epoch, so every checkpoint is on its own front
    assert [p.cost for p in fronts["fp32"]] == [10, 20, 30]


def test_mixing_measured_and_modelled_is_refused(synthetic_runs):
    synthetic_runs[0].energy_source = "measured"
    with pytest.raises(ValueError, match="mixes measured and modelled"):
        group_arms(synthetic_runs)


@pytest.mark.parametrize("axis", ["energy_j", "wall_s"])
def test_plots_are_nonempty_pngs(tmp_path, synthetic_runs, axis):
    p = plot_accuracy(synthetic_runs, axis, tmp_path / f"acc_vs_{axis}.png")
    data = p.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    # decode it and check that something other than background was drawn
    import matplotlib.image as mpimg
    img = mpimg.imread(p)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert (img[..., :3] < 0.5).any() and (img[..., :3] > 0.9).any()
    assert not math.isnan(float(img.std())) and float(img.std()) > 0.05


def test_headline_leads_with_cost_to_target(synthetic_runs):
    """An unconverged budget must not read as an accuracy loss: with a headline target the
    summary opens with each method's energy and time to reach it."""
    md = summary_markdown(synthetic_runs, targets=[0.8], headline_target=0.8)
    head = md.index("## Headline: cost to reach 80% accuracy")
    assert head < md.index("| wall-clock s |")
    rows = [l for l in md[head:].splitlines() if l.startswith("| fp32 ") or l.startswith("| smd ")]
    # fp32 reaches 80% at epoch 2 (20 J, 2.0 s) on seeds 0, 1 and epoch 3 on seed 2 -> median 20 J
    assert rows[0].split("|")[2].strip() == "20.000 (3/3)"
    assert not any("random-skip" in l for l in md[head:md.index("| wall-clock s |")].splitlines())


def _with_parts(runs, platform="horowitz45"):
    """The synthetic runs with their energy split in parts (compute 60%, on-chip 10%, DRAM 30%)."""
    for r in runs:
        r.energy_platform = platform
        for e in r.epochs:
            e.energy_parts = {"compute": 0.6 * e.energy_j, "on_chip": 0.1 * e.energy_j,
                              "dram": 0.3 * e.energy_j, "static": 0.0}
    return runs


def test_summary_energy_parts_name_platform_and_baseline(synthetic_runs):
    md = summary_markdown(_with_parts(synthetic_runs), targets=[0.8])
    sec = md.split("## Energy in parts (modelled)")[1].split("##")[0]
    smd = next(l for l in sec.splitlines() if l.startswith("- **smd**"))
    # smd: 15 J over 3 epochs, fp32 30 J: total 0.5 of fp32's, compute 0.3, on-chip 0.05, DRAM 0.15
    assert "compute 9 J + on-chip 1.5 J + DRAM 4.5 J + static 0 J = 15 J (modelled, platform horowitz45)" in smd
    assert "over fp32: 0.500 = compute 0.300 + on-chip 0.050 + DRAM 0.150 + static 0.000 of the fp32's total" in smd
    fp32 = next(l for l in sec.splitlines() if l.startswith("- **fp32**"))
    assert "over fp32" not in fp32                       # the baseline is not compared with itself


def test_summary_without_parts_has_no_parts_section(synthetic_runs):
    assert "Energy in parts" not in summary_markdown(synthetic_runs, targets=[0.8])


def test_csv_round_trip_keeps_energy_parts(tmp_path, synthetic_runs):
    runs = _with_parts(synthetic_runs, "xc7z020")
    back = read_csv(write_csv(runs, tmp_path / "runs.csv"))
    by_key = {(r.arm, r.seed): r for r in back}
    for r in runs:
        b = by_key[(r.arm, r.seed)]
        assert b.energy_platform == "xc7z020"
        for eb, er in zip(b.epochs, r.epochs):
            assert eb.energy_parts == pytest.approx(er.energy_parts)
