"""cocotb tests of fpga/rtl/psg_lanes.v, the kernel's lane array, against the golden model
(run by test_psg_lanes.py).

Each lane's expected sums come from psg_model.expected (golden.wgrad_terms over the pairs the
lane selects from the window, added to its initial value). Environment (set by the pytest
runner): PSG_LANES, PSG_EXACT_LANES, PSG_XSLOTS, PSG_GSLOTS (the build's parameters),
PSG_SIM (simulator name, for messages), PSG_SEED.
"""
from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from e2train.core.perfmodel import ROUND_OVERHEAD
from psg_bus import StreamSource, clock_and_reset, lane_field, pack, u
import psg_model
from psg_model import Round, expected

LANES = int(os.environ.get("PSG_LANES", "8"))
EXACT = int(os.environ.get("PSG_EXACT_LANES", "4"))
XS = int(os.environ.get("PSG_XSLOTS", "12"))
GS = int(os.environ.get("PSG_GSLOTS", "4"))
SIM = os.environ.get("PSG_SIM", "?")
SEED = int(os.environ.get("PSG_SEED", "1"))
# Cycles from the ap_start cycle to the result beat at full rate: start, head, beats, drain 2, out.
LATENCY = 5


def random_round(rng: np.random.Generator, *, beats: int, extreme: bool = False, **kw) -> Round:
    return psg_model.random_round(rng, LANES, EXACT, XS, GS, beats=beats, extreme=extreme, **kw)


class Lanes:
    """Drives one call: arguments and ap_start, the head beat, the window beats (psg_bus's
    StreamSource, with idle cycles), the result with back-pressure; watches the lanes' clock
    enables and checks that a held result beat does not change."""

    def __init__(self, dut, rng: random.Random, idle_prob=0.0, ready_prob=1.0, head_delay=0):
        self.dut, self.rng, self.ready_prob, self.head_delay = dut, rng, ready_prob, head_delay
        self.src = StreamSource(dut, rng, idle_prob)
        self.tasks = []
        dut.ap_start.value = 0
        dut.ap_continue.value = 1
        dut.h_valid.value = 0
        dut.m_ready.value = 0

    async def head(self, r: Round) -> None:
        d = self.dut
        for _ in range(self.head_delay):
            await RisingEdge(d.ap_clk)
        await RisingEdge(d.ap_clk)
        d.h_xsel.value = pack(r.xsel, 8)
        d.h_gsel.value = pack(r.gsel, 8)
        d.h_msb.value = pack(r.init_msb, 48)
        d.h_exact.value = pack(r.init_exact, 48)
        d.h_valid.value = 1
        while True:
            await ReadOnly()
            if u(d.h_ready):
                break
            await RisingEdge(d.ap_clk)
        await RisingEdge(d.ap_clk)
        d.h_valid.value = 0

    def abort(self) -> None:
        """Stop driving the head and the window (after a reset mid-call)."""
        for t in self.tasks:
            t.cancel()

    async def call(self, r: Round, max_cycles: int = 20000):
        """One round; returns (G_msb per lane, G per exact lane, cycles from the ap_start
        cycle to the result beat, lanes whose predictor / exact path was ever clocked)."""
        d = self.dut
        head = cocotb.start_soon(self.head(r))
        sender = cocotb.start_soon(self.src.send(r.x, r.g))
        self.tasks = [head, sender]
        await RisingEdge(d.ap_clk)
        d.x_unsigned.value = int(r.x_unsigned)
        d.n_active.value = r.n_active
        d.msb_en.value = int(r.msb_en)
        d.exact_en.value = int(r.exact_en)
        d.ap_start.value = 1
        cycles, started, result, held, busy, corr = 0, False, None, None, 0, 0
        while True:
            await ReadOnly()
            cycles += 1
            busy |= u(d.dbg_lane_busy)
            corr |= u(d.dbg_corr_active)
            if not started and u(d.ap_ready):
                started = True
            if u(d.m_valid) and result is None:
                snap = (u(d.m_msb), u(d.m_exact))
                if held is not None and snap != held:
                    raise AssertionError(f"[{SIM}] result beat changed while m_valid was high and m_ready low")
                if u(d.m_ready):
                    result, result_cycle = snap, cycles
                else:
                    held = snap
            if u(d.ap_done):
                break
            if cycles > max_cycles:
                raise AssertionError(f"[{SIM}] no ap_done within {max_cycles} cycles")
            await RisingEdge(d.ap_clk)
            if started:
                d.ap_start.value = 0
            d.m_ready.value = int(self.rng.random() < self.ready_prob)
        await RisingEdge(d.ap_clk)
        d.ap_start.value = 0
        d.m_ready.value = 0
        await head
        await sender
        if result is None:
            raise AssertionError(f"[{SIM}] ap_done without a result beat")
        msb = np.array([lane_field(result[0], l, 48, True) for l in range(LANES)], np.int64)
        exact = np.array([lane_field(result[1], l, 48, True) for l in range(EXACT)], np.int64)
        return msb, exact, result_cycle, busy, corr


