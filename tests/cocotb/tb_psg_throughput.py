"""cocotb module for benchmarks/bench_rtl.py (not a pytest test): streams one long tile and
writes cycles, beats and wall time as JSON to $PSG_BENCH_OUT.

Two drivers, the same tile length:
* stream_constant: s_valid held high and the data constant, so Python wakes only to start
  and to raise s_last -- simulator-bound: this measures the simulator.
* stream_random: new random data every cycle from Python -- cocotb-bound, as the tests run.
Both results are checked against the golden model, so a fast wrong engine cannot pass.
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

from psg_bus import Call, Engine, clock_and_reset, pack, u
from psg_model import expected_tile
from tb_psg_engine import check

LANES = int(os.environ.get("PSG_LANES", "8"))
BEATS = int(os.environ.get("PSG_BENCH_BEATS", "10000"))
SIM = os.environ.get("PSG_SIM", "?")


def report(name: str, beats: int, cycles: int, seconds: float) -> None:
    out = os.environ.get("PSG_BENCH_OUT")
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps({"driver": name, "sim": SIM, "lanes": LANES, "beats": beats, "cycles": cycles,
                                 "seconds": seconds}) + "\n")


async def reset(dut) -> None:
    await clock_and_reset(dut, ap_start=0, ap_continue=1, s_valid=0, m_ready=1)


@cocotb.test()
async def stream_constant(dut):
    await reset(dut)
    x = np.full((BEATS, LANES), 200, np.uint8)
    g = np.tile(np.arange(-LANES // 2, LANES - LANES // 2, dtype=np.int16) * 2001, (BEATS, 1))
    dut.mode.value = 0
    dut.x_unsigned.value = 1
    dut.corr_en.value = 0
    dut.beta_q.value = 0
    dut.gmsb_absmax.value = 0
    dut.s_x.value = pack(x[0], 8)
    dut.s_g.value = pack(g[0], 16)
    dut.s_last.value = 0
    dut.s_valid.value = 1
    dut.ap_start.value = 1
    t0 = time.perf_counter()
    c0 = get_sim_time(unit="ns")
    await RisingEdge(dut.ap_clk)          # start taken at this edge (the engine was idle)
    dut.ap_start.value = 0
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
            gm = u(dut.m_gmsb)
            break
        await RisingEdge(dut.ap_clk)
    # cycles from the one with ap_start up to the one with the result, both included
    cycles = round((get_sim_time(unit="ns") - c0) / 10) + 1
    seconds = time.perf_counter() - t0
    exp = expected_tile(x, g, decide=False)
    got = [((gm >> (48 * l)) & ((1 << 48) - 1)) for l in range(LANES)]
    got = [v - (1 << 48) if v >> 47 else v for v in got]
    assert got == [int(v) for v in exp.g_msb], f"[{SIM}] constant stream: G_msb {got} != {list(exp.g_msb)}"
    report("constant", BEATS, cycles, seconds)


@cocotb.test()
async def stream_random(dut):
    await reset(dut)
    beats = max(BEATS // 10, 1)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (beats, LANES)).astype(np.uint8)
    g = rng.integers(-32768, 32768, (beats, LANES)).astype(np.int16)
    eng = Engine(dut, LANES, random.Random(3))
    cocotb.start_soon(eng.sink.run())
    t0 = time.perf_counter()
    got, cycles = await eng.call(Call(False, True), x, g)
    seconds = time.perf_counter() - t0
    check("random stream", expected_tile(x, g, decide=False), got)
    report("random", beats, cycles, seconds)
