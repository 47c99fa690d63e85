"""Reference model of the training engine (fpga/rtl/train_engine.v) for the cocotb benches,
written from the contract (docs/rtl.md), not from the RTL: the state of every cell's three
accumulators, updated call by call.

The MSB split is the contract's (v2, round half away from zero): e2train.core.fixedpoint's
msb_split_x/_g, the one Python implementation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from e2train.core import fixedpoint

P_W, LO_W, HI_W = 48, 31, 31
P_OUT_W = 41       # P's bits in the blackbox's read-out (train_engine_hls.v), sign-extended


def split_x_h(x: np.ndarray, unsigned: bool) -> np.ndarray:
    """x_h of uint8 (0..15) or int8 (-8..7) codes."""
    return fixedpoint.msb_split_x(np.asarray(x).astype(np.uint8 if unsigned else np.int8))[0]


def split_g_h(g: np.ndarray) -> np.ndarray:
    """g_h of int16 codes (-512..511)."""
    return fixedpoint.msb_split_g(np.asarray(g).astype(np.int16))[0]


def bwd_data_acc(g: np.ndarray, w: np.ndarray, shape) -> np.ndarray:
    """Exact int64 backward-data accumulator of a convolution (g: N,Co,Ho,Wo; w: Co,Ci,k,k),
    the reference the engine's backward passes are checked against."""
    p, st, k = shape.pad, shape.stride, shape.k
    acc = np.zeros((shape.n, shape.ci, shape.h + 2 * p, shape.w + 2 * p), np.int64)
    for i in range(k):
        for j in range(k):
            acc[:, :, i: i + st * shape.ho: st, j: j + st * shape.wo: st] += np.einsum(
                "nohw,oc->nchw", g.astype(np.int64), w[:, :, i, j].astype(np.int64))
    return acc[:, :, p: p + shape.h, p: p + shape.w]


def wrap(v: np.ndarray, bits: int) -> np.ndarray:
    v = np.asarray(v, np.int64) & ((1 << bits) - 1)
    return np.where(v >> (bits - 1), v - (1 << bits), v)


def sx(v: np.ndarray, bits: int) -> np.ndarray:
    """The low `bits` of v as two's complement."""
    return wrap(v, bits)


@dataclass
class Args:
    mode: int                 # 0 FWD, 1 BWD, 2 WGRAD
    x_unsigned: bool
    exact_en: bool
    pred_en: bool
    clr_dsp: bool
    clr_fab: bool
    cell_en: np.ndarray       # (rows, cols) bool: the DSP path
    pred_rows: int = 255      # the predictor's cells: r < pred_rows, c < pred_cols
    pred_cols: int = 255

    def pred_mask(self) -> np.ndarray:
        r, c = self.cell_en.shape
        m = (np.arange(r)[:, None] < self.pred_rows) & (np.arange(c)[None, :] < self.pred_cols)
        return m & bool(self.pred_en) & (self.mode in (1, 2))


