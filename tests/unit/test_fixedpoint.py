"""Unit tests of the fixed-point contract (e2train.core.fixedpoint)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2train.core import fixedpoint as fp
from e2train.core.fixedpoint import INT8, INT16, UINT8, Dyadic


# --- dyadic numbers -------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_dyadic_is_nearest_with_15_bit_mantissa(r):
    d = Dyadic.from_float(r)
    assert 1 << (fp.MANT_BITS - 1) <= d.m < 1 << fp.MANT_BITS or d.s == 0
    # within half an LSB of a 15-bit mantissa: relative error <= 2**-15
    assert abs(d.value - r) <= r * 2.0**-fp.MANT_BITS
    if d.s > 0:
        assert abs(d.value - r) <= math.ldexp(1.0, -d.s) / 2


def test_dyadic_exact_and_rounding_cases():
    assert Dyadic.from_float(1.0) == Dyadic(1 << 14, 14)
    assert Dyadic.from_float(0.75).value == 0.75
    # mantissa rounding carries into a new bit: 1 - 2**-17 rounds up to 1.0
    assert Dyadic.from_float(1 - 2**-17) == Dyadic(1 << 14, 14)
    # large values keep s = 0 with a wider mantissa
    assert Dyadic.from_float(2.0**20) == Dyadic(1 << 20, 0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and > 0"):
            Dyadic.from_float(bad)
    with pytest.raises(ValueError, match="too large"):
        Dyadic.from_float(2.0**40)
    with pytest.raises(ValueError, match="too small"):
        Dyadic.from_float(2.0**-80)


def test_scale_for_maps_max_onto_top_code():
    s = fp.scale_for(3.0, INT8)
    q = fp.quantize(np.array([3.0, -3.0, 1e9]), s, INT8)
    assert q.tolist() == [127, -127, 127]
    assert fp.scale_for(0.0, INT8) == fp.ONE
    with pytest.raises(ValueError, match="non-finite"):
        fp.scale_for(float("nan"), INT8)


def test_quantize_rounds_half_up_and_saturates():
    s = Dyadic(1, 0)
    assert fp.quantize(np.array([0.5, -0.5, 1.5, -1.5, 300, -300, np.nan]), s, INT8).tolist() == \
        [1, 0, 2, -1, 127, -128, 0]
    assert fp.quantize(np.array([-3.0, 254.5]), s, UINT8).tolist() == [0, 255]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, (1 << 15) - 1), st.integers(0, 60), st.integers(0, 2**32 - 1))
def test_quantize_divides_once_with_the_bits_of_the_contracts_two_steps(m, s, seed):
    """floor(x * 2^s / m + 1/2): one divide by m * 2^-s rounds the same real once, as the
    contract's exact multiply by 2^s and divide by m do: the same codes, for values across the
    float32 range, ties, zeros of both signs and infinities."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(300) * np.ldexp(1.0, int(rng.integers(-40, 40)))).astype(np.float32)
    sc = Dyadic(m, s)
    x[:6] = (0.0, -0.0, np.inf, -np.inf, np.float32(sc.value * 3.5), np.float32(-sc.value * 2.5))
    two = np.multiply(x, math.ldexp(1.0, s), dtype=np.float64)
    np.divide(two, m, out=two)
    want = np.clip(np.floor(two + 0.5), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(fp.quantize(x, sc, INT8), want)
    np.testing.assert_array_equal(fp.quantize(x[6:], sc, INT8, finite=True), want[6:])


def test_quantize_keeps_the_two_steps_where_the_scale_is_not_a_float64():
    sc = Dyadic((1 << 60) + 1, 0)                 # a mantissa past float64's 53 bits: not exact
    assert math.ldexp(sc.value, sc.s) != sc.m
    x = np.array([3e20, -7.5e19, 0.0, 1e30], np.float64)
    two = np.divide(np.multiply(x, 1.0), sc.m)
    want = np.clip(np.floor(two + 0.5), -32768, 32767).astype(np.int16)
    assert np.abs(want).max() > 0                 # the codes are not all zero: the case means something
    np.testing.assert_array_equal(fp.quantize(x, sc, INT16), want)


# --- requantisation -------------------------------------------------------------------

def test_requantize_round_half_up_worked_example():
    # M/2**S = 3/8: 4*3/8 = 1.5 -> 2; -4*3/8 = -1.5 -> -1 (half up, not away from zero)
    m = Dyadic(3, 3)
    acc = np.array([4, -4, 5, -5, 0])
    assert fp.requantize(acc, m, INT8).tolist() == [2, -1, 2, -2, 0]


@settings(max_examples=200, deadline=None)
@given(st.integers(-(1 << 40), 1 << 40), st.integers(0, (1 << 15) - 1), st.integers(0, 40))
def test_requantize_matches_exact_rational(acc, m, s):
    got = int(fp.requantize(np.array([acc]), Dyadic(m, s), INT16)[0])
    # Exact rational rounding, half up: floor(acc*m/2**s + 1/2), in Python integers.
    want = (2 * acc * m + (1 << s)) // (1 << (s + 1))
    assert got == min(max(want, -32768), 32767)


def test_requantize_saturates_and_refuses_overflow():
    assert fp.requantize(np.array([10**6, -10**6]), Dyadic(1, 0), INT8).tolist() == [127, -128]
    assert fp.requantize(np.array([10**6, -10**6]), Dyadic(1, 0), UINT8).tolist() == [255, 0]
    with pytest.raises(OverflowError, match="48 bits"):
        fp.requantize(np.array([1 << 47]), Dyadic(1, 0), INT16)
    with pytest.raises(OverflowError, match="62 bits"):
        fp.requantize(np.array([1 << 40]), Dyadic(1 << 22, 0), INT16)
    with pytest.raises(ValueError, match="out of range"):
        fp.requantize(np.array([1]), Dyadic(1, 63), INT16)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, (1 << 30) - 1), st.integers(1, (1 << 15) - 1), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_requantize_within_its_range_stores_by_the_shift_the_clipped_codes(peak, m, s, seed):
    """Where ``peak`` shows every code inside the format (``requantize_fits``), the shift stores
    into the codes (three passes): the same codes as the clipped path; a code just past the
    range is not 'fitted'."""
    mult = Dyadic(m, s)
    acc = np.random.default_rng(seed).integers(-peak, peak + 1, 257).astype(np.int64)
    acc[:2] = (peak, -peak)
    r = 1 << (s - 1)
    for fmt in (INT8, INT16, UINT8):
        fits = fp.requantize_fits(peak, mult, fmt)
        assert fits == (fmt.lo <= (-peak * m + r) >> s and (peak * m + r) >> s <= fmt.hi)
        want = fmt.saturate(fp.shift_round_up(acc * m, s))
        out = np.empty(acc.shape, fmt.dtype)
        got = fp.requantize(acc, mult, fmt, out, peak=peak)
        assert got is out and np.array_equal(got, want)
        if fits:       # the extremes are +-peak's codes: inside the range
            assert fmt.lo <= int(want.min()) and int(want.max()) <= fmt.hi
    # the boundary: 127 fits int8, 128 does not (and is clipped)
    assert fp.requantize_fits(127, Dyadic(1, 1), INT8) and not fp.requantize_fits(255, Dyadic(1, 1), INT8)
    assert fp.requantize(np.array([255, -255]), Dyadic(1, 1), INT8, peak=255).tolist() == [127, -127]


