"""cocotb test of fpga/rtl/psg_engine_hls.v: the blackbox ports (ap_fifo, C struct layout).

Beats are packed as the C struct psg::InBeat and results unpacked as psg::OutBeat (see the
layout comment in the RTL and hls/include/psg_engine.h), then compared with the golden model.
"""
from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from psg_bus import clock_and_reset, lane_field, pack, u
from psg_model import confident_mask, expected_tile

LANES = int(os.environ.get("PSG_LANES", "8"))
SIM = os.environ.get("PSG_SIM", "?")


def in_beat(x_row, g_row, last: bool) -> int:
    return pack(x_row, 8) | (pack(g_row, 16) << (8 * LANES)) | (int(last) << (24 * LANES))


def out_beat(word: int) -> dict:
    base = 64 * LANES
    return dict(
        g_msb=np.array([lane_field(word, l, 64, True) for l in range(LANES)], np.int64),
        sign=np.array([lane_field(word >> base, l, 8, True) for l in range(LANES)], np.int64),
        pred=(word >> (72 * LANES)) & 0xFFFFFFFF,
        incomplete=(word >> (72 * LANES + 32)) & 0xFFFFFFFF,
        overflow=(word >> (72 * LANES + 64)) & 1,
    )


async def call(dut, rng, x, g, *, mode, xu, corr_en=0, beta_q=0, gmax=0) -> dict:
    words = [in_beat(x[b], g[b], b == x.shape[0] - 1) for b in range(x.shape[0])]
    await RisingEdge(dut.ap_clk)
    dut.mode.value, dut.x_unsigned.value, dut.corr_en.value = mode, int(xu), corr_en
    dut.beta_q.value, dut.gmsb_absmax.value = beta_q, gmax
    dut.ap_start.value = 1
    got = None
    i = 0
    for _ in range(10000):
        # ap_fifo source: empty_n with the head word on dout; consumed when in_read is high.
        have = i < len(words) and rng.random() < 0.7
        dut.in_empty_n.value = int(have)
        if have:
            dut.in_dout.value = words[i]
        dut.out_full_n.value = int(rng.random() < 0.6)
        await ReadOnly()
        if u(dut.in_read):
            assert have, f"[{SIM}] in_read asserted while in_empty_n was low"
            i += 1
        if u(dut.out_write):
            assert u(dut.out_full_n), f"[{SIM}] out_write asserted while out_full_n was low"
            assert got is None, f"[{SIM}] more than one result word for one tile"
            got = out_beat(u(dut.out_din))
        start_taken = u(dut.ap_ready)
        done = u(dut.ap_done)
        await RisingEdge(dut.ap_clk)
        if start_taken:
            dut.ap_start.value = 0
        if done:
            break
    else:
        raise AssertionError(f"[{SIM}] no ap_done")
    dut.in_empty_n.value = 0
    assert i == len(words), f"[{SIM}] engine read {i} of {len(words)} beats"
    assert got is not None, f"[{SIM}] no result word"
    return got


@cocotb.test()
async def blackbox_ports_vs_golden(dut):
    rng = random.Random(5)
    nrng = np.random.default_rng(5)
    await clock_and_reset(dut, ap_start=0, ap_continue=1, in_empty_n=0, out_full_n=0)
    all_on = (1 << LANES) - 1
    for t in range(6):
        xu = bool(t % 2)
        beats = int(nrng.integers(1, 20))
        x = (nrng.integers(0, 256, (beats, LANES)).astype(np.uint8) if xu
             else nrng.integers(-128, 128, (beats, LANES)).astype(np.int8))
        g = (nrng.normal(0, 9000, (beats, LANES)) + nrng.integers(-4000, 4000, LANES)).clip(-32768, 32767).astype(np.int16)
        pre = expected_tile(x, g, decide=False)
        got = await call(dut, rng, x, g, mode=0, xu=xu)
        np.testing.assert_array_equal(got["g_msb"], pre.g_msb, err_msg=f"[{SIM}] tile {t} predict: G_msb")
        np.testing.assert_array_equal(got["sign"], pre.sign, err_msg=f"[{SIM}] tile {t} predict: sign")
        gmax = int(np.abs(pre.g_msb).max()) + t * 100
        beta_q = 3277 * (t + 1)
        corr_en = all_on & ~confident_mask(pre.g_msb, beta_q, gmax) & ~(1 << (t % LANES))
        exp = expected_tile(x, g, decide=True, beta_q=beta_q, gmsb_absmax=gmax, corr_en=corr_en)
        got = await call(dut, rng, x, g, mode=1, xu=xu, corr_en=corr_en, beta_q=beta_q, gmax=gmax)
        what = f"[{SIM}] tile {t} decide (beta_q {beta_q}, gmax {gmax}, corr_en {corr_en:#x})"
        np.testing.assert_array_equal(got["sign"], exp.sign, err_msg=what + ": sign")
        assert got["pred"] == sum(1 << l for l in range(LANES) if exp.pred[l]), what + ": predicted mask"
        assert got["incomplete"] == sum(1 << l for l in range(LANES) if exp.incomplete[l]), what + ": incomplete mask"
        assert got["overflow"] == 0, what + ": overflow"
