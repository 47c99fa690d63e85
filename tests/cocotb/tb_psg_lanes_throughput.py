"""cocotb module for benchmarks/bench_rtl.py (not a pytest test): one long round of the lane
array (psg_lanes.v), every lane on, both paths; writes cycles, beats, lanes and wall time as
JSON to $PSG_BENCH_OUT.

* lanes_constant: s_valid held high and the window constant, so Python wakes only to start,
  send the head and raise s_last -- simulator-bound: this measures the simulator.
* lanes_random: a new random window every beat from Python (tb_psg_lanes's driver, no idle
  beats, no back-pressure) -- cocotb-bound, as the tests run.
Both results are checked against the golden model, so a fast wrong array cannot pass.
"""
from __future__ import annotations

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from psg_bus import clock_and_reset, lane_field, pack, u
from psg_model import Round, expected
from tb_psg_lanes import EXACT, GS, LANES, SIM, XS, Lanes, check

BEATS = int(os.environ.get("PSG_BENCH_BEATS", "10000"))


def report(name: str, beats: int, cycles: int, seconds: float) -> None:
    out = os.environ.get("PSG_BENCH_OUT")
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps({"top": "psg_lanes", "driver": name, "sim": SIM, "lanes": LANES, "exact": EXACT,
                                 "beats": beats, "cycles": cycles, "seconds": seconds}) + "\n")


async def reset(dut) -> None:
    await clock_and_reset(dut, ap_start=0, ap_continue=1, s_valid=0, m_ready=1, h_valid=0)


def full_round(rng: np.random.Generator, beats: int, constant: bool) -> Round:
    rows = 1 if constant else beats
    x = rng.integers(0, 256, (rows, XS)).astype(np.uint8)
    g = rng.integers(-32768, 32768, (rows, GS)).astype(np.int16)
    if constant:
        x, g = np.repeat(x, beats, 0), np.repeat(g, beats, 0)
    return Round(True, LANES, True, True, np.arange(LANES) % XS, (np.arange(LANES) // XS) % GS,
                 np.zeros(LANES, np.int64), np.zeros(EXACT, np.int64), x, g)


@cocotb.test()
async def lanes_constant(dut):
    await reset(dut)
    r = full_round(np.random.default_rng(5), BEATS, constant=True)
    dut.x_unsigned.value, dut.n_active.value, dut.msb_en.value, dut.exact_en.value = 1, LANES, 1, 1
    dut.h_xsel.value, dut.h_gsel.value = pack(r.xsel, 8), pack(r.gsel, 8)
    dut.h_msb.value, dut.h_exact.value = 0, 0
    dut.s_x.value, dut.s_g.value, dut.s_last.value = pack(r.x[0], 8), pack(r.g[0], 16), 0
    dut.h_valid.value = 1
    dut.s_valid.value = 1
    dut.ap_start.value = 1
    t0 = time.perf_counter()
    c0 = get_sim_time(unit="ns")
    await RisingEdge(dut.ap_clk)          # start taken (the array was idle)
    dut.ap_start.value = 0
    await RisingEdge(dut.ap_clk)          # head taken
    dut.h_valid.value = 0
    # One beat per cycle from here on: BEATS-1 plain beats, then the one with last.
    if BEATS > 1:
        await ClockCycles(dut.ap_clk, BEATS - 1)
    dut.s_last.value = 1
    await RisingEdge(dut.ap_clk)
    dut.s_valid.value = 0
    dut.s_last.value = 0
    while True:
        await ReadOnly()
        if u(dut.m_valid):
            msb, ex = u(dut.m_msb), u(dut.m_exact)
            break
        await RisingEdge(dut.ap_clk)
    cycles = round((get_sim_time(unit="ns") - c0) / 10) + 1   # start cycle to result cycle, both included
    seconds = time.perf_counter() - t0
    exp_msb, exp_exact = expected(r)
    got_msb = [lane_field(msb, l, 48, True) for l in range(LANES)]
    got_exact = [lane_field(ex, l, 48, True) for l in range(EXACT)]
    assert got_msb == [int(v) for v in exp_msb] and got_exact == [int(v) for v in exp_exact], \
        f"[{SIM}] constant round: sums differ from the golden model"
    report("constant", BEATS, cycles, seconds)


@cocotb.test()
async def lanes_random(dut):
    await reset(dut)
    beats = max(BEATS // 10, 1)
    r = full_round(np.random.default_rng(6), beats, constant=False)
    lanes = Lanes(dut, random.Random(6))
    t0 = time.perf_counter()
    msb, exact, cycles, busy, corr = await lanes.call(r)
    seconds = time.perf_counter() - t0
    check("random round", r, msb, exact, busy, corr)
    report("random", beats, cycles, seconds)
