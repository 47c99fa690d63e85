"""cocotb bench of the weight gradient's x gather (fpga/rtl/wgrad_gather.v) against
gather_model, a statement of the column half of wgrad::feed (hls/src/conv_bwd_weight_psg.cpp)
in the layout of hls/include/e2t_passes.h: random bank words, bank selects, residues, code
offsets, row and column masks, both kernel sizes, a 1x1 beat's nine cycles in turn.
Environment: ENG_SEED."""
from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

SEED = int(os.environ.get("ENG_SEED", "1"))
BANKS, LOGICAL = 18, 6


def gather_model(prev: list[int], k3: bool, r: int, o7: int, t: int, sel: list[bool], row_ok: list[bool],
                 col_on: list[bool], words: list[list[int]]) -> list[int]:
    """The 18 column codes after one cycle (``prev``: before it). Logical bank l's word is the
    word of whichever of banks l, l+6, l+12 holds it (none: 0). 3x3: column c = (cl, ky, kx)
    takes code o7 + kx of logical bank cl + 2*((r + ky) mod 3); 1x1: columns 2t, 2t+1 take
    code o7 of logical banks 2r, 2r+1. A column outside its row or block takes 0."""
    lw = []
    for ll in range(LOGICAL):
        w = [0] * 9
        for u in range(3):
            if sel[ll + LOGICAL * u]:
                w = [a | b for a, b in zip(w, words[ll + LOGICAL * u])]
        lw.append(w)
    out = list(prev)
    for c in range(18):
        if k3:
            cl, ky, kx = c // 9, (c % 9) // 3, c % 3
            v = lw[cl + 2 * ((r + ky) % 3)][o7 + kx]
        elif c // 2 == t:
            ky, v = 0, lw[(c % 2) + 2 * r][o7]
        else:
            continue
        out[c] = v if col_on[c] and row_ok[ky] else 0
    return out


def _bits(flags: list[bool]) -> int:
    return sum(int(f) << i for i, f in enumerate(flags))


@cocotb.test()
async def random_cycles_vs_model(dut):
    rng = random.Random(SEED)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    prev = [0] * 18
    for n in range(600):
        await FallingEdge(dut.clk)            # inputs change between the clock's rising edges
        k3 = n == 0 or rng.random() < 0.5      # the first cycle writes every column
        t = n % 9
        r, o7 = rng.randrange(3), rng.randrange(7)
        # each logical bank's word in one of its three banks, or in none (a row outside the image)
        sel = [False] * BANKS
        for ll in range(LOGICAL):
            u = rng.randrange(4)
            if u < 3:
                sel[ll + LOGICAL * u] = True
        words = [[rng.randrange(256) for _ in range(9)] for _ in range(BANKS)]
        row_ok = [rng.random() < 0.8 for _ in range(3)]
        col_on = [rng.random() < 0.9 for _ in range(18)]
        dut.k3.value, dut.r.value, dut.o7.value, dut.t.value = int(k3), r, o7, t
        dut.sel.value, dut.row_ok.value, dut.col_on.value = _bits(sel), _bits(row_ok), _bits(col_on)
        dut.words.value = sum(code << (72 * b + 8 * i) for b, w in enumerate(words) for i, code in enumerate(w))
        await RisingEdge(dut.clk)
        await ReadOnly()
        got_word = int(dut.cols.value)
        got = [(got_word >> (8 * c)) & 0xFF for c in range(18)]
        want = gather_model(prev, k3, r, o7, t, sel, row_ok, col_on, words)
        assert got == want, f"cycle {n} (k3={k3}, r={r}, o7={o7}, t={t}): {got} != {want}"
        prev = got
