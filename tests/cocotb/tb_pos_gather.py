"""cocotb bench of the forward's and input gradient's read side (fpga/rtl/pos_gather.v) against
gather_model, a statement of column() in fwd::feed and bwd::feed (hls/src/conv_fwd.cpp,
conv_bwd_data.cpp) in the layouts of hls/include/e2t_passes.h: random shifts, entry bases,
slots and bank words. Environment: ENG_SEED, NPOS, W, ABITS (the module's parameters)."""
from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

SEED = int(os.environ.get("ENG_SEED", "1"))
NPOS, W, ABITS = (int(os.environ[k]) for k in ("NPOS", "W", "ABITS"))
BANKS = NPOS + 2


def gather_model(sh: int, base: int, slot: list[int], rdata: list[int]) -> tuple[list[int], list[int]]:
    """(each bank's entry, each position's code): position i reads bank i + sh at entry
    base + slot[i]; a bank no position reads is at base."""
    addr = [base] * BANKS
    for i in range(NPOS):
        addr[i + sh] = base + slot[i]
    return addr, [rdata[i + sh] for i in range(NPOS)]


@cocotb.test()
async def random_beats_vs_model(dut):
    rng = random.Random(SEED)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for n in range(400):
        await FallingEdge(dut.clk)
        sh = rng.randrange(3)
        d = rng.choice((1, 2, 4))                        # the layer's slots: the base is a multiple
        base = rng.randrange(1 << ABITS) // d * d
        slot = [rng.randrange(d) for _ in range(NPOS)]
        rdata = [rng.randrange(1 << W) for _ in range(BANKS)]
        dut.sh.value, dut.base.value = sh, base
        dut.slot.value = sum(s << (2 * i) for i, s in enumerate(slot))
        dut.rdata.value = sum(v << (W * m) for m, v in enumerate(rdata))
        want_addr, want_codes = gather_model(sh, base, slot, rdata)
        await ReadOnly()
        a = int(dut.addr.value)
        got_addr = [(a >> (ABITS * m)) & ((1 << ABITS) - 1) for m in range(BANKS)]
        assert got_addr == want_addr, f"beat {n} (sh={sh}, base={base}): entries {got_addr} != {want_addr}"
        await RisingEdge(dut.clk)
        await ReadOnly()
        c = int(dut.codes.value)
        got = [(c >> (W * i)) & ((1 << W) - 1) for i in range(NPOS)]
        assert got == want_codes, f"beat {n} (sh={sh}): codes {got} != {want_codes}"
