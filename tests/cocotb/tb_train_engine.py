"""cocotb bench of the training engine (fpga/rtl/train_engine.v), on Icarus and Verilator.

Expected values come from engine_model.py (the contract's arithmetic, per call) and, for the
whole-convolution test, from numpy convolutions of the layer; never from the RTL. Environment
(set by test_train_engine.py): ENG_ROWS, ENG_COLS, ENG_SEED.
"""
from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from e2train.core import engine_map
from e2train.core.shapes import ConvShape
from engine_model import HI_W, LO_W, P_W, Args, EngineModel, bwd_data_acc, split_g_h, split_x_h, wrap
from psg_bus import clock_and_reset, lane_field, pack, u

ROWS = int(os.environ.get("ENG_ROWS", "2"))
COLS = int(os.environ.get("ENG_COLS", "3"))
SEED = int(os.environ.get("ENG_SEED", "1"))
CHUNK = 7        # weight-gradient positions per call: several chunks per block on the small shapes


class Engine:
    """Drives one call at a time: the ap_ctrl handshake, the stream with random idle beats,
    the result with random back-pressure, ap_continue with random delay. Every cycle it
    checks that no cell clocks a path it was not enabled for."""

    def __init__(self, dut, rng: random.Random, idle=0.0, ready=1.0, cont=1.0):
        self.dut, self.rng = dut, rng
        self.idle, self.ready, self.cont = idle, ready, cont
        self.cycle = 0

    async def start(self) -> None:
        idle = ("ap_start", "s_valid", "s_last", "m_ready", "mode", "x_unsigned", "exact_en", "pred_en",
                "clr_dsp", "clr_fab", "cell_en", "pred_rows", "pred_cols", "s_row", "s_col", "s_prow", "s_pcol")
        await clock_and_reset(self.dut, ap_continue=1, **dict.fromkeys(idle, 0))

    async def call(self, a: Args, rows, cols, prows=None, pcols=None, max_cycles=100000):
        """Returns ({p, lo, hi} as (ROWS, COLS) int arrays, cycles from the ap_start cycle to
        the ap_done cycle, both counted)."""
        d, rng = self.dut, self.rng
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        prows = rows if prows is None else np.asarray(prows, np.int64)
        pcols = cols if pcols is None else np.asarray(pcols, np.int64)
        n = rows.shape[0]
        en = a.cell_en.reshape(-1)
        dsp_ok = pack(en & a.exact_en, 1)
        pred_ok = pack(a.pred_mask().reshape(-1), 1)
        d.mode.value, d.x_unsigned.value = a.mode, int(a.x_unsigned)
        d.exact_en.value, d.pred_en.value = int(a.exact_en), int(a.pred_en)
        d.clr_dsp.value, d.clr_fab.value = int(a.clr_dsp), int(a.clr_fab)
        d.cell_en.value = pack(en, 1)
        d.pred_rows.value, d.pred_cols.value = min(a.pred_rows, 255), min(a.pred_cols, 255)
        d.ap_start.value = 1
        phase, beat, res, t0 = "start", 0, None, None
        for _ in range(max_cycles):
            await ReadOnly()
            active_d, active_p = u(d.dbg_dsp_active), u(d.dbg_pred_active)
            assert active_d & ~dsp_ok == 0, f"cells {active_d & ~dsp_ok:#x} clock their DSP path while off"
            assert active_p & ~pred_ok == 0, f"cells {active_p & ~pred_ok:#x} clock their predictor while off"
            if phase == "start" and u(d.ap_ready):
                phase, t0 = "stream", self.cycle
            elif phase == "stream" and u(d.s_valid) and u(d.s_ready):
                beat += 1
                if beat == n:
                    phase = "result"
            elif phase == "result" and u(d.m_valid) and u(d.m_ready):
                words = {k: u(getattr(d, "m_" + k)) for k in ("p", "lo", "hi")}
                widths = {"p": P_W, "lo": LO_W, "hi": HI_W}
                res = {k: np.array([lane_field(words[k], i, widths[k], True) for i in range(ROWS * COLS)],
                                   np.int64).reshape(ROWS, COLS) for k in words}
                phase = "done"
            elif phase == "done" and u(d.ap_done) and u(d.ap_continue):
                await RisingEdge(d.ap_clk)
                self.cycle += 1
                d.ap_continue.value = 1
                return res, self.cycle - t0
            await RisingEdge(d.ap_clk)
            self.cycle += 1
            if phase != "start":
                d.ap_start.value = 0
            if phase == "stream" and rng.random() >= self.idle:
                d.s_valid.value = 1
                d.s_row.value = pack(rows[beat], 16)
                d.s_col.value = pack(cols[beat], 16)
                d.s_prow.value = pack(prows[beat], 16)
                d.s_pcol.value = pack(pcols[beat], 8)
                d.s_last.value = int(beat == n - 1)
            else:
                d.s_valid.value = 0
                d.s_last.value = 0
            d.m_ready.value = int(phase == "result" and rng.random() < self.ready)
            d.ap_continue.value = int(phase != "done" or rng.random() < self.cont)
        raise AssertionError(f"call did not finish within {max_cycles} cycles (phase {phase}, beat {beat}/{n})")


