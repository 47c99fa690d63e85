"""The HLS top itself, called through ctypes past the binding's checks (which refuse all of
this first): e2t_engine's op dispatch, and the sample-list checks every pass repeats
(status 2 for a list longer than the batch, an index outside [0, n), a repeated index),
with nothing written when it refuses."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from e2train.core import golden
from e2train.core.fixedpoint import Dyadic
from e2train.core.shapes import ConvShape
from e2train.device import kernel_iface as ki

E2T_ERR_SHAPE, E2T_ERR_SAMPLE = 1, 2
SHAPE = ConvShape(3, 2, 5, 5, 3, 3, 1, 1)
NO_BLOCK = (None,) * 9 + (0,) * 14        # the block unit's arguments, unread by the conv passes
M = Dyadic(16384, 20)


def _p(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


@pytest.fixture(scope="module")
def lib(csim_lib):
    lib = csim_lib
    # the top's C signature (hls/include/e2t_kernels.h): op, 12 pointers, 17 ints, then the
    # block unit's 9 pointers and 14 ints (IP 2.1 and 2.2)
    lib.e2t_engine.argtypes = ([ctypes.c_int] + [ctypes.c_void_p] * 12 + [ctypes.c_int] * 17
                               + [ctypes.c_void_p] * 9 + [ctypes.c_int] * 14)
    lib.e2t_engine.restype = ctypes.c_int
    return lib


def _case(rng):
    s = SHAPE
    x = rng.integers(0, 256, s.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, s.w_shape).astype(np.int8)
    g = rng.integers(-3000, 3000, s.y_shape).astype(np.int16)
    wm = rng.integers(-(1 << 20), 1 << 20, s.w_shape).astype(np.int32)
    return x, w, g, wm


def _engine(lib, op, *, x=None, w=None, y=None, g_y=None, g_x=None, wm=None, sign=None, pred=None, gmsb=None,
            stats=None, samples, n_samples=None, x_unsigned=1, mult=M, beta_q=0, lr_q=0):
    s = SHAPE
    ns = len(samples) if n_samples is None else n_samples
    return lib.e2t_engine(op, _p(x), _p(w), None, _p(y), _p(g_y), _p(g_x), _p(wm), _p(sign), _p(pred), _p(gmsb),
                          _p(stats), _p(samples), ns, s.n, s.ci, s.h, s.w, s.co, s.k, s.stride, s.pad,
                          x_unsigned, 0, 0, mult.m, mult.s, beta_q, lr_q, 0, *NO_BLOCK)


def test_op_picks_the_pass_and_equals_golden(lib):
    rng = np.random.default_rng(3)
    x, w, g, wm = _case(rng)
    smp = np.array([2, 0], np.int32)
    y = np.full(SHAPE.y_shape, 0x33, np.int8)
    assert _engine(lib, ki.PASSES["conv_fwd"].op, x=x, w=w, y=y, samples=smp) == 0
    want = golden.conv_fwd(x, w, None, M, stride=1, pad=1, samples=smp, out=np.full(SHAPE.y_shape, 0x33, np.int8))
    assert np.array_equal(y, want)
    gx = np.full(SHAPE.x_shape, 7, np.int16)
    assert _engine(lib, ki.PASSES["conv_bwd_data"].op, w=w, g_y=g, g_x=gx, samples=smp) == 0
    want = golden.conv_bwd_data(g, w, M, in_hw=(5, 5), stride=1, pad=1, samples=smp,
                                out=np.full(SHAPE.x_shape, 7, np.int16))
    assert np.array_equal(gx, want)
    w2 = wm.copy()
    sign = np.zeros(SHAPE.w_shape, np.int8)
    pred = np.zeros(SHAPE.w_shape, np.uint8)
    gmsb = np.zeros(int(np.prod(SHAPE.w_shape)), np.int32)
    stats = np.zeros(ki.PSG_STATS_LEN, np.int64)
    assert _engine(lib, ki.PASSES["conv_bwd_weight_psg"].op, x=x, g_y=g, wm=w2, sign=sign, pred=pred, gmsb=gmsb,
                   stats=stats, samples=smp, beta_q=3277, lr_q=9) == 0
    r = golden.conv_bwd_weight_psg(x, g, wm, stride=1, pad=1, beta_q=3277, lr_q=9, samples=smp)
    assert np.array_equal(w2, r.w_master) and np.array_equal(sign, r.sign) and np.array_equal(pred != 0, r.predicted)


@pytest.mark.parametrize("op", [6, -1, 255])
def test_an_op_that_is_no_pass_is_refused_touching_nothing(lib, op):
    rng = np.random.default_rng(4)
    x, w, g, wm = _case(rng)
    y = np.full(SHAPE.y_shape, 0x33, np.int8)
    w2 = wm.copy()
    # every pointer valid, so a wrong dispatch would run (and write) instead of crashing
    assert _engine(lib, op, x=x, w=w, y=y, g_y=g, g_x=np.zeros(SHAPE.x_shape, np.int16), wm=w2,
                   sign=np.zeros(SHAPE.w_shape, np.int8), pred=np.zeros(SHAPE.w_shape, np.uint8),
                   gmsb=np.zeros(wm.size, np.int32), stats=np.zeros(8, np.int64),
                   samples=np.array([0], np.int32), beta_q=3277, lr_q=9) == E2T_ERR_SHAPE
    assert (y == 0x33).all() and np.array_equal(w2, wm)


@pytest.mark.parametrize("samples, n_samples, what", [
    ([1, 1], None, "sample 1 twice"),
    ([2, 0, 2], None, "sample 2 twice, apart"),
    ([0, 3], None, "index 3 in a batch of 3"),
    ([0, -1], None, "index -1"),
    ([0, 1, 2, 0], None, "4 entries in a batch of 3"),
    ([0], -1, "n_samples -1"),
])
def test_sample_lists_the_passes_refuse(lib, samples, n_samples, what):
    """Status 2 from every pass, nothing written. A repeat would double-count a sample in the
    weight gradient (the contract, core.shapes.check_samples, refuses it)."""
    rng = np.random.default_rng(5)
    x, w, g, wm = _case(rng)
    smp = np.array(samples, np.int32)
    y = np.full(SHAPE.y_shape, 0x33, np.int8)
    assert _engine(lib, 0, x=x, w=w, y=y, samples=smp, n_samples=n_samples) == E2T_ERR_SAMPLE, what
    assert (y == 0x33).all()
    gx = np.full(SHAPE.x_shape, 7, np.int16)
    assert _engine(lib, 1, w=w, g_y=g, g_x=gx, samples=smp, n_samples=n_samples) == E2T_ERR_SAMPLE, what
    assert (gx == 7).all()
    w2 = wm.copy()
    sign = np.full(SHAPE.w_shape, 5, np.int8)
    assert _engine(lib, 2, x=x, g_y=g, wm=w2, sign=sign, pred=np.zeros(SHAPE.w_shape, np.uint8),
                   gmsb=np.zeros(wm.size, np.int32), stats=np.zeros(8, np.int64), samples=smp,
                   n_samples=n_samples, beta_q=3277, lr_q=9) == E2T_ERR_SAMPLE, what
    assert np.array_equal(w2, wm) and (sign == 5).all()


@pytest.mark.parametrize("ci, co, k, ok", [
    (512, 8, 3, True), (513, 8, 3, False),      # forward: ci*k*k rows of the weight tile
    (8, 512, 3, True), (8, 513, 3, False),      # input gradient: co*k*k rows of the same tile
    (1024, 1024, 1, True),                      # 1x1: one row per channel
])
def test_the_weight_tile_bound_is_the_shape_check(lib, ci, co, k, ok):
    """The on-chip weight tile holds MAX_TAPS rows (fpga/fit.py counts it so): a shape whose
    ci*k*k or co*k*k exceeds it is refused by the kernel (status 1) and by core.shapes alike."""
    from e2train.core.shapes import MAX_TAPS, ConvShape, ShapeError
    assert MAX_TAPS == 4608
    n, h, wd, stride, pad = 1, 3, 3, 1, k // 2
    status = lib.e2t_engine(ki.PASSES["conv_fwd"].op, None, None, None, None, None, None, None, None, None, None,
                            None, None, 0, n, ci, h, wd, co, k, stride, pad, 1, 0, 0, 1, 0, 0, 0, 0, *NO_BLOCK)
    assert (status != E2T_ERR_SHAPE) == ok, status   # an empty sample list: a valid shape runs nothing
    if ok:
        ConvShape(n, ci, h, wd, co, k, stride, pad)
    else:
        with pytest.raises(ShapeError, match="on-chip weight tile"):
            ConvShape(n, ci, h, wd, co, k, stride, pad)


@pytest.mark.parametrize("n, ok", [(128, True), (129, False)])
def test_the_weight_gradients_position_bound_is_its_partial_sums_word(lib, n, ok):
    """The weight-gradient pass keeps a weight's partial sums in one 72-bit BRAM word (41 + 31
    bits; fpga/fit.py counts 36 BRAM36 so): n*ho*wo above 2^17 positions is refused by the
    kernel (status 1, nothing written) and by the host checks (golden, so every backend) alike,
    while the other passes take the shape. Batch 128 at 32x32 is the bound."""
    from e2train.core.shapes import MAX_WGRAD_CALL_TERMS, ShapeError, check_wgrad_terms
    s = ConvShape(n, 1, 32, 32, 1, 1, 1, 0)
    assert MAX_WGRAD_CALL_TERMS == 1 << 17 and (s.n * s.ho * s.wo <= MAX_WGRAD_CALL_TERMS) == ok
    wm = np.full(s.w_shape, 1000, np.int32)
    sign = np.full(s.w_shape, 5, np.int8)
    empty = np.zeros(0, np.int32)
    status = lib.e2t_engine(ki.PASSES["conv_bwd_weight_psg"].op, None, None, None, None, None, None, _p(wm), _p(sign),
                            _p(np.zeros(s.w_shape, np.uint8)), _p(np.zeros(wm.size, np.int32)),
                            _p(np.zeros(8, np.int64)), _p(empty), 0, s.n, s.ci, s.h, s.w, s.co, s.k, s.stride,
                            s.pad, 1, 0, 0, 1, 0, 3277, 9, 0, *NO_BLOCK)
    assert (status == E2T_ERR_SHAPE) == (not ok), status
    if not ok:
        assert (sign == 5).all() and (wm == 1000).all()
    fwd = lib.e2t_engine(ki.PASSES["conv_fwd"].op, None, None, None, None, None, None, None, None, None, None,
                         None, None, 0, s.n, s.ci, s.h, s.w, s.co, s.k, s.stride, s.pad, 1, 0, 0, 1, 0, 0, 0, 0,
                         *NO_BLOCK)
    assert fwd != E2T_ERR_SHAPE
    x = np.zeros(s.x_shape, np.uint8)
    g = np.zeros(s.y_shape, np.int16)
    if ok:
        check_wgrad_terms(s)
        golden.conv_bwd_weight_psg(x, g, wm, beta_q=3277, lr_q=9, samples=np.arange(0))
    else:
        with pytest.raises(ShapeError, match="at most 128 at 32x32"):
            golden.conv_bwd_weight_psg(x, g, wm, beta_q=3277, lr_q=9, samples=np.arange(0))


def test_past_the_position_bound_at_any_batch_the_refusal_says_no_batch_fits():
    from e2train.core.shapes import ShapeError, check_wgrad_terms
    with pytest.raises(ShapeError, match="no batch fits at 512x512 outputs"):
        check_wgrad_terms(ConvShape(1, 1, 512, 512, 1, 1, 1, 0))
