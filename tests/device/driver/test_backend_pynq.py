"""PynqBackend agrees with the golden models bit for bit, through the full register path
of the simulated board (pynq buffers, flush/invalidate, registers, C simulation)."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.core import golden
from e2train.core.fixedpoint import Dyadic, beta_to_fixed
from e2train.core.shapes import ShapeError

# (n, ci, h, w, co, k, stride, pad)
SHAPES = [
    (2, 3, 5, 5, 4, 3, 1, 1),
    (3, 8, 6, 7, 8, 3, 2, 1),
    (2, 5, 4, 4, 3, 1, 1, 0),
    (4, 4, 7, 5, 6, 1, 2, 0),
    (2, 3, 6, 6, 5, 3, 2, 0),
]
SAMPLES = [None, [1], [0, 1][::-1]]


def _case(rng, shape, unsigned):
    n, ci, h, w, co, k, s, p = shape
    x = rng.integers(0, 256, (n, ci, h, w)).astype(np.uint8) if unsigned else \
        rng.integers(-128, 128, (n, ci, h, w)).astype(np.int8)
    wt = rng.integers(-128, 128, (co, ci, k, k)).astype(np.int8)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    gy = rng.integers(-20000, 20000, (n, co, ho, wo)).astype(np.int16)
    return x, wt, gy


@pytest.mark.parametrize("shape", SHAPES)
def test_bit_exact_vs_golden(any_overlay, rng, shape):
    be = any_overlay.backend()
    n, ci, h, w, co, k, s, p = shape
    for unsigned, samples in [(True, None), (False, [n - 1, 0]), (True, [1])]:
        x, wt, gy = _case(rng, shape, unsigned)
        bias = rng.integers(-5000, 5000, co).astype(np.int32)
        mult = Dyadic(int(rng.integers(1 << 14, 1 << 15)), 22)
        for relu, b in [(True, bias), (False, None)]:
            out0 = np.full((n, co, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1), 3,
                           np.uint8 if relu else np.int8)
            got = be.conv_fwd(x, wt, b, mult, stride=s, pad=p, relu=relu, samples=samples, out=out0.copy())
            want = golden.conv_fwd(x, wt, b, mult, stride=s, pad=p, relu=relu, samples=samples, out=out0.copy())
            assert got.dtype == want.dtype and np.array_equal(got, want)
        gx = be.conv_bwd_data(gy, wt, Dyadic(20000, 24), in_hw=(h, w), stride=s, pad=p, samples=samples)
        assert np.array_equal(gx, golden.conv_bwd_data(gy, wt, Dyadic(20000, 24), in_hw=(h, w), stride=s,
                                                       pad=p, samples=samples))
        wm = rng.integers(-(1 << 22), 1 << 22, wt.shape).astype(np.int32)
        for beta_q in (beta_to_fixed(0.05), 0):
            kw = dict(stride=s, pad=p, beta_q=beta_q, lr_q=777, wd_q=5000, samples=samples)
            r = be.conv_bwd_weight_psg(x, gy, wm, **kw)
            g = golden.conv_bwd_weight_psg(x, gy, wm, **kw)
            assert np.array_equal(r.w_master, g.w_master) and np.array_equal(r.sign, g.sign)
            assert np.array_equal(r.predicted, g.predicted) and r.predicted.dtype == bool
            assert r.gmsb_absmax == g.gmsb_absmax and r.n_predicted == g.n_predicted
        assert not np.shares_memory(r.w_master, wm)


def test_buffers_are_reused_and_empty_sample_lists_skip_the_call(overlay, rng):
    be = overlay.backend()
    dev = overlay.device
    x, wt, gy = _case(rng, SHAPES[1], True)
    be.conv_fwd(x, wt, None, (1, 10), stride=2, pad=1)
    live = len(dev._allocs)
    for _ in range(3):
        be.conv_fwd(x[:2], wt, None, (1, 10), stride=2, pad=1)    # smaller: same buffers
    assert len(dev._allocs) == live and be.calls["conv_fwd"] == 4
    out = np.full((3, 8, 3, 4), 5, np.int8)
    assert np.array_equal(be.conv_fwd(x, wt, None, (1, 10), stride=2, pad=1, samples=[], out=out.copy()), out)
    assert np.array_equal(be.conv_bwd_data(gy, wt, (1, 10), in_hw=(6, 7), stride=2, pad=1, samples=[]),
                          np.zeros(x.shape, np.int16))
    assert be.calls["conv_fwd"] == 4 and be.skipped_calls == {"conv_fwd": 1, "conv_bwd_data": 1,
                                                              "conv_bwd_weight_psg": 0, "bn_act": 0,
                                                              "bn_bwd_reduce": 0, "bn_bwd_apply": 0}
    assert dev.engine.stats["conv_fwd"].calls == 4 and dev.engine.stats["conv_bwd_data"].calls == 0
    # the PSG kernel does run on an empty list: weight decay still applies, as in golden
    wm = rng.integers(-(1 << 20), 1 << 20, wt.shape).astype(np.int32)
    r = be.conv_bwd_weight_psg(x, gy, wm, stride=2, pad=1, beta_q=3277, lr_q=5, wd_q=1 << 20, samples=[])
    assert np.array_equal(r.w_master, golden.conv_bwd_weight_psg(
        x, gy, wm, stride=2, pad=1, beta_q=3277, lr_q=5, wd_q=1 << 20, samples=[]).w_master)


def test_bad_input_is_rejected_before_the_kernel_runs(overlay, rng):
    be = overlay.backend()
    x, wt, gy = _case(rng, SHAPES[0], False)
    with pytest.raises(ShapeError, match="sample index 7 out of range"):
        be.conv_fwd(x, wt, None, (1, 10), pad=1, samples=[7])
    with pytest.raises(TypeError, match="w must be int8"):
        be.conv_fwd(x, wt.astype(np.int16), None, (1, 10), pad=1)
    with pytest.raises(ShapeError, match="bias must be int32"):
        be.conv_fwd(x, wt, np.zeros(4, np.int64), (1, 10), pad=1)
    with pytest.raises(ValueError, match="multiplier out of range"):
        be.conv_fwd(x, wt, None, (1, 70), pad=1)
    with pytest.raises(ValueError, match="beta_q"):
        be.conv_bwd_weight_psg(x, gy, np.zeros(wt.shape, np.int32), pad=1, beta_q=70000, lr_q=1)
    assert sum(s.calls for s in overlay.device.engine.stats.values()) == 0 and overlay.engine.calls == 0