# --- MSB split ------------------------------------------------------------------------

def test_msb_split_x_tables_and_exactness():
    u = np.arange(256, dtype=np.uint8)
    h, l = fp.msb_split_x(u)
    assert (16 * h + l == u.astype(np.int64)).all()
    assert h.min() == 0 and h.max() == 15                       # saturated top code 15
    assert h[247] == 15 and l[247] == 7                          # (247+8)>>4 = 15
    assert h[248] == 15 and l[248] == 8                          # would round to 16: saturates
    assert h[255] == 15 and l[255] == 15
    assert h[7] == 0 and h[8] == 1                               # rounding, not truncation
    s = np.arange(-128, 128).astype(np.int8)
    h, l = fp.msb_split_x(s)
    assert (16 * h + l == s.astype(np.int64)).all()
    assert h.min() == -8 and h.max() == 7                        # int8 top code 7
    assert h[s == 120][0] == 7 and l[s == 120][0] == 8
    assert h[s == -128][0] == -8 and l[s == -128][0] == 0
    with pytest.raises(TypeError, match="int8 or uint8"):
        fp.msb_split_x(np.zeros(3, np.int16))


def test_msb_split_g_tables_and_exactness():
    g = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    h, l = fp.msb_split_g(g)
    assert (64 * h + l == g.astype(np.int64)).all()
    assert h.min() == -512 and h.max() == 511
    gi = g.astype(np.int64)
    assert h[gi == 32767][0] == 511 and l[gi == 32767][0] == 63   # saturated top code
    assert h[gi == -32768][0] == -512
    assert h[gi == -31][0] == 0 and h[gi == -33][0] == -1         # round to nearest
    assert h[gi == 31][0] == 0 and h[gi == 32][0] == 1
    with pytest.raises(TypeError, match="int16"):
        fp.msb_split_g(np.zeros(3, np.int8))


