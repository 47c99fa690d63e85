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
