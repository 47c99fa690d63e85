"""cocotb test of one lane, fpga/rtl/psg_lane.v: its MSB split against the contract's
(``core.fixedpoint.msb_split_x/g``) on every tie and its neighbours (run by
test_psg_lane_split.py).

The lane streams one (x, g) pair per cycle into acc_msb = sum x_h*g_h and acc_exact =
sum x*g. With g = 64 (g_h = 1) each beat adds x_h, with x = 16 (x_h = 1) it adds g_h, so
the accumulator's value after every beat checks one split at a time. Every assertion on a
negative tie fails under contract v1 (round half up). PSG_SIM names the simulator.
"""
from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from e2train.core import fixedpoint as fxp
from psg_bus import clock_and_reset, s

SIM = os.environ.get("PSG_SIM", "?")
# A beat presented before rising edge t is in the accumulators after edge t + 2: three
# falling edges after it was driven.
LATENCY = 2


async def stream(dut, x: np.ndarray, g: np.ndarray, x_unsigned: bool) -> tuple[list[int], list[int]]:
    """Load zero, push the pairs back to back, return acc_msb and acc_exact after each beat.
    Inputs change and outputs are sampled at falling edges, half a cycle from every rising one."""
    await FallingEdge(dut.clk)
    dut.x_unsigned.value = int(x_unsigned)
    dut.msb_en.value = 1
    dut.corr_en.value = 1
    dut.init_msb.value = 0
    dut.init_exact.value = 0
    dut.load.value = 1
    await FallingEdge(dut.clk)
    dut.load.value = 0
    msb, exact = [], []
    n = len(x)
    for t in range(n + LATENCY):
        dut.in_valid.value = int(t < n)
        if t < n:
            dut.in_x.value = int(x[t]) & 0xFF
            dut.in_g.value = int(g[t]) & 0xFFFF
        await FallingEdge(dut.clk)
        if t >= LATENCY:
            msb.append(s(dut.acc_msb))
            exact.append(s(dut.acc_exact))
    return msb[:n], exact[:n]


def check(name: str, x, g, got_msb, got_exact, x_h, g_h) -> None:
    want_msb = np.cumsum(x_h.astype(np.int64) * g_h.astype(np.int64))
    want_exact = np.cumsum(x.astype(np.int64) * g.astype(np.int64))
    bad = np.flatnonzero(np.asarray(got_msb) != want_msb)
    assert not bad.size, (f"[{SIM}] {name}: acc_msb after beat {bad[0]} (x={int(x[bad[0]])}, g={int(g[bad[0]])}) "
                          f"is {got_msb[bad[0]]}, the contract's split gives {want_msb[bad[0]]}")
    assert list(got_exact) == list(want_exact), f"[{SIM}] {name}: the exact sum differs"


@cocotb.test()
async def split_ties_vs_contract(dut):
    await clock_and_reset(dut, clk="clk", rst="rst", load=0, in_valid=0, in_x=0, in_g=0)

    # x_h of every code (g = 64: g_h = 1), uint8 and int8; ties x = 16k + 8 among them
    for unsigned, codes in ((True, np.arange(256).astype(np.uint8)), (False, np.arange(-128, 128).astype(np.int8))):
        g = np.full(codes.size, 64, np.int16)
        msb, exact = await stream(dut, codes, g, unsigned)
        check(f"x_h of {'uint8' if unsigned else 'int8'} codes", codes, g, msb, exact,
              fxp.msb_split_x(codes)[0], fxp.msb_split_g(g)[0])

    # g_h of every tie g = 64k + 32, its two neighbours and the ends (x = 16: x_h = 1)
    k = np.arange(-512, 512, dtype=np.int64)
    g = np.concatenate([64 * k + 32, 64 * k + 31, 64 * k + 33, [-32768, -32767, 32767]])
    g = g[(g >= -32768) & (g <= 32767)].astype(np.int16)
    x = np.full(g.size, 16, np.uint8)
    msb, exact = await stream(dut, x, g, True)
    check("g_h at ties", x, g, msb, exact, fxp.msb_split_x(x)[0], fxp.msb_split_g(g)[0])
