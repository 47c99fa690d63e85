"""benchmarks/bench_psg.py's arithmetic: its sums are the golden model's, its scores count
what they say."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from e2train.core import fixedpoint as fxp
from e2train.core import golden
from e2train.core.shapes import ConvShape

_spec = importlib.util.spec_from_file_location(
    "bench_psg", Path(__file__).resolve().parents[2] / "benchmarks" / "bench_psg.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("rule", fxp.SPLIT_RULES)
@pytest.mark.parametrize("unsigned, stride", [(True, 1), (False, 2)])
def test_sums_equal_golden_wgrad_terms(rule, unsigned, stride):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (5, 3, 6, 6)).astype(np.float32)
    if unsigned:
        x = np.abs(x)
    shape = ConvShape(5, 3, 6, 6, 4, 3, stride, 1)
    g = rng.normal(0, 1, shape.y_shape).astype(np.float32)
    case = dict(x=x, g=g, x_max=float(np.abs(x).max()) * 0.8, x_unsigned=unsigned, stride=stride, padding=1,
                groups=1, w_shape=(4, 3, 3, 3))
    xq, gq = bench.x_codes(case), bench.g_codes(case)
    xq[0, 0, 0, :3] = [8, 24, 40] if unsigned else [-8, -24, 8]     # ties of the x split
    gq[0, 0, 0, :3] = [-32, 96, -96]                                # ties of the g split
    g_msb, g_exact = bench.sums(case, xq, gq, rule)
    # golden.wgrad_terms splits by the contract's rule; equal to it for that rule, and the
    # exact sum for every rule
    want_msb, want_exact = golden.wgrad_terms(xq, gq, shape, np.arange(5))
    assert np.array_equal(g_exact, want_exact)
    if rule == fxp.SPLIT_RULE:
        assert np.array_equal(g_msb, want_msb)
    xh, gh = fxp.msb_split_x(xq, rule)[0], fxp.msb_split_g(gq, rule)[0]
    ref = np.einsum("nchwij,nohw->ocij", golden._windows(xh, shape), gh)
    assert np.array_equal(g_msb, ref)


def test_scores_count_agreement_decided_and_wrong_signs():
    ref = np.array([2.0, -1.0, 0.5, -4.0])
    sign = np.array([1, 1, -1, -1], np.int8)
    pred = np.array([True, True, False, False])
    agree, weighted, decided, n_pred, wrong, wrong_plus = bench.scores(sign, pred, ref)
    assert agree == 0.5 and weighted == pytest.approx(6 / 7.5) and decided == 0.5
    assert (n_pred, wrong, wrong_plus) == (2, 1, 1)


def _case(rng, stride=2, unsigned=True):
    shape = ConvShape(4, 3, 6, 6, 5, 3, stride, 1)
    x = rng.normal(0, 1, shape.x_shape).astype(np.float32)
    x = np.abs(x) if unsigned else x
    return dict(x=x, g=rng.normal(0, 1e-3, shape.y_shape).astype(np.float32), x_max=float(np.abs(x).max()) * 0.9,
                x_unsigned=unsigned, stride=(stride, stride), padding=(1, 1), groups=1, w_shape=(5, 3, 3, 3),
                model="resnet20", layer="layer2.0.conv1", point="late")


def test_a_case_file_round_trips_and_measures_as_the_case_it_was(tmp_path):
    """save_case's format is the one --cases reads: a case written and read back gives the
    same scores, bit for bit, under every rule."""
    rng = np.random.default_rng(7)
    cases = [_case(rng), _case(rng, stride=1, unsigned=False)]
    for i, c in enumerate(cases):
        bench.save_case(tmp_path / f"c{i}.npz", c)
    back = bench.read_cases(tmp_path)
    assert [c["layer"] for c in back] == ["layer2.0.conv1"] * 2 and back[1]["x_unsigned"] is False
    assert back[0]["stride"] == (2, 2) and back[0]["x_max"] == pytest.approx(cases[0]["x_max"])
    configs = {name: (rule, "batch_max") for name, rule in bench.RULES.items()}
    assert bench.evaluate(back, configs) == bench.evaluate(cases, configs)


def test_a_case_file_without_x_max_or_x_unsigned_takes_the_batch_max_and_the_sign_of_x(tmp_path):
    rng = np.random.default_rng(8)
    c = _case(rng)
    np.savez(tmp_path / "bare.npz", x=c["x"], g=c["g"], w_shape=c["w_shape"], stride=2, padding=1)
    got = bench.read_case(tmp_path / "bare.npz")
    assert got["x_max"] == float(np.abs(c["x"]).max()) and got["x_unsigned"] is True
    assert got["stride"] == (2, 2) and got["padding"] == (1, 1) and got["groups"] == 1


@pytest.mark.parametrize("change, says", [
    (lambda d: d.pop("g"), "no g"),
    (lambda d: d.update(w_shape=np.array([5, 4, 3, 3])), "gives outputs"),
    (lambda d: d.update(stride=np.array([1, 1])), "gives outputs"),
    (lambda d: d.update(x=d["x"][0]), "must be 4-D"),
    (lambda d: d["g"].__setitem__((0, 0, 0, 0), np.nan), "NaN"),
])
def test_a_bad_case_file_is_refused_with_its_name_and_cause(tmp_path, capsys, change, says):
    rng = np.random.default_rng(9)
    c = _case(rng)
    d = dict(x=c["x"], g=c["g"], w_shape=np.array(c["w_shape"]), stride=np.array(c["stride"]),
             padding=np.array(c["padding"]))
    change(d)
    np.savez(tmp_path / "bad.npz", **d)
    with pytest.raises(bench.CaseError, match=says) as e:
        bench.read_case(tmp_path / "bad.npz")
    assert "bad.npz" in str(e.value)
    # the command: one line, exit 2
    assert bench.main(["--cases", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "bad.npz" in err[0]


def test_a_folder_without_cases_is_one_line(tmp_path, capsys):
    assert bench.main(["--cases", str(tmp_path)]) == 2
    assert "no .npz case files" in capsys.readouterr().err


def test_the_operating_point_is_the_largest_beta_that_still_decides_the_goal_share():
    """scores rows are (agree, weighted, decided, ...); the point reads the curve, not one beta."""
    row = lambda agree, decided: (agree, agree, decided, 0, 0, 0)       # noqa: E731
    curve = {0.0: [row(0.998, 0.0)], 0.03: [row(0.990, 0.80), row(0.992, 0.76)],
             0.04: [row(0.994, 0.70), row(0.995, 0.66)], 0.05: [row(0.996, 0.64), row(0.996, 0.65)]}
    beta, agree, decided = bench.operating_point(curve)
    assert beta == 0.04 and agree == pytest.approx(0.9945) and decided == pytest.approx(0.68)
    table = bench.curve_table(curve)
    assert len(table) == 2 + 3                                           # beta 0 is not a point of the curve
    assert table[3].startswith("| 0.040 |") and table[3].endswith("| met |")
    assert table[2].endswith("| - |") and table[4].endswith("| - |")     # 0.991 agreement; 64.5% decided
    assert bench.operating_point({0.0: [row(0.998, 0.0)], 0.05: [row(0.996, 0.5)]}) is None


def test_the_curve_scores_the_same_cases_as_the_fixed_betas():
    """evaluate over the curve's betas gives, at beta 0.05, the fixed table's numbers."""
    rng = np.random.default_rng(11)
    cases = [_case(rng), _case(rng, stride=1, unsigned=False)]
    cfg = {"v2": (bench.RULES["v2 half away"], "batch_max")}
    fixed = bench.evaluate(cases, cfg)["v2"]
    curve = bench.evaluate(cases, cfg, bench.CURVE_BETAS)["v2"]
    assert 0.05 in bench.CURVE_BETAS and curve[0.05] == fixed[0.05] and curve[0.0] == fixed[0.0]
    decided = [np.mean([r[2] for r in curve[b]]) for b in bench.CURVE_BETAS]
    assert decided == sorted(decided, reverse=True)                      # a larger beta decides no more
