"""The block operations (e2t_engine ops 3..5) and conv_fwd's BN sums on the PYNQ path: the exact
register writes of each call, PynqBackend == the golden models bit for bit through the simulated
board, bad registers reported as the kernel's status in one line with nothing written, and the
simulated board's modelled time and energy of a block call == core.call_price.price_block."""
from __future__ import annotations

import numpy as np
import pynq
import pytest

from e2train.core import call_price, golden, perfmodel
from e2train.core.block_ops import Shortcut
from e2train.core.energy import EnergyModel
from e2train.core.fixedpoint import Dyadic
from e2train.device import kernel_iface as ki
from e2train.device.driver import KernelError


# -- random calls -------------------------------------------------------------------------------
def _act_case(rng, n, c, h, w, *, residual, stride=1, lo=0, rc=None, extreme=False):
    """A bn_act call whose outputs spread over the code range (a, b, r_mult ~ 2^shift), or with
    coefficients at the limits (|a|, |r_mult| just under 2^24, |b| under 2^44: mostly saturated)."""
    y = rng.integers(-128, 128, (n, c, h, w)).astype(np.int8)
    shift = 40 if extreme else int(rng.integers(10, 14))
    top_m, top_c = ((1 << 24) - 1, (1 << 44) - 1) if extreme else (1 << shift, 1 << (shift + 7))
    a = rng.integers(-top_m, top_m + 1, c)
    b = rng.integers(-top_c, top_c + 1, c)
    if extreme:
        a[0], b[-1] = top_m, -top_c
    kw = {}
    if residual:
        rc = c - lo if rc is None else rc
        # a source a little larger than the stride needs (the gather reads every stride-th)
        r = rng.integers(0, 256, (n, rc, h * stride + int(stride > 1), w * stride)).astype(np.uint8)
        kw = dict(r=r, r_mult=-top_m if extreme else int(rng.integers(1, top_m)), shortcut=Shortcut(stride, lo))
    return (y, a, b, shift), kw