async def setup(dut, **kw) -> Lanes:
    lanes = Lanes(dut, random.Random(SEED), **kw)
    await clock_and_reset(dut)
    return lanes


def check(what: str, r: Round, got_msb, got_exact, busy: int, corr: int, history=()) -> None:
    """Lane by lane; the message names simulator, round, lane, expected and got."""
    exp_msb, exp_exact = expected(r, history)
    problems = []
    for l in range(LANES):
        if int(exp_msb[l]) != int(got_msb[l]):
            problems.append(f"lane {l} G_msb: expected {int(exp_msb[l])}, got {int(got_msb[l])}")
        if l < EXACT and int(exp_exact[l]) != int(got_exact[l]):
            problems.append(f"lane {l} G: expected {int(exp_exact[l])}, got {int(got_exact[l])}")
        on = l < r.n_active
        # Gated lanes and disabled paths: no clock enable ever rose during the round.
        if (busy >> l) & 1 and not (on and (r.msb_en or (r.exact_en and l < EXACT))):
            problems.append(f"lane {l} was clocked although gated (n_active {r.n_active}, "
                            f"msb_en {r.msb_en}, exact_en {r.exact_en})")
        if (corr >> l) & 1 and not (on and r.exact_en and l < EXACT):
            problems.append(f"lane {l} exact path was clocked although off")
    assert not problems, (f"[{SIM}] {what} ({r.x.shape[0]} beats, n_active {r.n_active}, msb_en {r.msb_en}, "
                          f"exact_en {r.exact_en}, {'uint8' if r.x_unsigned else 'int8'}): "
                          + "; ".join(problems[:6]) + (" ..." if len(problems) > 6 else ""))


@cocotb.test()
async def rounds_vs_golden(dut):
    """Random rounds with idle beats, back-pressure and a slow head: every enable combination,
    gated lanes, random initial sums; extreme codes; two rounds accumulating onto each other
    (a block spanning two chunks)."""
    lanes = await setup(dut, idle_prob=0.3, ready_prob=0.5, head_delay=2)
    rng = np.random.default_rng(SEED)
    for i in range(14):
        r = random_round(rng, beats=int(rng.integers(1, 25)), extreme=i % 4 == 3,
                         msb_en=i % 3 != 2, exact_en=i % 3 != 0)
        msb, exact, _, busy, corr = await lanes.call(r)
        check(f"round {i}", r, msb, exact, busy, corr)
    # Accumulate onto: the second round starts from the first one's results.
    first = random_round(rng, beats=17, n_active=LANES, msb_en=True, exact_en=True)
    msb, exact, _, busy, corr = await lanes.call(first)
    check("chunk 1 of 2", first, msb, exact, busy, corr)
    second = random_round(rng, beats=11, n_active=LANES, msb_en=True, exact_en=True, x_unsigned=first.x_unsigned,
                          xsel=first.xsel, gsel=first.gsel, init_msb=msb, init_exact=exact)
    msb2, exact2, _, busy, corr = await lanes.call(second)
    chained = Round(**{**second.__dict__, "init_msb": first.init_msb, "init_exact": first.init_exact})
    check("chunk 2 of 2 (accumulating onto chunk 1)", chained, msb2, exact2, busy, corr, history=[first])