def test_msb_split_ties_go_away_from_zero():
    """Contract v2: every tie g = 64k + 32 and x = 16k + 8 rounds away from zero. Each
    assertion on a negative tie fails under v1's round half up."""
    k = np.arange(-512, 512)
    g = (64 * k + 32).astype(np.int16)                    # +-32, +-96, ..., 32736 > 0 > -32736
    h, l = fp.msb_split_g(g)
    assert (64 * h + l == g.astype(np.int64)).all()
    want = np.where(k >= 0, k + 1, k)                     # |g_h| = (|g| + 32) >> 6
    assert (h == np.clip(want, -512, 511)).all()
    assert h[g == -32][0] == -1 and l[g == -32][0] == 32  # v1 gave 0
    assert h[g == -96][0] == -2 and h[g == 96][0] == 2
    assert h[g == -32736][0] == -512 and l[g == -32736][0] == 32
    # the split is odd-symmetric: g_h(-g) = -g_h(g) wherever neither end saturates
    gs = np.arange(-32735, 32736, dtype=np.int64).astype(np.int16)
    assert (fp.msb_split_g(gs)[0] == -fp.msb_split_g((-gs.astype(np.int64)).astype(np.int16))[0]).all()
    xs = np.arange(-120, 121, 16).astype(np.int8)         # int8 ties -120, -104, ..., 120
    h, l = fp.msb_split_x(xs)
    xi = xs.astype(np.int64)
    assert (16 * h + l == xi).all()
    assert (h == np.minimum(np.sign(xi) * ((np.abs(xi) + 8) >> 4), 7)).all()
    assert h[xs == -8][0] == -1 and h[xs == 8][0] == 1 and h[xs == -120][0] == -8
    u = np.arange(8, 256, 16).astype(np.uint8)            # uint8 ties: half away = half up
    assert (fp.msb_split_x(u)[0] == np.minimum((u.astype(np.int64) + 8) >> 4, 15)).all()


def test_split_rules_differ_only_at_ties():
    g = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    gi = g.astype(np.int64)
    tie = (gi & 63) == 32
    up, away, even = (fp.msb_split_g(g, r)[0] for r in fp.SPLIT_RULES)
    assert fp.SPLIT_RULE == "half_away" and fp.CONTRACT_VERSION == 2
    assert (up[~tie] == away[~tie]).all() and (up[~tie] == even[~tie]).all()
    assert (up[tie] == np.minimum((gi[tie] + 32) >> 6, 511)).all()
    assert (away[tie] == np.clip(np.sign(gi[tie]) * ((np.abs(gi[tie]) + 32) >> 6), -512, 511)).all()
    inner = tie & (gi < 32736)                            # 32736 rounds to 512: saturates
    assert (even[inner] % 2 == 0).all()
    assert (np.abs(even[inner] * 64 - gi[inner]) == 32).all()
    with pytest.raises(ValueError, match="unknown MSB split rule"):
        fp.msb_split_g(g, "half_down")


