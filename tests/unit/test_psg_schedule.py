"""PSG scheduled on the engine (core.psg_schedule): what the exact sweep still reads, by hand."""
import numpy as np
import pytest

from e2train.core import engine_map as em
from e2train.core import perfmodel, psg_schedule as ps
from e2train.core.shapes import ConvShape


def test_exact_need_by_hand():
    d = np.ones((2, 3, 3, 3), bool)
    d[1, 2, 0, 1] = False                        # one undecided weight: output channel 1, input channel 2
    need = ps.exact_need(d, rows=1, cols=9)
    assert need["undecided"] == 1 and need["weights"] == 54
    assert list(need["co_need"]) == [False, True] and list(need["ci_need"]) == [False, False, True]
    assert need["co_skip_share"] == 0.5 and need["ci_skip_share"] == pytest.approx(2 / 3)
    # blocks of 1 row x 9 columns (one input channel's taps): only (co 1, ci 2) runs
    assert need["blocks_need"].sum() == 1 and need["block_skip_share"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="co, ci, k, k"):
        ps.exact_need(np.ones((2, 3, 3), bool))


def test_exact_sweep_reads_only_channels_with_an_undecided_weight():
    s = ConvShape(4, 16, 8, 8, 16, 3, 1, 1)
    allneed = ps.all_needed(s)
    assert ps.exact_sweep_ddr(s, allneed) == perfmodel.wgrad_sweep_ddr(s)   # nothing decided: a full sweep
    assert ps.exact_sweep_ddr(s, ps.exact_need(np.ones(s.w_shape, bool))) == 0
    d = np.ones(s.w_shape, bool)
    d[3, 5, 1, 1] = False
    assert ps.exact_sweep_ddr(s, ps.exact_need(d)) == 2 * 4 * 8 * 8 + 4 * 8 * 8      # g of co 3, x of ci 5
    with pytest.raises(ValueError, match="decisions are for weights"):
        ps.exact_sweep_ddr(ConvShape(4, 8, 8, 8, 16, 3, 1, 1), allneed)


def test_all_decided_with_g_shared_reads_x_once_and_runs_no_exact_call():
    s = ConvShape(4, 16, 8, 8, 16, 3, 1, 1)
    w = ps.scheduled_wgrad_work(s, ps.exact_need(np.ones(s.w_shape, bool)), g_shared=True)
    nw = 16 * 16 * 9
    assert w.dram_bytes == 4 * 16 * 8 * 8 + 9 * nw
    assert "int8xint16" not in w.macs and w.macs["int4xint10"] == s.macs()
    # the predictor's own g read when it is not on the input-gradient pass's stream
    w2 = ps.scheduled_wgrad_work(s, ps.exact_need(np.ones(s.w_shape, bool)), g_shared=False)
    assert w2.dram_bytes - w.dram_bytes == 2 * 4 * 16 * 8 * 8


def test_gmsb_and_flags_fit_on_chip_for_resnet20():
    for _, s in perfmodel.resnet20_cifar(64):
        assert ps.gmsb_fits(s)
        # |G_msb| <= 15 * 512 per product over every position feeding a weight: within 35 bits + sign
        assert 15 * 512 * s.n * s.ho * s.wo < 2 ** (ps.GMSB_SLOT_BITS - 1)
    assert ps.flag_bram36(64 * 64 * 9) == 2
    assert 64 * 64 * 9 <= 2 * em.WGRAD_PART_WEIGHTS


def test_a_layer_that_fits_the_chunk_buffers_is_not_read_twice():
    s = ConvShape(4, 16, 8, 8, 16, 3, 1, 1)            # x 4 KB + g 8 KB: within the chunk buffers
    need = ps.all_needed(s, 0.7)
    assert ps.reused_bytes(s, need, g_shared=False) == 4 * 16 * 64 + 2 * 4 * 16 * 64
    assert ps.reused_bytes(s, need, g_shared=True) == 4 * 16 * 64
    w = ps.scheduled_wgrad_work(s, need, g_shared=False)
    assert w.dram_bytes == ps.predictor_sweep_ddr(s, g_shared=False, hosted=True) + 9 * 16 * 16 * 9
    big = ConvShape(64, 16, 32, 32, 16, 3, 1, 1)        # 3 MB of x and g: only the buffers' worth is reused
    assert ps.reused_bytes(big, ps.all_needed(big), g_shared=False) == ps.chunk_buffer_bytes()