def random_operands(rng: np.random.Generator, mode: int, beats: int, unsigned: bool, extreme: bool):
    def pick(lo, hi, shape):
        if extreme:
            return rng.choice(np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi]), size=shape)
        return rng.integers(lo, hi + 1, size=shape)
    xlo, xhi = (0, 255) if unsigned else (-128, 127)
    if mode == 0:
        rows = pick(-128, 127, (beats, ROWS)) & 0xFF
        cols = ((pick(xlo, xhi, (beats, COLS)) & 0xFF) << 8) | (pick(xlo, xhi, (beats, COLS)) & 0xFF)
    elif mode == 1:
        rows = pick(-128, 127, (beats, ROWS)) & 0xFF
        cols = pick(-32768, 32767, (beats, COLS)) & 0xFFFF
    else:
        rows = pick(-32768, 32767, (beats, ROWS)) & 0xFFFF
        cols = pick(xlo, xhi, (beats, COLS)) & 0xFF
    return rows, cols


def compare(what: str, got: dict, want: dict, keys=("p", "lo", "hi")) -> None:
    for k in keys:
        bad = np.argwhere(got[k] != want[k])
        if bad.size:
            r, c = bad[0]
            raise AssertionError(f"{what}: {len(bad)} cells differ in {k}; cell ({r}, {c}) expected "
                                 f"{want[k][r, c]}, got {got[k][r, c]}")


@cocotb.test()
async def random_calls_vs_model(dut):
    """Random calls of every mode and flag, random idle beats, back-pressure and ap_continue
    delays; extreme codes; accumulation across calls; the predictor and exact paths on
    different blocks in one call."""
    rng = np.random.default_rng(SEED)
    eng = Engine(dut, random.Random(SEED), idle=0.3, ready=0.5, cont=0.6)
    await eng.start()
    model = EngineModel(ROWS, COLS)
    for i in range(40):
        mode = int(rng.integers(0, 3))
        a = Args(mode=mode, x_unsigned=bool(rng.integers(2)), exact_en=bool(rng.random() < 0.85),
                 pred_en=bool(rng.integers(2)), clr_dsp=bool(rng.random() < 0.5), clr_fab=bool(rng.random() < 0.5),
                 cell_en=rng.random((ROWS, COLS)) < 0.7, pred_rows=int(rng.integers(0, ROWS + 2)),
                 pred_cols=int(rng.integers(0, COLS + 2)))
        if i < 3:
            a.clr_dsp = a.clr_fab = True
        beats = int(rng.integers(1, 12))
        extreme = bool(rng.random() < 0.3)
        rows, cols = random_operands(rng, mode, beats, a.x_unsigned, extreme)
        prows = pcols = None
        if mode in (1, 2) and rng.random() < 0.5:      # BWD too: the predictor sweep beside it
            prows, pcols = random_operands(rng, 2, beats, a.x_unsigned, extreme)
        model.call(a, rows, cols, prows if prows is not None else rows, pcols if pcols is not None else cols)
        got, _ = await eng.call(a, rows, cols, prows, pcols)
        compare(f"call {i} (mode {mode}, {beats} beats, {a})", got, model.result())


