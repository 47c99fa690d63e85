"""The block unit's C simulation (e2t_engine ops 3..5, hls/src/block_ops.cpp) against the golden
models (core.block_ops), bit for bit, and conv_fwd's BN sums: random shapes, sample lists (none,
empty, all, a few, out of order), shortcut geometries (stride 1 and 2, channel offsets), one and
two gradient sources, coefficients at their limits. Then the refusals: the binding's (the same
one-line ValueError as golden's) and the kernel's own, past the binding (a status bit, nothing
written)."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from e2train.core import block_ops as bo
from e2train.core import csim, golden
from e2train.core.fixedpoint import Dyadic
from e2train.core.kernel_args import CONST_LIMIT, MULT_LIMIT

E2T_ERR_SHAPE, E2T_ERR_SAMPLE = 1, 2


@pytest.fixture(autouse=True)
def _lib(csim_lib):
    return csim_lib


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape and np.array_equal(g, w)


def _samples(rng, n):
    kind = rng.integers(0, 4)
    if kind == 0:
        return None
    if kind == 1:
        return []
    if kind == 2:
        return list(rng.permutation(n))                       # all, out of order
    return list(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False))


def _shortcut(rng, c, h, w):
    """A random option-A geometry for an output (c, h, w): its source shape and Shortcut."""
    stride = int(rng.integers(1, 3))
    sc_c = int(rng.integers(1, c + 1))
    lo = int(rng.integers(0, c - sc_c + 1))
    sh = stride * h - int(rng.integers(0, stride))           # ceil(sh / stride) == h, or larger
    sw = stride * w - int(rng.integers(0, stride)) + int(rng.integers(0, 2))
    return (sc_c, sh, sw), bo.Shortcut(stride, lo)


def _coef(rng, size, limit, extreme):
    if extreme:
        return rng.choice([-(limit - 1), limit - 1, 0, 1, -1], size=size).astype(np.int64)
    return rng.integers(-(limit >> 4), limit >> 4, size=size).astype(np.int64)


def _shift(rng, extreme):
    return int(rng.choice([0, 40, 1])) if extreme else int(rng.integers(0, 41))


@pytest.mark.parametrize("seed", range(30))
def test_bn_act_equals_golden(seed, codes):
    rng = np.random.default_rng(seed)
    extreme = seed % 3 == 0
    n, c, h, w = (int(v) for v in rng.integers(1, [5, 9, 10, 10]))
    y = codes(rng, (n, c, h, w), np.int8, extreme)
    a, b = _coef(rng, c, MULT_LIMIT, extreme), _coef(rng, c, CONST_LIMIT, extreme)
    kw = dict(samples=_samples(rng, n), relu=bool(seed % 2))
    if rng.random() < 0.7:
        (sc_c, sh, sw), sc = _shortcut(rng, c, h, w)
        kw.update(r=codes(rng, (n, sc_c, sh, sw), np.uint8, extreme), shortcut=sc,
                  r_mult=int(_coef(rng, 1, MULT_LIMIT, extreme)[0]))
    shift = _shift(rng, extreme)
    _same(csim.bn_act(y, a, b, shift, **kw), golden.bn_act(y, a, b, shift, **kw))


@pytest.mark.parametrize("seed", range(30))
def test_bn_bwd_reduce_equals_golden(seed, codes):
    rng = np.random.default_rng(100 + seed)
    extreme = seed % 3 == 0
    n, c, h, w = (int(v) for v in rng.integers(1, [5, 9, 10, 10]))
    o = codes(rng, (n, c, h, w), np.uint8, extreme)
    o[rng.random(o.shape) < 0.3] = 0                           # the ReLU's zeros: masked gradients
    y = codes(rng, (n, c, h, w), np.int8, extreme)
    g_a = codes(rng, (n, c, h, w), np.int16, extreme)
    kw = dict(samples=_samples(rng, n), ma=int(_coef(rng, 1, MULT_LIMIT, extreme)[0]), shift=_shift(rng, extreme))
    if seed % 2:       # two sources: the next block's shortcut gradient at its output geometry
        stride = int(rng.integers(1, 3))
        gb_h, gb_w = -(-h // stride) - int(rng.integers(0, 2) if h > stride else 0), -(-w // stride)
        lo = int(rng.integers(0, 3))
        g_b = codes(rng, (n, c + lo + int(rng.integers(0, 3)), max(gb_h, 1), gb_w), np.int16, extreme)
        kw.update(g_b=g_b, b_shortcut=bo.Shortcut(stride, lo), mb=int(_coef(rng, 1, MULT_LIMIT, extreme)[0]))
    if rng.random() < 0.6:
        (sc_c, sh, sw), sc = _shortcut(rng, c, h, w)
        kw.update(r=codes(rng, (n, sc_c, sh, sw), np.uint8, extreme), r_shortcut=sc)
    _same(csim.bn_bwd_reduce(o, y, g_a, **kw), golden.bn_bwd_reduce(o, y, g_a, **kw))


@pytest.mark.parametrize("seed", range(8))
def test_bn_bwd_apply_equals_golden(seed, codes):
    rng = np.random.default_rng(200 + seed)
    extreme = seed % 3 == 0
    n, c, h, w = (int(v) for v in rng.integers(1, [5, 9, 10, 10]))
    g_m = codes(rng, (n, c, h, w), np.int16, extreme)
    y = codes(rng, (n, c, h, w), np.int8, extreme)
    p, q = _coef(rng, c, MULT_LIMIT, extreme), _coef(rng, c, MULT_LIMIT, extreme)
    t = _coef(rng, c, CONST_LIMIT, extreme)
    shift, smp = _shift(rng, extreme), _samples(rng, n)
    got = csim.bn_bwd_apply(g_m, y, p, q, t, shift, samples=smp)
    _same([got], [golden.bn_bwd_apply(g_m, y, p, q, t, shift, samples=smp)])


def test_the_unlisted_samples_take_the_shortcut_alone():
    """bn_act: a sample off the list gets sat(shift_round(sc(r)*r_mult)), and without a shortcut
    it is neither read nor written (the binding's zeroed buffer stays 0)."""
    rng = np.random.default_rng(5)
    y = rng.integers(-128, 128, (3, 4, 4, 4)).astype(np.int8)
    r = rng.integers(0, 256, (3, 2, 8, 8)).astype(np.uint8)
    a, b = np.full(4, 1 << 10), np.full(4, 1 << 12)
    out, pooled, vmax = csim.bn_act(y, a, b, 10, r=r, r_mult=1 << 9, shortcut=bo.Shortcut(2, 1), samples=[1])
    want = np.zeros((4, 4, 4), np.int64)
    want[1:3] = (r[0, :, ::2, ::2].astype(np.int64) * (1 << 9) + (1 << 9)) >> 10
    assert np.array_equal(out[0], np.clip(want, 0, 255))
    out, pooled, vmax = csim.bn_act(y, a, b, 10, samples=[1])
    assert not out[[0, 2]].any() and not pooled[[0, 2]].any() and not vmax[[0, 2]].any() and out[1].any()


@pytest.mark.parametrize("seed", range(6))
def test_conv_fwd_bn_sums_equal_golden(seed):
    rng = np.random.default_rng(300 + seed)
    n, ci, co = (int(v) for v in rng.integers(1, [4, 5, 21]))
    h, w, k = int(rng.integers(3, 9)), int(rng.integers(3, 9)), int(rng.choice([1, 3]))
    x = rng.integers(0, 256, (n, ci, h, w)).astype(np.uint8)
    wt = rng.integers(-128, 128, (co, ci, k, k)).astype(np.int8)
    kw = dict(stride=int(rng.integers(1, 3)), pad=k // 2, relu=bool(seed % 2), samples=_samples(rng, n))
    m = Dyadic(int(rng.integers(1, 1 << 12)), 16)
    s_g, s_c = np.full((co, 2), 7, np.int64), np.full((co, 2), -7, np.int64)
    y_g = golden.conv_fwd(x, wt, None, m, stats=s_g, **kw)
    y_c = csim.conv_fwd(x, wt, None, m, stats=s_c, **kw)
    assert np.array_equal(y_g, y_c) and np.array_equal(s_g, s_c)


# -- refusals --------------------------------------------------------------------------------------
def _act_case():
    rng = np.random.default_rng(9)
    return (rng.integers(-128, 128, (2, 3, 4, 4)).astype(np.int8), np.ones(3, np.int64), np.zeros(3, np.int64),
            rng.integers(0, 256, (2, 2, 8, 8)).astype(np.uint8))


@pytest.mark.parametrize("kw, msg", [
    (dict(shift=41), "shift 41 outside"),
    (dict(a=np.full(3, MULT_LIMIT)), "multiplier reaches 2"),
    (dict(b=np.full(3, -CONST_LIMIT)), "constant reaches 2"),
    (dict(r_mult=-MULT_LIMIT, r=True), "multiplier reaches 2"),
    (dict(r=True, shortcut=bo.Shortcut(2, 2)), "channels 2 at offset 2 exceed 3"),
    (dict(r=True, shortcut=bo.Shortcut(3, 0)), "stride 3 not supported"),
    (dict(r="small", shortcut=bo.Shortcut(2, 0)), "does not cover"),
    (dict(samples=[0, 0]), "duplicate"),
    (dict(samples=[2]), "out of range"),
])
def test_bn_act_refusals_are_golden_s(kw, msg):
    y, a, b, r = _act_case()
    args = dict(a=a, b=b, shift=3)
    args.update(kw)
    if args.get("r") is True:
        args["r"] = r
    elif args.get("r") == "small":
        args["r"] = r[:, :, :6, :8]
    a, b, shift = args.pop("a"), args.pop("b"), args.pop("shift")
    for impl in (golden, csim):
        with pytest.raises(ValueError, match=msg) as e:
            impl.bn_act(y, a, b, shift, **args)
        assert "\n" not in str(e.value)


def test_reduce_and_apply_refusals_are_golden_s():
    rng = np.random.default_rng(10)
    o = rng.integers(0, 256, (2, 3, 4, 4)).astype(np.uint8)
    y = rng.integers(-128, 128, (2, 3, 4, 4)).astype(np.int8)
    g = rng.integers(-999, 999, (2, 3, 4, 4)).astype(np.int16)
    for impl in (golden, csim):
        with pytest.raises(ValueError, match="g_b must be int16"):
            impl.bn_bwd_reduce(o, y, g, g_b=o, mb=1)
        with pytest.raises(ValueError, match="exceed"):     # g_b's channels cannot hold o's at offset 1
            impl.bn_bwd_reduce(o, y, g, g_b=g, mb=1, b_shortcut=bo.Shortcut(1, 1))
        with pytest.raises(ValueError, match="multiplier reaches"):
            impl.bn_bwd_reduce(o, y, g, ma=MULT_LIMIT)
        with pytest.raises(ValueError, match="r .the shortcut source. must be uint8"):
            impl.bn_bwd_reduce(o, y, g, r=y)
        with pytest.raises(ValueError, match="constant reaches"):
            impl.bn_bwd_apply(g, y, np.ones(3), np.ones(3), np.full(3, CONST_LIMIT), 4)
        with pytest.raises(ValueError, match="one value per channel"):
            impl.bn_bwd_apply(g, y, np.ones(2), np.ones(3), np.ones(3), 4)
        with pytest.raises(ValueError, match="too large for the block unit"):
            impl.bn_bwd_apply(np.zeros((1, 1024, 64, 65), np.int16), np.zeros((1, 1024, 64, 65), np.int8),
                              np.ones(1024), np.ones(1024), np.ones(1024), 4)


# -- the kernel's own checks, past the binding ------------------------------------------------
def _p(a):
    return None if a is None else a.ctypes.data


@pytest.mark.parametrize("what, change, status", [
    ("shift 41", dict(shift=41), E2T_ERR_SHAPE),
    ("|m1| = 2^24", dict(m1=1 << 24), E2T_ERR_SHAPE),
    ("a[2] = 2^24 in b_coef", dict(coef=(2, 1 << 24)), E2T_ERR_SHAPE),
    ("b[0] = -2^44 in b_coef", dict(coef=(3, -(1 << 44))), E2T_ERR_SHAPE),
    ("shortcut channels past co", dict(r_lo=2), E2T_ERR_SHAPE),
    ("shortcut stride 3", dict(r_stride=3), E2T_ERR_SHAPE),
    ("shortcut source too small", dict(r_h=6), E2T_ERR_SHAPE),
    ("h = 0", dict(h=0), E2T_ERR_SHAPE),
    ("sample repeated", dict(samples=[1, 1]), E2T_ERR_SAMPLE),
    ("sample out of range", dict(samples=[2]), E2T_ERR_SAMPLE),
    ("more entries than n", dict(samples=[0, 1, 0], n_samples=3), E2T_ERR_SAMPLE),
])
def test_the_kernel_refuses_and_writes_nothing(csim_lib, what, change, status):
    y, _, _, r = _act_case()
    coef = np.array([5, 6, 7, 1, 2, 3], np.int64)
    if "coef" in change:
        j, v = change["coef"]
        coef[j] = v
    o = np.full(y.shape, 0x5A, np.uint8)
    sums = np.full(2 * 3 + 2, 77, np.int64)
    smp = np.array(change.get("samples", [0, 1]), np.int32)
    g = dict(h=4, shift=3, m1=5, r_lo=0, r_stride=2, r_h=8)
    g.update({k: v for k, v in change.items() if k in g})
    rc = csim_lib.bn_act(_p(y), _p(o), _p(r), _p(coef), _p(sums), _p(smp), change.get("n_samples", smp.size),
                         2, g["h"], 4, 3, 2 | 4, g["shift"], g["m1"], 2, g["r_h"], 8, g["r_stride"], g["r_lo"])
    assert rc == status, what
    assert (o == 0x5A).all() and (sums == 77).all(), what
    # the two other ops: the same sample-list and shift checks, nothing written
    gm = np.full(y.shape, 0x1234, np.int16)
    gy = np.full(y.shape, 0x1234, np.int16)
    ga = np.ones(y.shape, np.int16)
    if status == E2T_ERR_SAMPLE or "shift" in what:
        rc = csim_lib.bn_bwd_reduce(_p(y), _p(o), _p(r), _p(ga), None, _p(gm), _p(sums), _p(smp),
                                    change.get("n_samples", smp.size), 2, 4, 4, 3, 4, g["shift"], 1, 0, 2, 8, 8, 2,
                                    0, 0, 0, 0, 0, 0)
        assert rc == status and (gm == 0x1234).all() and (sums == 77).all(), what
        rc = csim_lib.bn_bwd_apply(_p(y), _p(ga), _p(gy), _p(np.zeros(9, np.int64)), _p(smp),
                                   change.get("n_samples", smp.size), 2, 4, 4, 3, g["shift"])
        assert rc == status and (gy == 0x1234).all(), what


def test_the_kernel_refuses_a_second_source_that_does_not_fit(csim_lib):
    """bn_bwd_reduce's b_gb geometry: the next block's shortcut must read this block's output
    (its channels at gb_lo inside gb_c, its plane covering gb_h x gb_w at gb_stride)."""
    rng = np.random.default_rng(11)
    y = rng.integers(-128, 128, (1, 3, 4, 4)).astype(np.int8)
    o = rng.integers(0, 256, (1, 3, 4, 4)).astype(np.uint8)
    ga = rng.integers(-99, 99, (1, 3, 4, 4)).astype(np.int16)
    gb = rng.integers(-99, 99, (1, 4, 2, 2)).astype(np.int16)
    gm = np.full(y.shape, 3, np.int16)
    sums = np.full(3 * 3 + 2, 9, np.int64)
    smp = np.array([0], np.int32)

    def run(gb_c, gb_h, gb_st, gb_lo):
        return csim_lib.bn_bwd_reduce(_p(y), _p(o), None, _p(ga), _p(gb), _p(gm), _p(sums), _p(smp), 1, 1, 4, 4, 3,
                                      8, 0, 1, 1, 0, 0, 0, 0, 0, gb_c, gb_h, 2, gb_st, gb_lo)
    assert run(4, 2, 2, 2) == E2T_ERR_SHAPE          # 3 channels at offset 2 do not fit 4
    assert run(5000, 2, 2, 0) == E2T_ERR_SHAPE       # gb_c past the unit's 1024 channels
    assert run(4, 0, 2, 0) == E2T_ERR_SHAPE          # no rows
    assert run(4, 3, 2, 0) == E2T_ERR_SHAPE          # 4 rows at stride 2 cover 2, not 3
    assert (gm == 3).all() and (sums == 9).all()
    assert run(4, 2, 2, 1) == 0                      # and the one that fits runs
    want = golden.bn_bwd_reduce(o, y, ga, g_b=gb, mb=1, b_shortcut=bo.Shortcut(2, 1), samples=[0])
    assert np.array_equal(gm, want[0]) and np.array_equal(sums[:9], want[1].ravel())
