"""cocotb bench of the training engine's HLS blackbox ports (fpga/rtl/train_engine_hls.v):
the ap_fifo streams with the C struct packing of hls/include/train_engine.h, random FIFO
flags, and the emit/shadow pipelining, against engine_model.BlackboxModel; and the cycles of
back-to-back calls at full rate (engine_map.HLS_CALL_OVERHEAD). Environment: ENG_ROWS,
ENG_COLS, ENG_SEED."""
from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from e2train.core import engine_map
from engine_model import BlackboxModel, random_hls_call
from psg_bus import clock_and_reset, lane_field, pack, u

ROWS = int(os.environ.get("ENG_ROWS", "2"))
COLS = int(os.environ.get("ENG_COLS", "3"))
SEED = int(os.environ.get("ENG_SEED", "1"))


def beat_word(r, c, pr, pc, last: bool) -> int:
    """Beat {int16 row[R]; int16 col[C]; int16 prow[R]; uint8 pcol[C]; bool last;}"""
    w = pack(r, 16) | pack(c, 16) << (16 * ROWS) | pack(pr, 16) << (16 * ROWS + 16 * COLS)
    w |= pack(pc, 8) << (32 * ROWS + 16 * COLS)
    return w | int(last) << (32 * ROWS + 24 * COLS)


def row_of(word: int) -> list[int]:
    """Row {int64 p[C]; int64 lo[C]; int64 hi[C];}"""
    return [lane_field(word, i, 64, True) for i in range(3 * COLS)]


async def reset(dut) -> None:
    idle = ("ap_start", "head_empty_n", "in_empty_n", "out_full_n", "mode", "x_unsigned", "exact_en",
            "pred_en", "clr_dsp", "clr_fab", "pred_rows", "pred_cols", "emit", "head_dout", "in_dout")
    await clock_and_reset(dut, ap_continue=1, **dict.fromkeys(idle, 0))


async def hls_call(dut, rng: random.Random, a, r, c, pr, pc, emit: bool, busy: float = 0.0):
    """One C call through the ports; returns (emitted rows, cycles from the ap_start cycle to
    the ap_done cycle, both counted). busy: probability that a FIFO flag is off in a cycle."""
    d = dut
    d.mode.value, d.x_unsigned.value = a.mode, int(a.x_unsigned)
    d.exact_en.value, d.pred_en.value = int(a.exact_en), int(a.pred_en)
    d.clr_dsp.value, d.clr_fab.value = int(a.clr_dsp), int(a.clr_fab)
    d.pred_rows.value, d.pred_cols.value = min(a.pred_rows, 255), min(a.pred_cols, 255)
    d.emit.value = int(emit)
    d.head_dout.value = pack(a.cell_en.reshape(-1), 1)
    d.ap_start.value = 1
    n = r.shape[0]
    started, head_taken, beat, rows, t0, cyc = False, False, 0, [], None, 0
    for _ in range(20000):
        d.head_empty_n.value = int(started and not head_taken and rng.random() >= busy)
        if started and beat < n:
            d.in_dout.value = beat_word(r[beat], c[beat], pr[beat], pc[beat], beat == n - 1)
            d.in_empty_n.value = int(rng.random() >= busy)
        else:
            d.in_empty_n.value = 0
        d.out_full_n.value = int(rng.random() >= busy)
        await ReadOnly()
        if not started and u(d.ap_ready):
            started, t0 = True, cyc
        if u(d.head_read):
            head_taken = True
        if u(d.in_read):
            beat += 1
        if u(d.out_write):
            rows.append(row_of(u(d.out_din)))
        if u(d.ap_done) and u(d.ap_continue):
            await RisingEdge(d.ap_clk)
            return rows, cyc - t0 + 1
        await RisingEdge(d.ap_clk)
        cyc += 1
        if started:
            d.ap_start.value = 0
        d.ap_continue.value = int(rng.random() >= busy)
    raise AssertionError(f"call did not finish (beat {beat}/{n}, rows {len(rows)})")


def check(what: str, rows: list, want) -> None:
    if want is None:
        assert not rows, f"{what}: {len(rows)} rows written without emit"
        return
    assert len(rows) == ROWS, f"{what}: {len(rows)} rows written, expected {ROWS}"
    for i in range(ROWS):
        exp = [int(v) for v in [*want["p"][i], *want["lo"][i], *want["hi"][i]]]
        assert rows[i] == exp, f"{what}: row {i} is {rows[i]}, expected {exp}"


@cocotb.test()
async def blackbox_ports_vs_model(dut):
    rng = np.random.default_rng(SEED)
    prng = random.Random(SEED)
    await reset(dut)
    model = BlackboxModel(ROWS, COLS)
    for i in range(30):
        a, r, c, pr, pc, emit = random_hls_call(rng, ROWS, COLS, first=i == 0)
        want = model.hls_call(a, r, c, pr, pc, emit)
        got, _ = await hls_call(dut, prng, a, r, c, pr, pc, emit, busy=0.3)
        check(f"call {i} (mode {a.mode}, {r.shape[0]} beats, emit {emit})", got, want)


@cocotb.test()
async def full_rate_cycles(dut):
    """Back to back at full rate: a call of N >= ROWS beats costs N + HLS_CALL_OVERHEAD cycles
    (the previous rows go out while the operands stream in); a flush costs ROWS + its
    overhead."""
    rng = np.random.default_rng(SEED)
    prng = random.Random(SEED)
    await reset(dut)
    model = BlackboxModel(ROWS, COLS)
    for i, beats in enumerate((ROWS, ROWS + 5, 40)):
        a, r, c, pr, pc, _ = random_hls_call(rng, ROWS, COLS, first=True)
        a.mode = i % 3
        r, c = r[:1].repeat(beats, 0), c[:1].repeat(beats, 0)
        pr, pc = pr[:1].repeat(beats, 0), pc[:1].repeat(beats, 0)
        want = model.hls_call(a, r, c, pr, pc, i > 0)
        got, cycles = await hls_call(dut, prng, a, r, c, pr, pc, i > 0)
        check(f"full rate call {i}", got, want)
        assert cycles == beats + engine_map.HLS_CALL_OVERHEAD, \
            f"{beats} beats took {cycles} cycles, expected {beats} + {engine_map.HLS_CALL_OVERHEAD}"
    a.mode = 3
    want = model.hls_call(a, r, c, pr, pc, True)
    got, cycles = await hls_call(dut, prng, a, r[:0], c[:0], pr[:0], pc[:0], True)
    check("flush", got, want)
    dut._log.info(f"flush: {cycles} cycles for {ROWS} rows")