@cocotb.test()
async def split_rounding_edges(dut):
    """G_msb over every tie and saturation code of the v2 split: each g code that sits on a
    rounding tie (+-32 mod 64), the ends of int16, x codes on ties (+-8 mod 16) and the ends of
    uint8 / int8. One beat per code, so a wrong split shows in the cell that summed it."""
    eng = Engine(dut, random.Random(SEED))
    await eng.start()
    model = EngineModel(ROWS, COLS)
    g_codes = np.array([32, -32, 96, -96, 31, -31, 33, -33, 32767, -32768, 32735, -32736, 32704, -32705, 0, 1])
    for unsigned, x_codes in ((True, np.array([8, 24, 7, 9, 247, 248, 255, 0])),
                              (False, np.array([8, -8, 24, -24, 119, 120, 127, -128, -121, -120]))):
        for g0 in range(0, len(g_codes), ROWS):
            rows = np.zeros((len(x_codes), ROWS), np.int64)
            gs = g_codes[g0: g0 + ROWS]
            rows[:, : len(gs)] = gs & 0xFFFF
            cols = np.zeros((len(x_codes), COLS), np.int64)
            for c in range(COLS):
                cols[:, c] = np.roll(x_codes, c) & 0xFF
            a = Args(mode=2, x_unsigned=unsigned, exact_en=True, pred_en=True, clr_dsp=True, clr_fab=True,
                     cell_en=np.ones((ROWS, COLS), bool))
            model.call(a, rows, cols, rows, cols)
            got, _ = await eng.call(a, rows, cols)
            compare(f"ties, unsigned={unsigned}, g {gs}", got, model.result())
    # the v2 split itself: ties round away from zero, symmetric about 0
    assert list(split_g_h(np.array([32, -32, 96, -96, 32767, -32768]))) == [1, -1, 2, -2, 511, -512]
    assert list(split_x_h(np.array([8, -8, 24, -24, 127, -128]), False)) == [1, -1, 2, -2, 7, -8]
    assert list(split_x_h(np.array([8, 247, 248, 255]), True)) == [1, 15, 15, 15]


@cocotb.test()
async def reset_mid_call(dut):
    """ap_rst in the middle of a stream abandons the call; the next call runs normally."""
    rng = np.random.default_rng(SEED)
    eng = Engine(dut, random.Random(SEED))
    await eng.start()
    d = dut
    d.mode.value, d.exact_en.value, d.cell_en.value, d.ap_start.value = 1, 1, (1 << ROWS * COLS) - 1, 1
    await RisingEdge(d.ap_clk)
    d.ap_start.value = 0
    d.s_valid.value = 1
    for _ in range(3):
        await RisingEdge(d.ap_clk)
    d.ap_rst.value = 1
    d.s_valid.value = 0
    await RisingEdge(d.ap_clk)
    d.ap_rst.value = 0
    await RisingEdge(d.ap_clk)
    await ReadOnly()
    assert u(d.ap_idle) == 1 and u(d.m_valid) == 0 and u(d.s_ready) == 0, "reset did not return to idle"
    await RisingEdge(d.ap_clk)
    model = EngineModel(ROWS, COLS)
    a = Args(mode=1, x_unsigned=False, exact_en=True, pred_en=False, clr_dsp=True, clr_fab=True,
             cell_en=np.ones((ROWS, COLS), bool))
    rows, cols = random_operands(rng, 1, 5, False, False)
    model.call(a, rows, cols)
    got, _ = await eng.call(a, rows, cols)
    compare("after reset", got, model.result())


def _conv_data(rng, shape: ConvShape, unsigned: bool):
    x = rng.integers(0 if unsigned else -128, 256 if unsigned else 128, (shape.n, shape.ci, shape.h, shape.w))
    w = rng.integers(-128, 128, (shape.co, shape.ci, shape.k, shape.k))
    g = rng.integers(-32768, 32768, (shape.n, shape.co, shape.ho, shape.wo))
    return x, w, g


def _windows(x, shape):
    p, s, k = shape.pad, shape.stride, shape.k
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    return win[:, :, ::s, ::s][:, :, : shape.ho, : shape.wo]