class EngineModel:
    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        self.p = np.zeros((rows, cols), np.int64)
        self.lo = np.zeros((rows, cols), np.int64)
        self.hi = np.zeros((rows, cols), np.int64)

    def _x(self, codes: np.ndarray, unsigned: bool) -> np.ndarray:
        codes = np.asarray(codes, np.int64) & 0xFF
        return codes if unsigned else sx(codes, 8)

    def call(self, a: Args, rows: np.ndarray, cols: np.ndarray, prows=None, pcols=None) -> None:
        """rows (beats, R), cols (beats, C): the 16-bit bus fields as given; prows/pcols the
        predictor buses (WGRAD)."""
        if a.clr_dsp:
            self.p[:] = 0
        if a.clr_fab:
            self.lo[:] = 0
            self.hi[:] = 0
        dsp = a.cell_en & a.exact_en & (a.mode in (0, 1, 2))
        pred = a.pred_mask()
        rows = np.asarray(rows, np.int64).reshape(-1, self.rows)
        cols = np.asarray(cols, np.int64).reshape(-1, self.cols)
        for t in range(rows.shape[0]):
            r, c = rows[t], cols[t]
            if a.mode == 0:
                w = sx(r, 8)[:, None]
                x0 = self._x(c, a.x_unsigned)[None, :]
                x1 = self._x(c >> 8, a.x_unsigned)[None, :]
                self.lo = np.where(dsp, wrap(self.lo + w * x0, LO_W), self.lo)
                self.hi = np.where(dsp, wrap(self.hi + w * x1, HI_W), self.hi)
                # P holds the last packed product plus the 2^15 the DSP adds (docs/rtl.md)
                self.p = np.where(dsp, wrap(w * (x1 * 65536 + x0) + 32768, P_W), self.p)
            elif a.mode == 1:
                prod = sx(r, 8)[:, None] * sx(c, 16)[None, :]
                self.p = np.where(dsp, wrap(self.p + prod, P_W), self.p)
            elif a.mode == 2:
                prod = sx(r, 16)[:, None] * self._x(c, a.x_unsigned)[None, :]
                self.p = np.where(dsp, wrap(self.p + prod, P_W), self.p)
            if a.mode in (1, 2) and prows is not None:
                # the predictor has its own buses: beside the BWD pass it runs a weight
                # gradient's predictor sweep (docs/rtl.md, the weight-gradient dataflow)
                gh = split_g_h(sx(np.asarray(prows[t], np.int64), 16))[:, None]
                xh = split_x_h(self._x(pcols[t], a.x_unsigned), a.x_unsigned)[None, :]
                self.lo = np.where(pred, wrap(self.lo + gh * xh, LO_W), self.lo)

    def result(self) -> dict:
        return {"p": self.p.copy(), "lo": self.lo.copy(), "hi": self.hi.copy()}


class BlackboxModel(EngineModel):
    """The HLS blackbox (train_engine_hls.v, train_engine_hls()): a call emits the previous
    call's rows (when emit), then runs (mode 3: nothing), then keeps its results for the next."""

    def __init__(self, rows: int, cols: int):
        super().__init__(rows, cols)
        self.shadow = self.result()

    def hls_call(self, a: Args, rows, cols, prows, pcols, emit: bool):
        out = self.shadow if emit else None
        if a.mode != 3:
            self.call(a, rows, cols, prows, pcols)
            self.shadow = self.result()
            self.shadow["p"] = wrap(self.shadow["p"], P_OUT_W)
        return out


def random_hls_call(rng: np.random.Generator, rows: int, cols: int, first: bool = False, max_beats: int = 9):
    """(Args, row ops, col ops, prow ops, pcol ops, emit) of a random blackbox call: every
    mode including the flush, codes over their whole ranges with extremes, 1..max_beats beats."""
    mode = int(rng.integers(0, 4)) if not first else int(rng.integers(0, 3))
    xu = bool(rng.integers(2))
    a = Args(mode=mode, x_unsigned=xu, exact_en=bool(rng.random() < 0.85), pred_en=bool(rng.integers(2)),
             clr_dsp=first or bool(rng.random() < 0.5), clr_fab=first or bool(rng.random() < 0.5),
             cell_en=rng.random((rows, cols)) < 0.7, pred_rows=int(rng.integers(0, rows + 2)),
             pred_cols=int(rng.integers(0, cols + 2)))
    beats = 0 if mode == 3 else int(rng.integers(1, max_beats + 1))

    def codes(lo, hi, n):
        pick = rng.integers(lo, hi + 1, size=(beats, n))
        ext = rng.choice(np.array([lo, hi, 0, -1 if lo < 0 else 1]), size=(beats, n))
        return np.where(rng.random((beats, n)) < 0.2, ext, pick)
    xlo, xhi = (0, 255) if xu else (-128, 127)
    if mode == 0:
        r = codes(-128, 127, rows) & 0xFF
        c = ((codes(xlo, xhi, cols) & 0xFF) << 8) | (codes(xlo, xhi, cols) & 0xFF)
    elif mode == 1:
        r, c = codes(-128, 127, rows) & 0xFF, codes(-32768, 32767, cols) & 0xFFFF
    else:
        r, c = codes(-32768, 32767, rows) & 0xFFFF, codes(xlo, xhi, cols) & 0xFF
    pr, pc = codes(-32768, 32767, rows) & 0xFFFF, codes(xlo, xhi, cols) & 0xFF
    return a, r, c, pr, pc, bool(rng.random() < 0.8)
