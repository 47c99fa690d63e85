"""The C simulation of the three kernels against the golden models: bit-exact equality."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2train.core import csim, golden
from e2train.core.fixedpoint import Dyadic
from e2train.core.shapes import ConvShape, ShapeError

SETTINGS = settings(max_examples=int(os.environ.get("E2TRAIN_FUZZ_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def conv_shapes(draw):
    k = draw(st.sampled_from((1, 3)))
    stride = draw(st.sampled_from((1, 2)))
    pad = draw(st.integers(0, k // 2))
    n = draw(st.integers(1, 3))
    ci, co = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    try:
        return ConvShape(n, ci, h, w, co, k, stride, pad)
    except ShapeError:
        return ConvShape(n, ci, max(h, 3), max(w, 3), co, k, stride, pad)


@st.composite
def sample_lists(draw, n):
    kind = draw(st.sampled_from(("all", "none", "subset", "empty")))
    if kind == "all":
        return list(range(n))
    if kind == "none":
        return None
    if kind == "empty":
        return []
    return draw(st.lists(st.integers(0, n - 1), unique=True, min_size=1, max_size=n))


@st.composite
def cases(draw):
    shape = draw(conv_shapes())
    return shape, draw(sample_lists(shape.n)), draw(st.integers(0, 2**32 - 1)), draw(st.booleans())


def _mult(rng, small: bool) -> Dyadic:
    # Small multipliers keep most outputs in range; large ones drive them into saturation.
    m = int(rng.integers(0, 1 << 15))
    s = int(rng.integers(14, 24)) if small else int(rng.integers(0, 12))
    return Dyadic(m, s)


@SETTINGS
@given(case=cases(), unsigned=st.booleans(), relu=st.booleans(), has_bias=st.booleans())
def test_conv_fwd_matches_golden(csim_lib, codes, case, unsigned, relu, has_bias):
    shape, samples, seed, extreme = case
    rng = np.random.default_rng(seed)
    x = codes(rng, shape.x_shape, np.uint8 if unsigned else np.int8, extreme)
    w = codes(rng, shape.w_shape, np.int8, extreme)
    bias = rng.integers(-(1 << 20), 1 << 20, shape.co).astype(np.int32) if has_bias else None
    mult = _mult(rng, small=not extreme)
    prior = codes(rng, shape.y_shape, np.uint8 if relu else np.int8, False)
    want = golden.conv_fwd(x, w, bias, mult, stride=shape.stride, pad=shape.pad, relu=relu,
                           samples=samples, out=prior.copy())
    got = csim.conv_fwd(x, w, bias, mult, stride=shape.stride, pad=shape.pad, relu=relu,
                        samples=samples, out=prior.copy())
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if samples is not None:   # untouched samples keep their previous contents
        skipped = sorted(set(range(shape.n)) - set(samples))
        np.testing.assert_array_equal(got[skipped], prior[skipped])


@SETTINGS
@given(case=cases())
def test_conv_bwd_data_matches_golden(csim_lib, codes, case):
    shape, samples, seed, extreme = case
    rng = np.random.default_rng(seed)
    g_y = codes(rng, shape.y_shape, np.int16, extreme)
    w = codes(rng, shape.w_shape, np.int8, extreme)
    mult = _mult(rng, small=not extreme)
    prior = codes(rng, shape.x_shape, np.int16, False)
    kw = dict(in_hw=(shape.h, shape.w), stride=shape.stride, pad=shape.pad, samples=samples)
    want = golden.conv_bwd_data(g_y, w, mult, out=prior.copy(), **kw)
    got = csim.conv_bwd_data(g_y, w, mult, out=prior.copy(), **kw)
    np.testing.assert_array_equal(got, want)


def _psg_inputs(codes, shape, seed, extreme, unsigned, zero_grad=False):
    rng = np.random.default_rng(seed)
    x = codes(rng, shape.x_shape, np.uint8 if unsigned else np.int8, extreme)
    g_y = np.zeros(shape.y_shape, np.int16) if zero_grad else codes(rng, shape.y_shape, np.int16, extreme)
    lim = (1 << 30) - 1
    if extreme:   # masters at the saturation limit, where the update must clamp
        w = rng.choice(np.array([-lim, lim, 0, 1, -1], np.int64), size=shape.w_shape).astype(np.int32)
    else:
        w = rng.integers(-(1 << 24), 1 << 24, shape.w_shape).astype(np.int32)
    return rng, x, g_y, w


def _assert_psg_equal(got: golden.PsgResult, want: golden.PsgResult):
    np.testing.assert_array_equal(got.w_master, want.w_master)
    np.testing.assert_array_equal(got.sign, want.sign)
    np.testing.assert_array_equal(got.predicted, want.predicted)
    assert got.gmsb_absmax == want.gmsb_absmax
    assert got.n_predicted == want.n_predicted
    assert got.w_master.dtype == np.int32 and got.sign.dtype == np.int8 and got.predicted.dtype == bool


@SETTINGS
@given(case=cases(), unsigned=st.booleans(),
       beta_q=st.sampled_from((0, 1, 3277, 32768, 65536)), zero_grad=st.booleans())
def test_conv_bwd_weight_psg_matches_golden(csim_lib, codes, case, unsigned, beta_q, zero_grad):
    shape, samples, seed, extreme = case
    rng, x, g_y, w = _psg_inputs(codes, shape, seed, extreme, unsigned, zero_grad and not extreme)
    lr_q = int(rng.integers(0, 1 << 20))
    wd_q = int(rng.integers(0, 1 << 24))
    kw = dict(stride=shape.stride, pad=shape.pad, beta_q=beta_q, lr_q=lr_q, wd_q=wd_q, samples=samples)
    want = golden.conv_bwd_weight_psg(x, g_y, w, **kw)
    w_before = w.copy()
    got, stats = csim.conv_bwd_weight_psg_stats(x, g_y, w, **kw)
    np.testing.assert_array_equal(w, w_before)      # the input master weights are not modified
    _assert_psg_equal(got, want)
    assert stats.w_absmax == int(np.abs(want.w_master.astype(np.int64)).max())
    # One sweep whatever beta_q: the exact and the predictor MACs of every weight, each once.
    n_terms = want.predicted.size * stats.beats_per_tile
    assert stats.exact_terms == stats.predict_terms == n_terms
    if beta_q == 0:   # predictor off: every sign exact
        assert want.n_predicted == 0


def test_psg_threshold_tie_is_predicted(csim_lib):
    """|G_msb| * 2^16 == beta_q * max exactly: predicted (>=), on both sides of the tie."""
    shape = ConvShape(1, 1, 1, 1, 3, 1)
    x = np.array([[[[16]]]], np.uint8)              # x_h = 1, x_l = 0
    g = np.array([[[[64]], [[128]], [[127]]]], np.int16).reshape(shape.y_shape)   # g_h = 1, 2, 2 (127 rounds up)
    w = np.zeros(shape.w_shape, np.int32)
    # max |G_msb| = 2; beta = 1/2 -> tau = 1: G_msb = 1 sits exactly on the threshold.
    for beta_q, n_pred in ((32768, 3), (32769, 2)):
        want = golden.conv_bwd_weight_psg(x, g, w, beta_q=beta_q, lr_q=5)
        got = csim.conv_bwd_weight_psg(x, g, w, beta_q=beta_q, lr_q=5)
        _assert_psg_equal(got, want)
        assert got.n_predicted == n_pred


def test_saturated_top_msb_code(csim_lib):
    """x = 255 (uint8) and 127 (int8) hit the saturated top codes 15 and 7; g = 32767 hits 511."""
    shape = ConvShape(2, 2, 3, 3, 2, 3, 1, 1)
    for dtype, top in ((np.uint8, 255), (np.int8, 127)):
        x = np.full(shape.x_shape, top, dtype)
        g = np.full(shape.y_shape, 32767, np.int16)
        g[1] = -32768
        w = np.zeros(shape.w_shape, np.int32)
        for beta_q in (0, 1, 65536):
            want = golden.conv_bwd_weight_psg(x, g, w, pad=1, beta_q=beta_q, lr_q=3)
            _assert_psg_equal(csim.conv_bwd_weight_psg(x, g, w, pad=1, beta_q=beta_q, lr_q=3), want)


def test_noncontiguous_inputs_are_accepted(csim_lib):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 4, 9, 9)).astype(np.uint8)[:, :, ::2, ::2]
    w = rng.integers(-128, 128, (3, 4, 3, 3)).astype(np.int8)
    m = Dyadic(20000, 20)
    np.testing.assert_array_equal(csim.conv_fwd(x, w, None, m, pad=1), golden.conv_fwd(x, w, None, m, pad=1))


def test_bwd_data_overflow_raises_and_keeps_out(csim_lib):
    """acc * M >= 2**62: an OverflowError as from the golden model, and out is untouched."""
    shape = ConvShape(1, 1, 3, 3, 64, 3, 1, 1)
    g = np.full(shape.y_shape, -32768, np.int16)
    w = np.full(shape.w_shape, -128, np.int8)
    mult = Dyadic((1 << 31) - 1, 0)
    with pytest.raises(OverflowError):
        golden.conv_bwd_data(g, w, mult, in_hw=(3, 3), pad=1)
    out = np.full(shape.x_shape, 7, np.int16)
    with pytest.raises(OverflowError, match="62 bits"):
        csim.conv_bwd_data(g, w, mult, in_hw=(3, 3), pad=1, out=out)
    assert (out == 7).all()


@pytest.mark.parametrize("shape", [
    ConvShape(1, 260, 3, 3, 9, 3, 1, 1),     # a row block of 8 x 2340 weights: more than the on-chip partial sums
    ConvShape(3, 2, 13, 11, 3, 3, 1, 1),     # 429 positions: two weight-gradient chunks per block
    ConvShape(2, 40, 3, 3, 70, 3, 2, 1),     # 70 x 360 weights: two weight groups; 360-beat forward calls
], ids=str)
def test_engine_layouts_beyond_one_call(csim_lib, shape):
    """Shapes whose engine calls span several chunks, weight groups or int32 flushes of the
    C model: every pass still equals the golden model."""
    rng = np.random.default_rng(shape.ci)
    x = rng.integers(0, 256, shape.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, shape.w_shape).astype(np.int8)
    g = rng.integers(-32768, 32768, shape.y_shape).astype(np.int16)
    wm = rng.integers(-(1 << 24), 1 << 24, shape.w_shape).astype(np.int32)
    kw = dict(stride=shape.stride, pad=shape.pad)
    m = Dyadic(3, 12)
    np.testing.assert_array_equal(csim.conv_fwd(x, w, None, m, **kw), golden.conv_fwd(x, w, None, m, **kw))
    bw = dict(in_hw=(shape.h, shape.w), **kw)
    np.testing.assert_array_equal(csim.conv_bwd_data(g, w, m, **bw), golden.conv_bwd_data(g, w, m, **bw))
    for beta_q in (0, 3277):
        want = golden.conv_bwd_weight_psg(x, g, wm, beta_q=beta_q, lr_q=7, **kw)
        _assert_psg_equal(csim.conv_bwd_weight_psg(x, g, wm, beta_q=beta_q, lr_q=7, **kw), want)


@pytest.mark.parametrize("shape", [ConvShape(2, 64, 3, 3, 40, 3, 1, 1), ConvShape(1, 260, 3, 3, 3, 3, 1, 1),
                                   ConvShape(2, 3, 7, 6, 5, 3, 2, 1)], ids=str)
@pytest.mark.parametrize("unsigned", [True, False], ids=["uint8", "int8"])
def test_predictor_sweep_sums_are_golden(csim_lib, shape, unsigned):
    """The predictor's sums themselves (the engine's acc_lo, which the kernel leaves in its gmsb
    scratch when beta_q > 0 on a layer of several weight groups: two row groups, column ranges)
    equal golden.wgrad_terms' G_msb, on codes at the ends of their ranges (the MSB split's
    saturation and ties); a layer of one group keeps them on chip and leaves the scratch alone."""
    import ctypes
    rng = np.random.default_rng(shape.co)
    lo, hi, dt = (0, 256, np.uint8) if unsigned else (-128, 128, np.int8)
    x = rng.integers(lo, hi, shape.x_shape).astype(dt)
    x.flat[::5] = hi - 1
    x.flat[1::7] = lo
    g = rng.integers(-32768, 32768, shape.y_shape).astype(np.int16)
    g.flat[::3] = rng.choice(np.array([-32768, 32767, 32, -32, 96, -96], np.int16), size=g.flat[::3].size)
    idx = np.array([s for s in range(shape.n) if s != 1], np.int32)     # a sample list with a gap
    wm = np.zeros(shape.w_shape, np.int32)
    sign = np.zeros(shape.w_shape, np.int8)
    pred = np.zeros(shape.w_shape, np.uint8)
    gmsb = np.zeros(shape.w_shape, np.int32)
    stats = np.zeros(8, np.int64)
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)   # noqa: E731
    rc = csim_lib.conv_bwd_weight_psg(ptr(x), ptr(g), ptr(wm), ptr(sign), ptr(pred), ptr(gmsb), ptr(stats), ptr(idx),
                                      idx.size, shape.n, shape.ci, shape.h, shape.w, shape.co, shape.k, shape.stride,
                                      shape.pad, int(unsigned), 3277, 1, 0)
    assert rc == 0
    want, _ = golden.wgrad_terms(x, g, shape, idx)
    nw = shape.co * shape.ci * shape.k * shape.k
    from e2train.core.call_price import gmsb_in_ddr
    assert gmsb_in_ddr(shape) == (shape.ci > 3)     # the first two shapes: several weight groups
    if gmsb_in_ddr(shape):
        assert stats[csim.STAT_GMSB_SPILLED] == nw
        np.testing.assert_array_equal(gmsb, want)
    else:
        assert stats[csim.STAT_GMSB_SPILLED] == 0 and not gmsb.any()
    assert stats[1] == np.abs(want).max()