@cocotb.test()
async def conv_passes_vs_numpy_and_perfmodel(dut):
    """Whole convolutions through the engine, laid out by e2train.core.engine_map: forward,
    input gradient (hosting the PSG predictor's sweep on the predictor buses) and weight
    gradient (chunked sweeps summed as the shell sums them: exact with the predictor shadow,
    and PSG's exact sweep with only the undecided weights' DSPs) against numpy, at full rate;
    the cycles counted here against engine_map.pass_cycles (the performance model's count)."""
    rng = np.random.default_rng(SEED)
    eng = Engine(dut, random.Random(SEED))
    await eng.start()
    shapes = [ConvShape(2, 3, 5, 6, 5, 3, 1, 1), ConvShape(1, 4, 7, 7, 3, 3, 2, 1), ConvShape(2, 5, 4, 4, 4, 1, 1, 0)]
    report = []
    for shape in shapes:
        for unsigned in (True, False):
            x, w, g = _conv_data(rng, shape, unsigned)
            win = _windows(x, shape)
            cyc = {}
            # forward
            calls = engine_map.fwd_calls(x, w, shape, rows=ROWS, cols=COLS)
            results, cycles = [], 0
            for c in calls:
                r, n = await eng.call(Args(0, unsigned, True, False, True, True, c.cell_en), c.rows, c.cols)
                results.append(r)
                cycles += n
            want = np.einsum("nchwij,ocij->nohw", win, w.astype(np.int64))
            got = engine_map.fwd_collect(calls, results, shape, shape.n)
            assert np.array_equal(got, want), f"fwd {shape}: {np.argwhere(got != want)[:3]}"
            cyc["fwd"] = cycles
            # input gradient, hosting the PSG predictor's sweep over the weight gradient on the
            # predictor buses (G_msb of every weight over every position, summed by the shell)
            gexact = np.einsum("nchwij,nohw->ocij", win, g.astype(np.int64)).reshape(shape.co, -1)
            gmsb = np.einsum("nchwij,nohw->ocij", split_x_h(win, unsigned), split_g_h(g)).reshape(shape.co, -1)
            calls = engine_map.bwd_calls(g, w, shape, rows=ROWS, cols=COLS)
            extra = engine_map.attach_predictor(calls, x, g, shape, rows=ROWS, cols=COLS, chunk=CHUNK)
            results, cycles = [], 0
            for c in calls:
                pr = c.place.get("pred")
                a = Args(1, unsigned, True, pr is not None, True, True, c.cell_en,
                         pred_rows=pr["nr"] if pr else 0, pred_cols=pr["nc"] if pr else 0)
                r, n = await eng.call(a, c.rows, c.cols, c.prows, c.pcols)
                results.append(r)
                cycles += n
            got = engine_map.bwd_collect(calls, results, shape, shape.n)
            want = bwd_data_acc(g, w, shape)
            assert np.array_equal(got, want), f"bwd {shape}: {np.argwhere(got != want)[:3]}"
            cyc["bwd_data"] = cycles
            # the predictor-only calls the input gradient could not carry
            cycles = 0
            for c in extra:
                pr = c.place["pred"]
                a = Args(2, unsigned, False, True, True, True, c.cell_en, pred_rows=pr["nr"], pred_cols=pr["nc"])
                r, n = await eng.call(a, c.rows, c.cols, c.prows, c.pcols)
                results.append(r)
                cycles += n
            got = engine_map.wgrad_sum(calls + extra, results, shape, "pred")
            assert np.array_equal(got, gmsb), f"psg G_msb {shape}: {np.argwhere(got != gmsb)[:3]}"
            # weight gradient, exact, predictor shadowing: chunked sweep, the shell's sums
            calls = engine_map.wgrad_calls(x, g, shape, rows=ROWS, cols=COLS, chunk=CHUNK)
            results, cycles_w = [], 0
            for c in calls:
                r, n = await eng.call(Args(2, unsigned, True, True, True, True, c.cell_en), c.rows, c.cols,
                                      c.prows, c.pcols)
                results.append(r)
                cycles_w += n
            assert np.array_equal(engine_map.wgrad_sum(calls, results, shape, "exact"), gexact), f"wgrad {shape}"
            assert np.array_equal(engine_map.wgrad_sum(calls, results, shape, "pred"), gmsb), f"wgrad G_msb {shape}"
            cyc["wgrad"] = cycles_w
            # weight gradient with PSG: undecided = |G_msb| below beta * max (beta 0.5 here so
            # that both kinds occur); the exact sweep clocks only the undecided weights' DSPs
            undecided = np.abs(gmsb) < 0.5 * np.abs(gmsb).max()
            calls = engine_map.wgrad_calls(x, g, shape, psg=True, rows=ROWS, cols=COLS, chunk=CHUNK)
            results = []
            for c in calls:
                ex = c.place["exact"]
                c.cell_en[: ex["nr"], : ex["nc"]] = \
                    undecided[ex["co0"]: ex["co0"] + ex["nr"], ex["j0"]: ex["j0"] + ex["nc"]]
                r, n = await eng.call(Args(2, unsigned, True, False, True, True, c.cell_en), c.rows, c.cols)
                results.append(r)
                cycles += n
            got = engine_map.wgrad_sum(calls, results, shape, "exact")
            assert np.array_equal(got[undecided], gexact[undecided]), f"psg exact {shape}"
            assert not got[~undecided].any(), f"psg: a decided weight's DSP ran {shape}"
            cyc["wgrad_psg"] = cycles
            geom = {"rows": ROWS, "cols": COLS}
            model = {p: engine_map.pass_cycles(p, shape, chunk=CHUNK, **geom) for p in ("fwd", "bwd_data", "wgrad")}
            model["wgrad_psg"] = engine_map.pass_cycles("wgrad", shape, psg=True, chunk=CHUNK, **geom)
            for p, v in cyc.items():
                dev = abs(v - model[p]) / model[p]
                report.append(f"{shape} {p}: RTL {v} cycles, model {model[p]} ({dev:.2%})")
                assert dev <= 0.02, f"{p} {shape}: RTL {v} cycles, perfmodel {model[p]} ({dev:.1%} apart)"
    dut._log.info("cycles, RTL vs model:\n" + "\n".join(report))