def _samples(rng, n, which):
    return {"all": None, "empty": [], "some": [int(i) for i in rng.permutation(n)[: max(1, n // 2)]]}[which]


# -- register level ------------------------------------------------------------------------------
class RecordingMMIO:
    """Forwards to pynq's MMIO and records every write, in order (what the bus sees)."""

    def __init__(self, mmio):
        self._mmio = mmio
        self.writes: list[tuple[int, int]] = []

    def write(self, offset, value):
        self.writes.append((int(offset), int(value)))
        self._mmio.write(offset, value)

    def __getattr__(self, name):
        return getattr(self._mmio, name)


def _expected_writes(op: str, values: dict) -> list[tuple[int, int]]:
    """Every e2t_engine argument register in map order: op's code, the values of the op's own
    arguments (pointers as 32-bit physical addresses), 0 in all the others; then ap_start."""
    assert set(values) <= set(ki.PASSES[op].args), set(values) - set(ki.PASSES[op].args)
    out = []
    for a in ki.E2T_ENGINE.args:
        v = ki.PASSES[op].op if a.name == "op" else values.get(a.name, 0)
        out.append((ki.E2T_ENGINE.offset(a.name), int(v) & 0xFFFF_FFFF))
    return out + [(ki.CTRL, ki.AP_START)]


def _record(overlay):
    rec = RecordingMMIO(overlay.engine.mmio)
    overlay.engine.mmio = rec
    return rec


def _addr(be, role):
    return be._bufs[role].device_address


def test_bn_act_writes_exactly_its_registers(overlay, rng):
    be = overlay.backend()
    rec = _record(overlay)
    (y, a, b, shift), kw = _act_case(rng, 3, 4, 3, 5, residual=True, stride=2, lo=1, rc=2)
    kw["r_mult"] = -12345                                       # a negative int: its 32-bit two's complement
    be.bn_act(y, a, b, shift, samples=[2, 0], **kw)
    vals = dict(b_y=_addr(be, "b_y"), b_o=_addr(be, "b_o"), b_r=_addr(be, "b_r"), b_coef=_addr(be, "b_coef"),
                b_sums=_addr(be, "b_sums"), samples=_addr(be, "samples"), n_samples=2, n=3, h=3, wd=5, co=4,
                b_flags=ki.BF_RELU | ki.BF_RESIDUAL, b_shift=shift, b_m1=kw["r_mult"], r_c=2, r_h=7, r_w=10,
                r_stride=2, r_lo=1)
    assert rec.writes == _expected_writes("bn_act", vals)
    assert set(vals) == set(ki.PASSES["bn_act"].args)     # the call sets every argument the op reads
    assert (ki.E2T_ENGINE.offset("b_m1"), (1 << 32) - 12345) in rec.writes
    # the coefficient and the sample-list buffers as kernel_iface documents them
    dev = overlay.device
    assert np.array_equal(dev._ddr_array(vals["b_coef"], (2, 4), np.int64, "b_coef"), np.stack([a, b]))
    assert dev._ddr_array(vals["samples"], (2,), np.int32, "samples").tolist() == [2, 0]
    # without the shortcut and the ReLU: no source registers, no flags
    rec.writes.clear()
    be.bn_act(y, a, b, shift, relu=False)
    vals.update(b_r=0, r_c=0, r_h=0, r_w=0, r_stride=0, r_lo=0, b_m1=0, b_flags=0, n_samples=3, b_o=_addr(be, "b_o"),
                samples=_addr(be, "samples"))
    assert rec.writes == _expected_writes("bn_act", vals)


def test_bn_bwd_reduce_and_apply_write_exactly_their_registers(overlay, rng):
    be = overlay.backend()
    rec = _record(overlay)
    n, c, h, w = 2, 3, 4, 4
    o = rng.integers(0, 256, (n, c, h, w)).astype(np.uint8)
    y = rng.integers(-128, 128, (n, c, h, w)).astype(np.int8)
    g_a = rng.integers(-30000, 30000, (n, c, h, w)).astype(np.int16)
    g_b = rng.integers(-30000, 30000, (n, 5, 2, 2)).astype(np.int16)       # the next block: stride 2, lo 2
    r = rng.integers(0, 256, (n, 3, h, w)).astype(np.uint8)
    be.bn_bwd_reduce(o, y, g_a, ma=7, g_b=g_b, mb=-3, b_shortcut=Shortcut(2, 2), shift=3, r=r,
                     r_shortcut=Shortcut(1, 0), samples=[1])
    vals = {p: _addr(be, p) for p in ("b_y", "b_o", "b_r", "b_ga", "b_gb", "b_gm", "b_sums", "samples")}
    vals.update(n_samples=1, n=n, h=h, wd=w, co=c, b_flags=ki.BF_RESIDUAL | ki.BF_TWO_SOURCES, b_shift=3, b_m1=7,
                b_m2=-3, r_c=3, r_h=4, r_w=4, r_stride=1, r_lo=0, gb_c=5, gb_h=2, gb_w=2, gb_stride=2, gb_lo=2)
    assert set(vals) == set(ki.PASSES["bn_bwd_reduce"].args)
    assert rec.writes == _expected_writes("bn_bwd_reduce", vals)
    rec.writes.clear()
    g_m = rng.integers(-30000, 30000, (n, c, h, w)).astype(np.int16)
    p, q, t = rng.integers(-1000, 1000, (3, c))
    be.bn_bwd_apply(g_m, y, p, q, t, 9, samples=[0, 1])
    vals = {k: _addr(be, k) for k in ("b_y", "b_gm", "b_gy", "b_coef", "samples")}
    vals.update(n_samples=2, n=n, h=h, wd=w, co=c, b_shift=9)
    assert set(vals) == set(ki.PASSES["bn_bwd_apply"].args)
    assert rec.writes == _expected_writes("bn_bwd_apply", vals)
    assert np.array_equal(overlay.device._ddr_array(vals["b_coef"], (3, c), np.int64, "b_coef"), np.stack([p, q, t]))


def test_conv_fwd_stats_flag_and_buffer(overlay, rng):
    be = overlay.backend()
    rec = _record(overlay)
    x = rng.integers(0, 256, (2, 3, 5, 5)).astype(np.uint8)
    w = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    stats = np.zeros((4, 2), np.int64)
    be.conv_fwd(x, w, None, (1, 10), pad=1, stats=stats)
    regs = dict(rec.writes)
    assert regs[ki.E2T_ENGINE.offset("b_flags")] == ki.BF_BN_SUMS
    assert regs[ki.E2T_ENGINE.offset("stats")] == _addr(be, "stats")
    rec.writes.clear()
    be.conv_fwd(x, w, None, (1, 10), pad=1)                    # no sums asked: flag and pointer 0
    regs = dict(rec.writes)
    assert regs[ki.E2T_ENGINE.offset("b_flags")] == 0 and regs[ki.E2T_ENGINE.offset("stats")] == 0
    # the driver keeps the flag and the buffer together
    with pytest.raises(KernelError, match="BF_BN_SUMS or BF_W_SUMS bit and a stats buffer go together"):
        overlay.engine.conv_fwd(b_flags=ki.BF_BN_SUMS, x=0)
    with pytest.raises(KernelError, match="BF_BN_SUMS or BF_W_SUMS bit and a stats buffer go together"):
        overlay.engine.conv_fwd(b_flags=ki.BF_W_SUMS, x=0)


@pytest.mark.parametrize("samples", [None, [1], []])
def test_conv_fwd_weights_sums_come_back_after_the_bn_sums(overlay, rng, samples):
    """b_flags W sums: the board's weight load writes the ci sums of |w| into the stats buffer
    after the BN sums (int64[2*co + ci]); the backend hands both back, golden's to the bit. With
    no sample listed the call still runs (the sums need it); without the sums it is skipped."""
    from e2train.core import golden
    be = overlay.backend()
    rec = _record(overlay)
    x = rng.integers(0, 256, (2, 3, 5, 5)).astype(np.uint8)
    w = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    stats, w_sums = np.full((4, 2), 9, np.int64), np.full(3, -1, np.int64)
    y = be.conv_fwd(x, w, None, (1, 10), pad=1, stats=stats, w_sums=w_sums, samples=samples)
    regs = dict(rec.writes)
    assert regs[ki.E2T_ENGINE.offset("b_flags")] == ki.BF_BN_SUMS | ki.BF_W_SUMS
    st = overlay.device._ddr_array(regs[ki.E2T_ENGINE.offset("stats")], (2 * 4 + 3,), np.int64, "stats")
    want_st, want_ws = np.zeros((4, 2), np.int64), np.zeros(3, np.int64)
    want_y = golden.conv_fwd(x, w, None, (1, 10), pad=1, stats=want_st, w_sums=want_ws, samples=samples)
    assert np.array_equal(w_sums, want_ws) and np.array_equal(st[8:], want_ws)
    assert np.array_equal(stats, want_st) and np.array_equal(y, want_y)
    assert np.array_equal(want_ws, np.abs(w.astype(np.int64)).sum(axis=(0, 2, 3)))
    rec.writes.clear()
    w_only = np.zeros(3, np.int64)
    be.conv_fwd(x, w, None, (1, 10), pad=1, w_sums=w_only, samples=samples)       # the weights' sums alone
    assert dict(rec.writes)[ki.E2T_ENGINE.offset("b_flags")] == ki.BF_W_SUMS and np.array_equal(w_only, want_ws)


# -- PynqBackend == golden -----------------------------------------------------------------------
@pytest.mark.parametrize("which", ["all", "some", "empty"])
@pytest.mark.parametrize("geom", [dict(residual=False), dict(residual=True), dict(residual=True, stride=2),
                                  dict(residual=True, stride=2, lo=2, rc=3)])
def test_block_ops_equal_golden(any_overlay, rng, which, geom):
    be = any_overlay.backend()
    n, c, h, w = 4, 5, 3, 4
    samples = _samples(rng, n, which)
    for relu, extreme in ((True, True), (False, False), (True, False)):
        (y, a, b, shift), kw = _act_case(rng, n, c, h, w, **geom, extreme=extreme)
        got = be.bn_act(y, a, b, shift, samples=samples, relu=relu, **kw)
        want = golden.bn_act(y, a, b, shift, samples=samples, relu=relu, **kw)
        for gv, wv in zip(got, want):
            assert gv.dtype == wv.dtype and np.array_equal(gv, wv)
    o = got[0]
    if which != "empty" or "r" in kw:      # a case that tests something: codes inside the range
        assert 0 < np.count_nonzero(o) < o.size and (o[o > 0] < 255).any()
    g_a = rng.integers(-32768, 32768, y.shape).astype(np.int16)
    red_kw = [dict(), dict(ma=3, shift=2)]
    if geom.get("stride", 1) == 1:
        red_kw.append(dict(ma=5, g_b=rng.integers(-32768, 32768, (n, c + 2, h, w)).astype(np.int16), mb=-7,
                           b_shortcut=Shortcut(1, 1), shift=4))
    else:           # the next block subsamples this one's output
        red_kw.append(dict(ma=5, g_b=rng.integers(-32768, 32768, (n, c, 2, 2)).astype(np.int16), mb=9,
                           b_shortcut=Shortcut(2, 0), shift=4))
    if "r" in kw:
        red_kw += [dict(k, r=kw["r"], r_shortcut=kw["shortcut"]) for k in red_kw[1:]]
    for rk in red_kw:
        got = be.bn_bwd_reduce(o, y, g_a, samples=samples, **rk)
        want = golden.bn_bwd_reduce(o, y, g_a, samples=samples, **rk)
        for gv, wv in zip(got, want):
            assert gv.dtype == wv.dtype and gv.shape == wv.shape and np.array_equal(gv, wv), rk.keys()
    g_m = got[0]
    p, q = rng.integers(-(1 << 23) + 1, 1 << 23, (2, c))
    t = rng.integers(-(1 << 43), 1 << 43, c)
    for shift in (0, 20, 40):
        gy = be.bn_bwd_apply(g_m, y, p, q, t, shift, samples=samples)
        assert gy.dtype == np.int16 and np.array_equal(gy, golden.bn_bwd_apply(g_m, y, p, q, t, shift,
                                                                                 samples=samples))


def test_bn_act_without_shortcut_returns_zeros_for_unlisted_samples_whatever_the_buffers_held(any_overlay, rng):
    """Without a shortcut the kernel writes only the listed samples' rows (out, pooled sums,
    maxima); the others must come back 0, as golden's, not what an earlier call left there."""
    be = any_overlay.backend()
    (y, a, b, shift), _ = _act_case(rng, 4, 5, 3, 4, residual=False)
    full = be.bn_act(y, a, b, shift)                        # every row of the buffers written
    assert all(np.count_nonzero(v[[0, 2]]) for v in full)
    got = be.bn_act(y, a, b, shift, samples=[1, 3])
    want = golden.bn_act(y, a, b, shift, samples=[1, 3])
    for gv, wv in zip(got, want):
        assert gv.dtype == wv.dtype and np.array_equal(gv, wv)


@pytest.mark.parametrize("which", ["all", "some", "empty"])
def test_conv_fwd_stats_equal_golden(any_overlay, rng, which):
    be = any_overlay.backend()
    x = rng.integers(-128, 128, (4, 3, 6, 6)).astype(np.int8)
    w = rng.integers(-128, 128, (5, 3, 3, 3)).astype(np.int8)
    bias = rng.integers(-3000, 3000, 5).astype(np.int32)
    samples = _samples(rng, 4, which)
    for relu in (False, True):
        st_got, st_want = np.full((5, 2), 99, np.int64), np.full((5, 2), 99, np.int64)
        out0 = np.full((4, 5, 3, 3), 7, np.uint8 if relu else np.int8)
        got = be.conv_fwd(x, w, bias, Dyadic(300, 16), stride=2, pad=1, relu=relu, samples=samples,
                          out=out0.copy(), stats=st_got)
        want = golden.conv_fwd(x, w, bias, Dyadic(300, 16), stride=2, pad=1, relu=relu, samples=samples,
                               out=out0.copy(), stats=st_want)
        assert np.array_equal(got, want) and np.array_equal(st_got, st_want)
        if which != "empty":
            assert st_got[:, 1].sum() > 0


def test_skipped_block_calls_do_not_run(overlay, rng):
    """An empty sample list with nothing else to do is no call (its result is known: zeros);
    one that still has work (the shortcut, g_m of every sample) runs."""
    be = overlay.backend()
    k = overlay.device.engine
    (y, a, b, shift), kw = _act_case(rng, 3, 2, 2, 2, residual=True)
    kw["r"][:] = 200
    be.bn_act(y, a, b, shift, samples=[])                       # no shortcut: all zeros
    be.bn_bwd_apply(np.ones(y.shape, np.int16), y, a, a, b, shift, samples=[])
    assert be.skipped_calls["bn_act"] == 1 and be.skipped_calls["bn_bwd_apply"] == 1
    assert k.stats["bn_act"].calls == 0 and k.stats["bn_bwd_apply"].calls == 0
    out = be.bn_act(y, a, b, shift, samples=[], **kw)[0]          # the shortcut alone still runs
    assert k.stats["bn_act"].calls == 1 and out.any()
    be.bn_bwd_reduce(out, y, np.ones(y.shape, np.int16), samples=[])
    assert k.stats["bn_bwd_reduce"].calls == 1


# -- bad registers: the kernel's status, one line, nothing written --------------------------------
def _raw_bn_act(n=2, c=3, h=2, w=2):
    bufs = dict(b_y=pynq.allocate((n, c, h, w), np.int8), b_o=pynq.allocate((n, c, h, w), np.uint8),
                b_coef=pynq.allocate((2, c), np.int64), b_sums=pynq.allocate((n * c + n,), np.int64),
                samples=pynq.allocate((n,), np.int32))
    bufs["samples"][:] = np.arange(n)
    bufs["b_coef"][:] = 1
    bufs["b_o"][:] = 0x5A
    regs = dict(b_r=0, n_samples=n, n=n, h=h, wd=w, co=c, b_flags=ki.BF_RELU, b_shift=2, b_m1=0, r_c=0, r_h=0,
                r_w=0, r_stride=0, r_lo=0)
    return bufs, regs


@pytest.mark.parametrize("change, bit, why", [
    (dict(b_shift=41), 1, "shift 41 outside 0..40"),
    (dict(b_m1=1 << 24), 1, "reaches 2^24"),
    (dict(co=0), 1, "outside the block unit's limits"),
    (dict(n_samples=3), 2, "n_samples 3 outside"),
    (dict(b_flags=ki.BF_RELU | ki.BF_RESIDUAL, r_c=3, r_h=1, r_w=2, r_stride=1), 1, "does not cover"),
    (dict(b_flags=ki.BF_RELU | ki.BF_RESIDUAL, r_c=2, r_h=2, r_w=2, r_stride=1, r_lo=2), 1, "exceed 3"),
])
def test_bad_registers_are_a_one_line_status(overlay, change, bit, why):
    bufs, regs = _raw_bn_act()
    if change.get("b_flags", 0) & ki.BF_RESIDUAL:
        bufs["b_r"] = pynq.allocate((2, change["r_c"], change["r_h"], change["r_w"]), np.uint8)
    with pytest.raises(KernelError) as e:
        overlay.engine.bn_act(**{**regs, **bufs, **change})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"bn_act: e2t_engine returned status {bit:#x} ("), msg
    assert ki.STATUS_BITS[bit] in msg and "its outputs are not valid" in msg
    assert why in overlay.device.engine.last_error
    bufs["b_o"].invalidate()
    assert (bufs["b_o"] == 0x5A).all()                       # nothing written
    assert overlay.device.engine.stats["bn_act"].calls == 0 and overlay.device.modelled_seconds == 0
    # the same registers, corrected, run
    overlay.engine.bn_act(**{**regs, **{k: v for k, v in bufs.items() if k != "b_r"}})
    assert overlay.device.engine.stats["bn_act"].calls == 1


def test_bad_reduce_and_apply_registers_write_nothing(overlay):
    n, c, h, w = 2, 3, 4, 4
    shp = (n, c, h, w)
    bufs = dict(b_y=pynq.allocate(shp, np.int8), b_o=pynq.allocate(shp, np.uint8), b_ga=pynq.allocate(shp, np.int16),
                b_gb=pynq.allocate((n, 3, 3, 3), np.int16), b_gm=pynq.allocate(shp, np.int16),
                b_sums=pynq.allocate((3 * c + 2 * n,), np.int64), samples=pynq.allocate((n,), np.int32))
    bufs["samples"][:] = [1, 0]
    bufs["b_gm"][:] = 77
    regs = dict(b_r=0, n_samples=n, n=n, h=h, wd=w, co=c, b_flags=ki.BF_TWO_SOURCES, b_shift=1, b_m1=1, b_m2=1,
                r_c=0, r_h=0, r_w=0, r_stride=0, r_lo=0, gb_c=3, gb_h=3, gb_w=3, gb_stride=2, gb_lo=0)
    # o (4x4) at stride 2 covers 2x2, not g_b's 3x3
    with pytest.raises(KernelError, match=r"^bn_bwd_reduce: e2t_engine returned status 0x1 \(shape, scalar"):
        overlay.engine.bn_bwd_reduce(**regs, **bufs)
    assert "does not cover (3, 3) at stride 2" in overlay.device.engine.last_error
    bufs["b_gm"].invalidate()
    assert (bufs["b_gm"] == 77).all()
    overlay.engine.bn_bwd_reduce(**{**regs, **bufs, "gb_stride": 1})       # 4x4 covers 3x3 at stride 1
    bufs["b_gm"].invalidate()
    assert not (bufs["b_gm"] == 77).any()
    gy = pynq.allocate(shp, np.int16)
    gy[:] = 5
    coef = pynq.allocate((3, c), np.int64)
    app = dict(b_y=bufs["b_y"], b_gm=bufs["b_gm"], b_gy=gy, b_coef=coef, samples=bufs["samples"], n_samples=n,
               n=n, h=h, wd=w, co=c)
    with pytest.raises(KernelError, match="bn_bwd_apply: e2t_engine returned status 0x1 "):
        overlay.engine.bn_bwd_apply(**app, b_shift=41)
    with pytest.raises(KernelError, match="bn_bwd_apply: e2t_engine returned status 0x2 "):
        overlay.engine.bn_bwd_apply(**{**app, "n_samples": 3}, b_shift=4)
    gy.invalidate()
    assert (gy == 5).all() and overlay.device.engine.stats["bn_bwd_apply"].calls == 0


# -- accounting ----------------------------------------------------------------------------------
def test_block_calls_are_priced_by_price_block(overlay, rng):
    be = overlay.backend()
    dev = overlay.device
    model = EnergyModel.zynq7020()
    n, c, h, w = 6, 4, 4, 4
    (y, a, b, shift), kw = _act_case(rng, n, c, h, w, residual=True)
    g = rng.integers(-1000, 1000, y.shape).astype(np.int16)
    g_b = rng.integers(-1000, 1000, (n, c, 2, 2)).astype(np.int16)
    before = (dev.modelled_seconds, dev.modelled_dynamic_j)
    o = be.bn_act(y, a, b, shift, samples=[0, 3], **kw)[0]
    be.bn_act(y, a, b, shift, samples=[1])
    be.bn_bwd_reduce(o, y, g, samples=[0, 3])
    be.bn_bwd_reduce(o, y, g, g_b=g_b, mb=2, b_shortcut=Shortcut(2, 0), r=kw["r"], samples=[0, 3, 5])
    be.bn_bwd_apply(g, y, a % 1000, a % 999, b % 5, 8, samples=[2, 4, 5, 1])
    calls = [("bn_act", 2, dict(residual=True)), ("bn_act", 1, dict(residual=False)),
             ("bn_bwd_reduce", 2, dict(two_sources=False, gate=False)),
             ("bn_bwd_reduce", 3, dict(two_sources=True, gate=True)), ("bn_bwd_apply", 4, {})]
    priced = [call_price.price_block(op, (n, c, h, w), k, **fl) for op, k, fl in calls]
    assert dev.modelled_seconds - before[0] == pytest.approx(sum(cy for _, cy in priced) / perfmodel.CLOCK_HZ,
                                                             rel=1e-12)
    assert dev.modelled_dynamic_j - before[1] == pytest.approx(sum(model.dynamic_j(wk) for wk, _ in priced),
                                                               rel=1e-12)
    st = dev.engine.stats
    for op in call_price.BLOCK_OPS:
        mine = [p for (o_, _, _), p in zip(calls, priced) if o_ == op]
        assert st[op].calls == len(mine) and st[op].cycles == sum(cy for _, cy in mine)
        assert st[op].samples == sum(k for o_, k, _ in calls if o_ == op)
    # the flags change the price: a residual bn_act streams every sample, a listed one only its own
    assert priced[0][1] != call_price.price_block("bn_act", (n, c, h, w), 2)[1]
    act = dev.activity()
    assert act["kernels"]["bn_bwd_reduce"]["calls"] == 2 and act["block_impl"] in ("golden", "csim")