def test_split_product_decomposition_is_exact():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, 10000).astype(np.uint8)
    g = rng.integers(-32768, 32768, 10000).astype(np.int16)
    xs = rng.integers(-128, 128, 10000).astype(np.int8)
    for xv in (x, xs):
        for rule in fp.SPLIT_RULES:
            xh, xl = fp.msb_split_x(xv, rule)
            gh, gl = fp.msb_split_g(g, rule)
            lhs = xv.astype(np.int64) * g.astype(np.int64)
            assert (1024 * xh * gh + 16 * xh * gl + 64 * xl * gh + xl * gl == lhs).all()


# --- PSG and update scalars -------------------------------------------------------------

def test_beta_to_fixed():
    assert fp.beta_to_fixed(1.0) == 65536
    assert fp.beta_to_fixed(0.05) == 3277
    assert fp.beta_to_fixed(1e-9) == 1          # beta -> 0 never becomes "predictor off"
    for bad in (0.0, -0.5, 1.0001, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"PSG beta must be in \(0, 1\]"):
            fp.beta_to_fixed(bad)


def test_decay_and_lr_to_fixed():
    assert fp.decay_to_fixed(0.1, 5e-4) == round(5e-5 * 2**30)
    assert fp.decay_to_fixed(0.0, 0.0) == 0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        fp.decay_to_fixed(2.0, 0.6)
    assert fp.lr_to_fixed(1e-3, 20) == round(1e-3 * 2**20)
    assert fp.lr_to_fixed(1e-12, 10) == 1       # a positive lr always moves the weights
    assert fp.lr_to_fixed(0.0, 10) == 0
    with pytest.raises(ValueError, match="finite and >= 0"):
        fp.lr_to_fixed(-1.0, 10)
    with pytest.raises(ValueError, match="too large"):
        fp.lr_to_fixed(1.0, 30)


def test_master_frac_bits_and_weight_codes():
    f = fp.master_frac_bits(0.5)                # 0.5 < 2**0 -> F = 30 - 6 - 0
    assert f == 24
    w = np.array([-0.5, -0.25, 0.0, 0.1, 0.5]) * 2**f
    wm = w.astype(np.int32)
    codes, scale = fp.weight_codes(wm, f)
    assert codes.dtype == np.int8
    assert codes.tolist() == [-127, -63, 0, 25, 127]            # full range; -63.5 rounds half up
    assert abs(scale.value - 0.5 / 127) < 0.5 / 127 * 2**-14
    z, zs = fp.weight_codes(np.zeros((2, 2), np.int32), f)
    assert (z == 0).all() and zs == fp.ONE
    with pytest.raises(ValueError, match="cannot choose master weight format"):
        fp.master_frac_bits(0.0)


def test_activation_scale_statistic():
    maxima = np.array([3.0, 1.0, 2.0, 1e-8], np.float32)
    assert fp.act_batch_max(maxima, "batch_max") == 3.0
    want = (3.0 + 1.0 + 2.0 + float(np.float32(1e-8))) / 4
    assert fp.act_batch_max(maxima, "mean_sample_max") == want
    # the exact sum: the same float64 in any order (what lets torch and numpy agree)
    rng = np.random.default_rng(0)
    m = rng.lognormal(0, 3, 4096).astype(np.float32)
    assert fp.act_batch_max(m, "mean_sample_max") == fp.act_batch_max(m[::-1], "mean_sample_max") \
        == fp.act_batch_max(rng.permutation(m), "mean_sample_max")
    assert fp.act_batch_max([], "mean_sample_max") == 0.0
    assert fp.ACT_SCALE_DEFAULT in fp.ACT_SCALE_POLICIES
    with pytest.raises(ValueError, match="batch_max, mean_sample_max"):
        fp.act_batch_max(maxima, "median")
