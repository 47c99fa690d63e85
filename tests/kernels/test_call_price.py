"""One kernel call priced on the training engine (core.call_price): the conv passes are
engine_pass's, and the weight gradient charges what the kernel's counters say it ran."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.core import call_price as cp
from e2train.core import perfmodel as pm
from e2train.core.shapes import ConvShape

SHAPES = [ConvShape(64, 8, 8, 8, 32, 3, 1, 1), ConvShape(64, 32, 4, 4, 32, 3, 1, 1),
          ConvShape(3, 5, 9, 7, 11, 3, 2, 1), ConvShape(2, 40, 4, 4, 70, 3, 1, 1),
          ConvShape(2, 64, 3, 3, 40, 3, 1, 1)]       # the last: two weight groups, G_msb through DDR


def _psg(sh: ConvShape, beta_q: int, samples=None, seed: int = 0):
    from e2train.core import csim
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
    g = np.clip(rng.standard_t(3, sh.y_shape) * 800, -32768, 32767).astype(np.int16)
    wm = np.zeros(sh.w_shape, np.int32)
    return csim.conv_bwd_weight_psg_stats(x, g, wm, stride=sh.stride, pad=sh.pad, beta_q=beta_q, lr_q=1,
                                          samples=samples)


@pytest.mark.parametrize("sh", SHAPES, ids=str)
def test_wgrad_charges_what_the_kernel_counted(csim_lib, sh):
    """MACs by width are the kernel's own counters: its one sweep, every block over every
    position (stats[4]: no block read twice), whatever beta_q and whatever it decided."""
    nw = sh.co * sh.ci * sh.k * sh.k
    samples = list(range(0, sh.n, 2))
    for beta_q in (0, 3277, 8000, 30000):
        r, st = _psg(sh, beta_q, samples)
        w = cp.call_work("conv_bwd_weight_psg", sh, len(samples), predictor_on=beta_q > 0,
                         predicted=r.predicted if beta_q else None)
        assert w.macs["int8xint16"] == st.exact_terms == nw * st.beats_per_tile
        assert w.macs["int4xint10"] == st.predict_terms == nw * st.beats_per_tile
        assert st.tiles_skipped == cp.blocks(sh)
        assert st.decide_beats == cp.blocks(sh) * st.beats_per_tile
        # the G_msb scratch's DDR bytes are charged exactly when the kernel used it
        w_off = cp.call_work("conv_bwd_weight_psg", sh, len(samples), predictor_on=False)
        assert st.gmsb_spilled == (nw if beta_q and cp.gmsb_in_ddr(sh) else 0)
        assert w.dram_bytes - w_off.dram_bytes == cp.GMSB_DDR_BYTES * st.gmsb_spilled
    assert cp.gmsb_in_ddr(SHAPES[-1]) and not cp.gmsb_in_ddr(SHAPES[0])


def test_conv_passes_are_the_engine_passes():
    for sh in SHAPES:
        for kernel, name in (("conv_fwd", "fwd"), ("conv_bwd_data", "bwd_data")):
            for n in (1, sh.n):
                w, cyc = cp.price_call(kernel, sh, n)
                r = pm.engine_pass(name, sh, n)
                assert cyc == r["cycles"] and w.seconds == cyc / pm.CLOCK_HZ
                assert w.total_macs == sh.macs(n) == r["macs"]
                assert w.dram_bytes == r["ddr_bytes"] + 4 * n           # + the sample list


@pytest.mark.parametrize("kernel", cp.KERNELS)
def test_skipped_samples_cost_nothing(kernel):
    sh = SHAPES[0]
    kw = {"predictor_on": False} if kernel == "conv_bwd_weight_psg" else {}
    works = [cp.call_work(kernel, sh, n, **kw) for n in (0, 8, 16, 32, 64)]
    assert works[0].total_macs == 0
    assert all(a.seconds < b.seconds and a.total_macs < b.total_macs and a.dram_bytes < b.dram_bytes
               for a, b in zip(works, works[1:]))


def test_the_price_is_what_ran_not_what_was_decided():
    """The decisions change no work (the exact sums of every weight ran): every mask prices the
    same; the predictor on adds only the decision, in the update's loop (a compare per weight;
    G_msb to the DDR scratch and back on a layer of several weight groups), and nothing when no
    sample was listed (nothing decided)."""
    for sh in (SHAPES[0], SHAPES[-1]):
        nw = sh.co * sh.ci * sh.k * sh.k
        w_all, c_all = cp.price_call("conv_bwd_weight_psg", sh, sh.n, predicted=np.ones(sh.w_shape, bool))
        w_none, c_none = cp.price_call("conv_bwd_weight_psg", sh, sh.n, predicted=np.zeros(sh.w_shape, bool))
        w_off, c_off = cp.price_call("conv_bwd_weight_psg", sh, sh.n, predictor_on=False)
        assert c_all == c_none and w_all.macs == w_none.macs == w_off.macs
        assert w_all.macs["int8xint16"] == w_all.macs["int4xint10"] == nw * sh.n * sh.ho * sh.wo
        spill = cp.GMSB_DDR_BYTES * nw if cp.gmsb_in_ddr(sh) else 0
        assert w_all.dram_bytes == w_none.dram_bytes == w_off.dram_bytes + spill
        # the loop: one weight per cycle, or DDR-bound at 16 B per cycle with the scratch
        assert c_all - c_off == int(np.ceil(max(nw, (cp.UPDATE_DDR_BYTES * nw + spill) / 16) - nw))
        assert cp.price_call("conv_bwd_weight_psg", sh, 0)[1] == cp.price_call("conv_bwd_weight_psg", sh, 0,
                                                                                predictor_on=False)[1]


def test_bad_arguments():
    sh = SHAPES[0]
    with pytest.raises(ValueError, match="unknown kernel"):
        cp.call_work("conv_fwd2", sh, 1)
    with pytest.raises(ValueError, match="n_active"):
        cp.call_work("conv_fwd", sh, sh.n + 1)
    with pytest.raises(ValueError, match="predictor off"):
        cp.call_work("conv_bwd_weight_psg", sh, 1, predictor_on=False, n_predicted=3)
    with pytest.raises(ValueError, match="shape"):
        cp.call_work("conv_bwd_weight_psg", sh, 1, predicted=np.ones((2, 2, 3, 3), bool))


def test_conv_fwd_with_bn_sums_pays_two_adds_per_output_and_the_sums_write():
    from e2train.core import call_price as cp
    from e2train.core import perfmodel as pm
    from e2train.core.shapes import ConvShape
    s = ConvShape(8, 16, 8, 8, 32, 3, 1, 1)
    w0, c0 = cp.price_call("conv_fwd", s, 5)
    w1, c1 = cp.price_call("conv_fwd", s, 5, bn_sums=True)
    outputs = 5 * s.co * s.ho * s.wo
    assert sum(w1.ops.values()) - sum(w0.ops.values()) == 2 * outputs
    assert w1.dram_bytes - w0.dram_bytes == cp.BN_SUMS_BYTES * s.co
    # the sums written out after the calls (II=2; their clear shares the bias loop: the C
    # simulation's count, tests/kernels/test_fwd_staging.py), longer than their bytes at the DDR rate
    extra = pm.fwd_channel_cycles(s, True) - pm.fwd_channel_cycles(s, False)
    assert c1 - c0 == extra == 2 * s.co > -(-cp.BN_SUMS_BYTES * s.co // pm.DDR_BYTES_PER_CYCLE)
    import pytest
    with pytest.raises(ValueError, match="only conv_fwd"):
        cp.price_call("conv_bwd_data", s, 5, bn_sums=True)


def test_conv_fwd_with_the_weights_sums_pays_an_add_a_weight_and_the_sums_write():
    """The weight load adds each |w| in its own cycle (an op a weight, no cycle); the ci sums
    written out cost ci cycles (the C simulation's count, tests/kernels/test_fwd_staging.py); with
    no sample listed the loop that forms them costs a cycle a weight."""
    import pytest

    from e2train.core import call_price as cp
    from e2train.core import perfmodel as pm
    from e2train.core.shapes import ConvShape
    s = ConvShape(8, 16, 8, 8, 32, 3, 1, 1)
    for n, loop in ((5, 0), (0, s.co * s.ci * 9)):
        w0, c0 = cp.price_call("conv_fwd", s, n, bn_sums=True)
        w1, c1 = cp.price_call("conv_fwd", s, n, bn_sums=True, w_sums=True)
        assert sum(w1.ops.values()) - sum(w0.ops.values()) == s.co * s.ci * 9
        assert w1.dram_bytes - w0.dram_bytes == cp.W_SUMS_BYTES * s.ci
        assert c1 - c0 == pm.fwd_w_sums_cycles(s, n) == s.ci + loop
    with pytest.raises(ValueError, match="only conv_fwd"):
        cp.price_call("conv_bwd_data", s, 5, w_sums=True)