@cocotb.test()
async def reset_mid_round(dut):
    """ap_rst mid-round abandons it: idle, no result; the next round is exact."""
    lanes = await setup(dut)
    rng = np.random.default_rng(SEED + 1)
    r = random_round(rng, beats=30, n_active=LANES, msb_en=True, exact_en=True)
    task = cocotb.start_soon(lanes.call(r))
    for _ in range(12):
        await RisingEdge(dut.ap_clk)
    dut.ap_rst.value = 1
    await RisingEdge(dut.ap_clk)
    await RisingEdge(dut.ap_clk)
    task.cancel()
    lanes.abort()
    dut.ap_rst.value = 0
    dut.ap_start.value = 0
    dut.s_valid.value = 0
    dut.h_valid.value = 0
    for _ in range(20):
        await RisingEdge(dut.ap_clk)
        await ReadOnly()
        assert u(dut.ap_idle) == 1, f"[{SIM}] lane array not idle after reset"
        assert u(dut.m_valid) == 0 and u(dut.ap_done) == 0, f"[{SIM}] result or ap_done after reset"
    await RisingEdge(dut.ap_clk)
    lanes = Lanes(dut, random.Random(SEED + 1))
    r2 = random_round(rng, beats=9, n_active=LANES - 1, msb_en=True, exact_en=True)
    msb, exact, _, busy, corr = await lanes.call(r2)
    check("round after a reset", r2, msb, exact, busy, corr)


@cocotb.test()
async def throughput_and_protocol(dut):
    """Full rate: one beat per clock, cycles = beats + a fixed latency within the performance
    model's ROUND_OVERHEAD; ap_ctrl_chain: ap_done held until ap_continue, ap_ready only idle."""
    lanes = await setup(dut)
    rng = np.random.default_rng(SEED + 2)
    for beats in (1, 64, 200):
        r = random_round(rng, beats=beats, n_active=LANES, msb_en=True, exact_en=True)
        msb, exact, cycles, busy, corr = await lanes.call(r)
        check(f"full-rate round of {beats} beats", r, msb, exact, busy, corr)
        assert cycles == beats + LATENCY, f"[{SIM}] {beats} beats took {cycles} cycles (expected {beats} + {LATENCY})"
        assert LATENCY <= ROUND_OVERHEAD, f"latency {LATENCY} exceeds perfmodel.ROUND_OVERHEAD {ROUND_OVERHEAD}"
        dut._log.info("[%s] %d beats x %d lanes: result in %d cycles, %.3f beats/cycle", SIM, beats, LANES,
                      cycles, beats / cycles)
    # ap_continue low: ap_done stays high, nothing restarts.
    dut.ap_continue.value = 0
    r = random_round(rng, beats=5, n_active=LANES, msb_en=True, exact_en=False)
    task = cocotb.start_soon(lanes.call(r))
    for _ in range(100):
        await RisingEdge(dut.ap_clk)
        await ReadOnly()
        assert not (u(dut.ap_ready) and not u(dut.ap_idle)), f"[{SIM}] ap_ready outside the idle state"
        if u(dut.ap_done):
            break
    else:
        raise AssertionError(f"[{SIM}] no ap_done for a 5-beat round within 100 cycles")
    for _ in range(10):
        await RisingEdge(dut.ap_clk)
        await ReadOnly()
        assert u(dut.ap_done) == 1 and u(dut.ap_idle) == 0, f"[{SIM}] ap_done not held while ap_continue is low"
    await RisingEdge(dut.ap_clk)
    dut.ap_continue.value = 1
    msb, exact, _, busy, corr = await task
    check("round under ap_continue", r, msb, exact, busy, corr)
