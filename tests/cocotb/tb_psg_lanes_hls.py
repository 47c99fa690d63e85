"""cocotb test of fpga/rtl/psg_lanes_hls.v: the lane array's blackbox ports (ap_fifo, the C
struct layout of psg::LanesHead / LanesBeat / LanesOut in hls/include/psg_lanes.h).

Head and window beats are packed as the C structs, the result unpacked as LanesOut, and the
lanes compared with the golden model (tb_psg_lanes.expected) over several rounds, with
random empty/full flags on the FIFOs.
"""
from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from psg_bus import clock_and_reset, lane_field, pack, u
from psg_model import Round, expected
from tb_psg_lanes import EXACT, GS, LANES, SEED, SIM, XS, random_round


def head_word(r: Round) -> int:
    return (pack(r.xsel, 8) | pack(r.gsel, 8) << (8 * LANES) | pack(r.init_msb, 64) << (16 * LANES)
            | pack(r.init_exact, 64) << (80 * LANES))


def beat_word(r: Round, b: int) -> int:
    return pack(r.x[b], 8) | pack(r.g[b], 16) << (8 * XS) | int(b == r.x.shape[0] - 1) << (8 * XS + 16 * GS)


async def call(dut, rng: random.Random, r: Round) -> tuple[np.ndarray, np.ndarray]:
    words = [beat_word(r, b) for b in range(r.x.shape[0])]
    await RisingEdge(dut.ap_clk)
    dut.x_unsigned.value, dut.n_active.value = int(r.x_unsigned), r.n_active
    dut.msb_en.value, dut.exact_en.value = int(r.msb_en), int(r.exact_en)
    dut.ap_start.value = 1
    head_sent, i, got, started = False, 0, None, False
    for _ in range(5000):
        # ap_fifo sources: empty_n with the head word on dout; consumed when *_read is high.
        have_head = not head_sent and rng.random() < 0.5
        dut.head_empty_n.value = int(have_head)
        dut.head_dout.value = head_word(r)
        have = i < len(words) and rng.random() < 0.7
        dut.in_empty_n.value = int(have)
        if have:
            dut.in_dout.value = words[i]
        dut.out_full_n.value = int(rng.random() < 0.6)
        await ReadOnly()
        if u(dut.head_read):
            assert have_head, f"[{SIM}] head_read asserted while head_empty_n was low"
            head_sent = True
        if u(dut.in_read):
            assert have, f"[{SIM}] in_read asserted while in_empty_n was low"
            assert head_sent, f"[{SIM}] a window beat was read before the head"
            i += 1
        if u(dut.out_write):
            assert u(dut.out_full_n), f"[{SIM}] out_write asserted while out_full_n was low"
            assert got is None, f"[{SIM}] more than one result word for one round"
            got = u(dut.out_din)
        done = u(dut.ap_done)
        started = started or bool(u(dut.ap_ready))
        await RisingEdge(dut.ap_clk)
        if started:
            dut.ap_start.value = 0
        if done:
            break
    else:
        raise AssertionError(f"[{SIM}] no ap_done within 5000 cycles")
    dut.ap_start.value = 0
    assert got is not None and i == len(words), f"[{SIM}] result {got is not None}, {i}/{len(words)} beats read"
    msb = np.array([lane_field(got, l, 64, True) for l in range(LANES)], np.int64)
    exact = np.array([lane_field(got >> (64 * LANES), l, 64, True) for l in range(EXACT)], np.int64)
    return msb, exact


@cocotb.test()
async def blackbox_ports_vs_golden(dut):
    rng = random.Random(SEED)
    nrng = np.random.default_rng(SEED + 10)
    await clock_and_reset(dut, ap_start=0, ap_continue=1, head_empty_n=0, in_empty_n=0, out_full_n=0)
    for k in range(6):
        r = random_round(nrng, beats=int(nrng.integers(1, 20)), extreme=k == 5,
                         msb_en=k != 2, exact_en=k != 1)
        msb, exact = await call(dut, rng, r)
        exp_msb, exp_exact = expected(r)
        bad = [f"lane {l} G_msb: expected {int(exp_msb[l])}, got {int(msb[l])}" for l in range(LANES)
               if exp_msb[l] != msb[l]]
        bad += [f"lane {l} G: expected {int(exp_exact[l])}, got {int(exact[l])}" for l in range(EXACT)
                if exp_exact[l] != exact[l]]
        assert not bad, f"[{SIM}] round {k} through the blackbox ports: " + "; ".join(bad[:6])
