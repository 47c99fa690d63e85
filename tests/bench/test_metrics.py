"""Time-to-accuracy, Pareto fronts and confidence intervals on hand-made records."""
from __future__ import annotations

import math

import pytest

from e2train.bench.metrics import Point, pareto_front, seed_curve, time_to_accuracy, tta_over_seeds
from e2train.bench.stats import t_interval


def test_tta_first_epoch_at_or_above_target_no_interpolation(make_run):
    r = make_run("m", 0, [0.5, 0.79, 0.8, 0.95], wall_per_ep=2.0, joules_per_ep=3.0)
    assert time_to_accuracy(r, 0.8) == 6.0          # epoch 3 reaches exactly the target
    assert time_to_accuracy(r, 0.8, "energy_j") == 9.0
    assert time_to_accuracy(r, 0.5) == 2.0
    assert time_to_accuracy(r, 0.81) == 8.0         # not 6.x: no interpolation
    assert math.isinf(time_to_accuracy(r, 0.99))    # never reached


def test_tta_after_a_dip_counts_the_first_crossing(make_run):
    r = make_run("m", 0, [0.9, 0.6, 0.95])
    assert time_to_accuracy(r, 0.85) == 1.0


def test_tta_rejects_unknown_axis(make_run):
    with pytest.raises(ValueError, match="axis"):
        time_to_accuracy(make_run("m", 0, [0.5]), 0.5, "flops")


def test_tta_median_over_seeds_counts_unreached_as_inf(make_run):
    a = make_run("m", 0, [0.5, 0.9])         # 2.0
    b = make_run("m", 1, [0.9, 0.9])         # 1.0
    c = make_run("m", 2, [0.5, 0.6])         # inf
    s = tta_over_seeds([a, b, c], 0.85)
    assert (s.median, s.reached, s.n) == (2.0, 2, 3)
    assert s.fmt() == "2.0 (2/3)"
    s2 = tta_over_seeds([a, c, make_run("m", 3, [0.1, 0.2])], 0.85)
    assert math.isinf(s2.median) and s2.reached == 1
    assert s2.fmt() == "not reached (1/3)"
    # even n: the two middle values are averaged, so one unreached of two is "not reached"
    assert math.isinf(tta_over_seeds([a, c], 0.85).median)
    assert tta_over_seeds([a, b], 0.85).median == 1.5


def test_pareto_front_basic_dominance():
    pts = [Point(1, 0.5, "a"), Point(2, 0.7, "b"), Point(3, 0.6, "c"),   # c dominated by b
           Point(4, 0.9, "d"), Point(0.5, 0.4, "e"), Point(5, 0.9, "f")]  # f dominated by d (tie acc)
    assert [p.label for p in pareto_front(pts)] == ["e", "a", "b", "d"]


def test_pareto_front_ties():
    # same cost: only the most accurate survives; exact duplicates both survive
    pts = [Point(1, 0.5, "lo"), Point(1, 0.6, "hi"), Point(1, 0.6, "hi2"), Point(2, 0.6, "costly")]
    assert [p.label for p in pareto_front(pts)] == ["hi", "hi2"]


def test_pareto_front_matches_brute_force():
    import random
    rng = random.Random(0)
    for _ in range(50):
        pts = [Point(rng.randint(0, 6), rng.randint(0, 6) / 6, str(i)) for i in range(rng.randint(0, 15))]
        brute = {p.label for p in pts if not any(
            q.cost <= p.cost and q.acc >= p.acc and (q.cost < p.cost or q.acc > p.acc) for q in pts)}
        assert {p.label for p in pareto_front(pts)} == brute


def test_t_interval_known_values():
    # n=4, mean 2.5, s = sqrt(5/3); t_{0.975,3} = 3.182446305
    iv = t_interval([1, 2, 3, 4])
    assert iv.mean == 2.5
    assert iv.half == pytest.approx(3.182446305 * math.sqrt(5 / 3) / 2, rel=1e-8)
    # n=2: t_{0.975,1} = 12.70620474
    iv2 = t_interval([0.9, 1.0])
    assert iv2.half == pytest.approx(12.70620474 * math.sqrt(0.005) / math.sqrt(2), rel=1e-8)
    assert t_interval([3, 3, 3]).half == 0.0
    assert t_interval([1, 2, 3, 4], level=0.9).half < iv.half


def test_t_interval_edge_cases():
    one = t_interval([0.7])
    assert one.n == 1 and math.isnan(one.half) and one.fmt(100) == "70.00 (n=1)"
    assert t_interval([]).fmt() == "-"
    with pytest.raises(ValueError, match="NaN"):
        t_interval([1.0, math.nan])
    with pytest.raises(ValueError, match="level"):
        t_interval([1.0, 2.0], level=1.5)


def test_t_interval_covers_at_nominal_rate():
    # Coverage check on normal samples: the 95% interval should contain the true mean ~95%
    # of the time (binomial sd over 2000 trials ~0.5%; 3 sd tolerance).
    import numpy as np
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(2000):
        iv = t_interval(rng.normal(0.9, 0.02, size=3))
        hits += iv.lo <= 0.9 <= iv.hi
    assert abs(hits / 2000 - 0.95) < 0.015


def test_seed_curve_cuts_at_shortest_run(make_run):
    a = make_run("m", 0, [0.5, 0.6, 0.7])
    b = make_run("m", 1, [0.7, 0.8])
    c = seed_curve([a, b])
    assert [p.epoch for p in c] == [1, 2]
    assert c[1].acc.mean == pytest.approx(0.7)
    assert c[1].energy_j == 20.0
