"""Drivers and monitors for the PSG engine's ports (cocotb 2.x).

* ``StreamSource``: drives s_valid/s_x/s_g/s_last, with random idle cycles.
* ``ResultSink``: drives m_ready with random back-pressure, records every result beat and
  checks the valid/ready rule (a beat held while not taken must not change).
* ``Engine``: the ap_ctrl handshake and one call = one tile, returning the result beat and
  the cycle count from ap_start to ap_done.

Every cycle each coroutine writes its inputs just after the rising edge and samples in the
read-only phase, so a handshake seen there is the one the next edge acts on.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


async def clock_and_reset(dut, *, clk: str = "ap_clk", rst: str = "ap_rst", **idle) -> None:
    """Start the 100 MHz clock on ``clk``, drive ``idle`` (input name -> value), hold ``rst``
    for three cycles (synchronous, active high, as Vitis HLS blocks expect) and release it.
    The defaults are the HLS port names; a hand-written block passes its own (clk, rst)."""
    clock = getattr(dut, clk)
    Clock(clock, 10, unit="ns").start()
    for name, value in idle.items():
        getattr(dut, name).value = value
    getattr(dut, rst).value = 1
    for _ in range(3):
        await RisingEdge(clock)
    getattr(dut, rst).value = 0
    await RisingEdge(clock)


def u(sig) -> int:
    v = sig.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


def s(sig) -> int:
    v = sig.value
    return v.to_signed() if hasattr(v, "to_signed") else int(v)


def lane_field(word: int, lane: int, width: int, signed: bool) -> int:
    v = (word >> (lane * width)) & ((1 << width) - 1)
    if signed and v >> (width - 1):
        v -= 1 << width
    return v


def pack(values, width: int) -> int:
    word = 0
    for lane, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (lane * width)
    return word


@dataclass
class Result:
    g_msb: np.ndarray
    sign: np.ndarray
    pred: np.ndarray
    incomplete: np.ndarray
    overflow: bool
    g_exact: np.ndarray | None = None   # the lanes' exact accumulators, read at the result beat


@dataclass
class Call:
    decide: bool
    x_unsigned: bool
    corr_en: int = 0
    beta_q: int = 0
    gmsb_absmax: int = 0


class StreamSource:
    def __init__(self, dut, rng: random.Random, idle_prob: float = 0.0):
        self.dut, self.rng, self.idle_prob = dut, rng, idle_prob
        self.accepted = 0
        dut.s_valid.value = 0
        dut.s_last.value = 0

    async def send(self, x: np.ndarray, g: np.ndarray) -> None:
        dut = self.dut
        beats = x.shape[0]
        i = 0
        while i < beats:
            await RisingEdge(dut.ap_clk)
            if self.idle_prob and self.rng.random() < self.idle_prob:
                dut.s_valid.value = 0
                await ReadOnly()
                continue
            dut.s_x.value = pack(x[i], 8)
            dut.s_g.value = pack(g[i], 16)
            dut.s_last.value = int(i == beats - 1)
            dut.s_valid.value = 1
            await ReadOnly()
            if u(dut.s_ready):
                i += 1
                self.accepted += 1
        await RisingEdge(dut.ap_clk)
        dut.s_valid.value = 0
        dut.s_last.value = 0


class ResultSink:
    def __init__(self, dut, lanes: int, rng: random.Random, ready_prob: float = 1.0):
        self.dut, self.lanes, self.rng, self.ready_prob = dut, lanes, rng, ready_prob
        self.results: list[Result] = []
        self.errors: list[str] = []
        dut.m_ready.value = 0

    def _snapshot(self) -> tuple:
        d = self.dut
        return (u(d.m_gmsb), u(d.m_sign), u(d.m_pred), u(d.m_incomplete), u(d.m_overflow))

    def _decode(self, snap) -> Result:
        gm, sg, pr, inc, ovf = snap
        n = self.lanes
        return Result(
            g_msb=np.array([lane_field(gm, l, 48, True) for l in range(n)], np.int64),
            sign=np.array([lane_field(sg, l, 2, True) for l in range(n)], np.int8),
            pred=np.array([(pr >> l) & 1 for l in range(n)], bool),
            incomplete=np.array([(inc >> l) & 1 for l in range(n)], bool),
            overflow=bool(ovf),
        )

    def read_exact(self) -> np.ndarray:
        return np.array([s(self.dut.lane[l].u_lane.acc_exact) for l in range(self.lanes)], np.int64)

    async def run(self) -> None:
        d = self.dut
        held = None
        while True:
            await RisingEdge(d.ap_clk)
            ready = self.rng.random() < self.ready_prob
            d.m_ready.value = int(ready)
            await ReadOnly()
            if not u(d.m_valid):
                held = None
                continue
            snap = self._snapshot()
            if held is not None and snap != held:
                self.errors.append("output beat changed while m_valid was high and m_ready low")
            if ready:
                r = self._decode(snap)
                r.g_exact = self.read_exact()
                self.results.append(r)
                held = None
            else:
                held = snap


class Engine:
    """One call of the engine: arguments, ap_start until ap_ready, stream the tile, wait ap_done."""

    def __init__(self, dut, lanes: int, rng: random.Random, idle_prob=0.0, ready_prob=1.0):
        self.dut, self.lanes = dut, lanes
        self.src = StreamSource(dut, rng, idle_prob)
        self.sink = ResultSink(dut, lanes, rng, ready_prob)
        dut.ap_start.value = 0
        dut.ap_continue.value = 1
        dut.mode.value = 0
        dut.x_unsigned.value = 0
        dut.corr_en.value = 0
        dut.beta_q.value = 0
        dut.gmsb_absmax.value = 0

    async def call(self, c: Call, x: np.ndarray, g: np.ndarray, max_cycles: int = 100000):
        """Run one tile; returns (Result, cycles from the first ap_start cycle to ap_done)."""
        d = self.dut
        n_before = len(self.sink.results)
        sender = cocotb.start_soon(self.src.send(x, g))
        await RisingEdge(d.ap_clk)
        d.mode.value = int(c.decide)
        d.x_unsigned.value = int(c.x_unsigned)
        d.corr_en.value = c.corr_en
        d.beta_q.value = c.beta_q
        d.gmsb_absmax.value = c.gmsb_absmax
        d.ap_start.value = 1
        cycles = 0
        started = False
        while True:
            await ReadOnly()
            cycles += 1
            if not started and u(d.ap_ready):
                started = True
            if u(d.ap_done):
                break
            if cycles > max_cycles:
                raise AssertionError(f"no ap_done within {max_cycles} cycles")
            await RisingEdge(d.ap_clk)
            if started:
                d.ap_start.value = 0
        await RisingEdge(d.ap_clk)
        d.ap_start.value = 0
        await sender
        got = self.sink.results[n_before:]
        if len(got) != 1:
            raise AssertionError(f"expected one result beat for the tile, got {len(got)}")
        return got[0], cycles
