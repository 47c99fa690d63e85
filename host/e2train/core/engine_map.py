"""How the three convolution passes map onto the training engine (fpga/rtl/train_engine.v).

The engine is a ROWS x COLS grid of cells; per beat it takes one operand per row and one per
column and every cell accumulates their product (an outer product over the streamed index).
This module fixes the layout that the kernel shell feeds it, and is the one description of
that layout: the cocotb benches drive whole convolutions through the RTL with the calls it
builds, and the performance model counts the same calls.

  pass   rows (ROWS)        columns (COLS)                       beats per call
  FWD    output channels    2 output positions each (packed)     ci*k*k
  BWD    input channels     1 input position each                co * valid taps of its phase
  WGRAD  output channels    (input channel, ky, kx)              a chunk of listed positions

The weight gradient runs chunk by chunk: the shell loads one chunk of positions (g of the
weight group's output channels, x of every input channel) into BRAM once, runs every block
of the group over it (one call per block, operands from BRAM), and adds each call's result
into the group's partial sums in BRAM. So g and x come from DDR once per weight group, not
once per block. With PSG the predictor's sweep (G_msb of every weight, over every position)
runs before the exact sweep, on the predictor's own buses beside the input-gradient pass of
the same layer (``attach_predictor``); the exact sweep then runs only the undecided weights'
DSPs (cell_en from the layer's G_msb). Calls the input-gradient pass cannot host become
predictor-only calls.

Backward-data works in gather form: an input position (iy, ix) receives g_y[oy, ox] through
the taps with iy + pad - ky = oy*stride. With stride 2 the valid taps depend on the phase
((iy + pad) mod 2, (ix + pad) mod 2), so positions are grouped by phase and a call streams
only its phase's taps: no beat carries a tap that is zero for every column.

Board side: numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .shapes import ConvShape

ROWS = 8                 # cells per column: output (FWD, WGRAD) or input (BWD) channels
COLS = 18                # cells per row: position pairs (FWD), positions (BWD), (ci, tap) (WGRAD)
CALL_OVERHEAD = 6        # cycles per call beyond its beats: start, 3 drain, result, done (RTL)
HLS_CALL_OVERHEAD = 8    # the same through the HLS blackbox (train_engine_hls.v): + start and head
WGRAD_CHUNK = 256        # positions per weight-gradient call: the shell's x/g chunk buffers
PART_ADDERS = 2          # the shell's partial-sum adders: a call's ROWS*COLS results take ROWS*COLS/2 cycles
# Weights whose partial sums (dW 41 bits + G_msb 31 bits in one 72-bit BRAM word, in range for
# n*ho*wo <= 2**17 positions: core.shapes.MAX_WGRAD_CALL_TERMS) the shell
# keeps on chip: 36 BRAM36 at 512 x 72. A layer with more weights runs in weight groups of
# whole row blocks (output channels), each a sweep over every position (x read once per group).
WGRAD_PART_WEIGHTS = 36 * 512
FWD, BWD, WGRAD = 0, 1, 2
PASSES = {"fwd": FWD, "bwd_data": BWD, "wgrad": WGRAD}


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Call:
    """One engine call: the arguments, the beats, and where its cells' sums belong."""

    mode: int
    rows: np.ndarray                      # (beats, rows) int64 codes
    cols: np.ndarray                      # (beats, cols) int64 (FWD: x1 << 8 | x0, bytes)
    cell_en: np.ndarray                   # (rows, cols) bool
    prows: np.ndarray | None = None       # predictor operands (WGRAD, or a BWD call hosting them)
    pcols: np.ndarray | None = None
    place: dict = field(default_factory=dict)

    @property
    def beats(self) -> int:
        return int(self.rows.shape[0])


# ---- call counts (the performance model's view) -------------------------------------------

def _bwd_phases(shape: ConvShape) -> list[tuple[int, int]]:
    """(positions, valid taps) per phase of the gather form, over one sample."""
    s, p, k = shape.stride, shape.pad, shape.k
    out = []
    for py in range(s):
        for px in range(s):
            ny = sum(1 for iy in range(shape.h) if (iy + p) % s == py)
            nx = sum(1 for ix in range(shape.w) if (ix + p) % s == px)
            ty = sum(1 for ky in range(k) if ky % s == py)
            tx = sum(1 for kx in range(k) if kx % s == px)
            if ny and nx:
                out.append((ny * nx, ty * tx))
    return out


def call_beats(pass_name: str, shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS,
               cols: int = COLS, chunk: int = WGRAD_CHUNK) -> list[tuple[int, int]]:
    """[(number of calls, beats per call)] of one pass over n_samples listed samples."""
    n = shape.n if n_samples is None else n_samples
    mode = PASSES[pass_name]
    if n == 0:
        return []
    if mode == FWD:
        pos = n * shape.ho * shape.wo
        return [(_ceil(shape.co, rows) * _ceil(pos, 2 * cols), shape.ci * shape.k * shape.k)]
    if mode == BWD:
        return [(_ceil(shape.ci, rows) * _ceil(n * npos, cols), shape.co * taps)
                for npos, taps in _bwd_phases(shape) if taps]
    return _chunked(_wgrad_blocks(shape, rows, cols), n * shape.ho * shape.wo, chunk)


def _wgrad_blocks(shape: ConvShape, rows: int, cols: int) -> int:
    return _ceil(shape.co, rows) * _ceil(shape.ci * shape.k * shape.k, cols)


def _chunked(blocks: int, npos: int, chunk: int) -> list[tuple[int, int]]:
    """Every block over npos positions in calls of chunk beats (the last one shorter)."""
    full, rem = divmod(npos, chunk)
    return [(blocks * full, chunk)] * bool(full) + [(blocks, rem)] * bool(rem)


def weight_groups(shape: ConvShape, rows: int = ROWS) -> int:
    """Sweeps of the weight gradient: row blocks split so each group's partial sums fit on chip."""
    per_row_block = rows * shape.ci * shape.k * shape.k
    return _ceil(_ceil(shape.co, rows), max(1, WGRAD_PART_WEIGHTS // per_row_block))


def _pred_plan(host_beats: list[int], blocks: int, npos: int, chunk: int, min_beats: int):
    """The predictor sweep (every block over its npos positions, blocks in order) laid onto
    hosting calls of the given beats: per host call (block, p0, n) or None, and the
    predictor-only calls [(block, p0, n)] (at most chunk beats each) for the rest. A host call
    carries one block's positions (never two blocks': one pred_rows/pred_cols and one G_msb
    per call) and only if it has at least min_beats beats (its G_msb results must reach the
    partial sums before the next call's). Two ways, the one with fewer predictor-only cycles
    wins: a block's tail shorter than the host call goes in it (its other beats idle), or is
    left to a predictor-only call of the tail's length."""
    best = None
    for defer in (False, True):
        assign, tails = [], []
        b, pos = 0, 0
        for beats in host_beats:
            if b < blocks and beats >= min_beats and defer and 0 < pos and npos - pos < beats:
                tails.append((b, pos, npos - pos))
                b, pos = b + 1, 0
            if b == blocks or beats < min_beats:
                assign.append(None)
                continue
            n = min(beats, npos - pos)
            assign.append((b, pos, n))
            pos += n
            if pos == npos:
                b, pos = b + 1, 0
        rest = tails + ([(b, pos, npos - pos)] if b < blocks else []) + [(bb, 0, npos) for bb in range(b + 1, blocks)]
        extra = [(bb, p0 + q, min(chunk, n - q)) for bb, p0, n in rest for q in range(0, n, chunk)]
        cost = sum(n + CALL_OVERHEAD for _, _, n in extra)
        if best is None or cost < best[0]:
            best = (cost, assign, extra)
    return best[1], best[2]


def _host_min_beats(rows: int, cols: int) -> int:
    return _ceil(rows * cols, PART_ADDERS)


def predictor_only_calls(shape: ConvShape, n_samples: int | None = None, *, host: bool = True, rows: int = ROWS,
                         cols: int = COLS, chunk: int = WGRAD_CHUNK) -> list[tuple[int, int]]:
    """[(calls, beats)] of the predictor sweep that the input-gradient pass does not carry
    (all of it when host is False: the image's layer has no input gradient); the plan is
    ``_pred_plan``'s, the one ``attach_predictor`` builds."""
    n = shape.n if n_samples is None else n_samples
    hb = [beats for calls, beats in call_beats("bwd_data", shape, n, rows=rows, cols=cols) for _ in range(calls)] \
        if host else []
    _, extra = _pred_plan(hb, _wgrad_blocks(shape, rows, cols), n * shape.ho * shape.wo, chunk,
                          _host_min_beats(rows, cols))
    counts: dict = {}
    for _, _, nb in extra:
        counts[nb] = counts.get(nb, 0) + 1
    return [(calls, nb) for nb, calls in sorted(counts.items(), reverse=True)]


def pass_cycles(pass_name: str, shape: ConvShape, n_samples: int | None = None, *, psg: bool = False,
                pred_host: bool = True, rows: int = ROWS, cols: int = COLS, overhead: int = CALL_OVERHEAD,
                chunk: int = WGRAD_CHUNK) -> int:
    """Engine cycles of one pass, calls back to back at one beat per clock, each costing its
    beats + overhead (the engine's own CALL_OVERHEAD, or HLS_CALL_OVERHEAD through the
    blackbox). With psg the weight gradient's exact sweep has the same calls (only its cells
    are gated) plus the predictor-only calls the input-gradient pass could not host
    (pred_host False: no input-gradient pass to host the predictor)."""
    groups = call_beats(pass_name, shape, n_samples, rows=rows, cols=cols, chunk=chunk)
    if psg and PASSES[pass_name] == WGRAD:
        groups = groups + predictor_only_calls(shape, n_samples, host=pred_host, rows=rows, cols=cols, chunk=chunk)
    return sum(calls * (beats + overhead) for calls, beats in groups)


def pass_macs(pass_name: str, shape: ConvShape, n_samples: int | None = None) -> int:
    """Useful MACs of the pass (the convolution's own count; the same for all three)."""
    n = shape.n if n_samples is None else n_samples
    return n * shape.co * shape.ci * shape.k * shape.k * shape.ho * shape.wo


# ---- the calls themselves (what the shell streams) --------------------------------------

def _window_cols(x: np.ndarray, shape: ConvShape) -> np.ndarray:
    """(ci*k*k, positions) of the zero-padded input: x at (c, ky, kx) for each listed output
    position (n, oy, ox) in that order."""
    p, s, k = shape.pad, shape.stride, shape.k
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    win = win[:, :, : shape.ho, : shape.wo]                       # n c ho wo ky kx
    return win.transpose(1, 4, 5, 0, 2, 3).reshape(shape.ci * k * k, -1)


def fwd_calls(x: np.ndarray, w: np.ndarray, shape: ConvShape, *, rows: int = ROWS, cols: int = COLS) -> list[Call]:
    """x: (n, ci, h, w) listed samples; w: (co, ci, k, k). Cell (r, c) of a call holds output
    channel co0 + r at positions p0 + 2c (acc_lo) and p0 + 2c + 1 (acc_hi)."""
    win = _window_cols(x, shape)                                  # (ci*k*k, P)
    npos = win.shape[1]
    wf = w.astype(np.int64).reshape(shape.co, -1)                 # (co, ci*k*k)
    calls = []
    for co0 in range(0, shape.co, rows):
        nr = min(rows, shape.co - co0)
        r_ops = np.zeros((wf.shape[1], rows), np.int64)
        r_ops[:, :nr] = wf[co0: co0 + nr].T & 0xFF
        for p0 in range(0, npos, 2 * cols):
            npp = min(2 * cols, npos - p0)
            pos = np.zeros((wf.shape[1], 2 * cols), np.int64)
            pos[:, :npp] = win[:, p0: p0 + npp]
            c_ops = ((pos[:, 1::2] & 0xFF) << 8) | (pos[:, 0::2] & 0xFF)
            en = np.zeros((rows, cols), bool)
            en[:nr, : _ceil(npp, 2)] = True
            calls.append(Call(FWD, r_ops, c_ops, en, place={"co0": co0, "nr": nr, "p0": p0, "np": npp}))
    return calls


def fwd_collect(calls: list[Call], results: list[dict], shape: ConvShape, n: int) -> np.ndarray:
    """The int accumulators (n, co, ho, wo) from the calls' result beats (acc_lo, acc_hi)."""
    acc = np.zeros((shape.co, n * shape.ho * shape.wo), np.int64)
    for call, res in zip(calls, results):
        pl = call.place
        both = np.zeros((res["lo"].shape[0], 2 * res["lo"].shape[1]), np.int64)
        both[:, 0::2] = res["lo"]
        both[:, 1::2] = res["hi"]
        acc[pl["co0"]: pl["co0"] + pl["nr"], pl["p0"]: pl["p0"] + pl["np"]] = both[: pl["nr"], : pl["np"]]
    return acc.reshape(shape.co, n, shape.ho, shape.wo).transpose(1, 0, 2, 3)


def bwd_calls(g_y: np.ndarray, w: np.ndarray, shape: ConvShape, *, rows: int = ROWS, cols: int = COLS) -> list[Call]:
    """g_y: (n, co, ho, wo) listed samples. Cell (r, c): input channel ci0 + r at the c-th
    input position of the call's phase tile."""
    n = g_y.shape[0]
    s, p, k = shape.stride, shape.pad, shape.k
    g = g_y.astype(np.int64)
    w64 = w.astype(np.int64)
    calls = []
    for py in range(s):
        for px in range(s):
            iys = [iy for iy in range(shape.h) if (iy + p) % s == py]
            ixs = [ix for ix in range(shape.w) if (ix + p) % s == px]
            kys = [ky for ky in range(k) if ky % s == py]
            kxs = [kx for kx in range(k) if kx % s == px]
            if not (iys and ixs and kys and kxs):
                continue
            pos = [(b, iy, ix) for b in range(n) for iy in iys for ix in ixs]
            taps = [(o, ky, kx) for o in range(shape.co) for ky in kys for kx in kxs]
            for ci0 in range(0, shape.ci, rows):
                nr = min(rows, shape.ci - ci0)
                r_ops = np.zeros((len(taps), rows), np.int64)
                for t, (o, ky, kx) in enumerate(taps):
                    r_ops[t, :nr] = w64[o, ci0: ci0 + nr, ky, kx] & 0xFF
                for q0 in range(0, len(pos), cols):
                    tile = pos[q0: q0 + cols]
                    c_ops = np.zeros((len(taps), cols), np.int64)
                    for c, (b, iy, ix) in enumerate(tile):
                        for t, (o, ky, kx) in enumerate(taps):
                            oy, ox = iy + p - ky, ix + p - kx
                            if oy % s or ox % s:
                                continue
                            oy, ox = oy // s, ox // s
                            if 0 <= oy < shape.ho and 0 <= ox < shape.wo:
                                c_ops[t, c] = g[b, o, oy, ox] & 0xFFFF
                    en = np.zeros((rows, cols), bool)
                    en[:nr, : len(tile)] = True
                    calls.append(Call(BWD, r_ops, c_ops, en, place={"ci0": ci0, "nr": nr, "pos": tile}))
    return calls


def bwd_collect(calls: list[Call], results: list[dict], shape: ConvShape, n: int) -> np.ndarray:
    """The 48-bit accumulators (n, ci, h, w) from the calls' P registers."""
    acc = np.zeros((n, shape.ci, shape.h, shape.w), np.int64)
    for call, res in zip(calls, results):
        pl = call.place
        for c, (b, iy, ix) in enumerate(pl["pos"]):
            acc[b, pl["ci0"]: pl["ci0"] + pl["nr"], iy, ix] = res["p"][: pl["nr"], c]
    return acc


def wgrad_blocks(x: np.ndarray, g_y: np.ndarray, shape: ConvShape, *, rows: int = ROWS,
                 cols: int = COLS) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """Per block (rows output channels x cols (ci, ky, kx) columns): the row operands (g_y per
    listed position), the column operands (x at the column's tap per position) and where the
    block's weights belong."""
    win = _window_cols(x, shape)                                  # (ci*k*k, P)
    gf = g_y.astype(np.int64).transpose(1, 0, 2, 3).reshape(shape.co, -1)   # (co, P)
    out = []
    for co0 in range(0, shape.co, rows):
        nr = min(rows, shape.co - co0)
        r_ops = np.zeros((gf.shape[1], rows), np.int64)
        r_ops[:, :nr] = gf[co0: co0 + nr].T & 0xFFFF
        for j0 in range(0, win.shape[0], cols):
            nc = min(cols, win.shape[0] - j0)
            c_ops = np.zeros((gf.shape[1], cols), np.int64)
            c_ops[:, :nc] = win[j0: j0 + nc].T & 0xFF
            out.append((r_ops, c_ops, {"co0": co0, "nr": nr, "j0": j0, "nc": nc}))
    return out


def _wgrad_order(blocks: list, shape: ConvShape, rows: int) -> list[list]:
    """The blocks by weight group (whole row blocks, in order)."""
    nrb = _ceil(shape.co, rows)
    per = _ceil(nrb, weight_groups(shape, rows))
    return [[b for b in blocks if per * rows * gi <= b[2]["co0"] < per * rows * (gi + 1)] for gi in range(_ceil(nrb, per))]


def wgrad_calls(x: np.ndarray, g_y: np.ndarray, shape: ConvShape, *, psg: bool = False, rows: int = ROWS,
                cols: int = COLS, chunk: int = WGRAD_CHUNK) -> list[Call]:
    """The weight gradient's exact sweep: per weight group, per chunk of positions, one call
    per block over the chunk (the shell adds the results: ``wgrad_sum``). Without psg every
    cell runs and the predictor shadows it on the same operands (beta = 0: G_msb for the
    statistics). With psg the predictor is off (its sweep ran before, ``attach_predictor``)
    and cell_en is left empty: the caller sets the block's undecided weights from the layer's
    G_msb. place["exact"] / ["pred"]: the block and its positions p0 .. p0 + np (None: off)."""
    blocks = wgrad_blocks(x, g_y, shape, rows=rows, cols=cols)
    npos = blocks[0][0].shape[0] if blocks else 0
    calls = []
    for group in _wgrad_order(blocks, shape, rows):
        for p0 in range(0, npos, chunk):
            npp = min(chunk, npos - p0)
            for r_ops, c_ops, pl in group:
                place = {**pl, "p0": p0, "np": npp}
                en = np.zeros((rows, cols), bool)
                if not psg:
                    en[: pl["nr"], : pl["nc"]] = True
                r, c = r_ops[p0: p0 + npp], c_ops[p0: p0 + npp]
                calls.append(Call(WGRAD, r, c, en, prows=None if psg else r, pcols=None if psg else c,
                                  place={"exact": place, "pred": None if psg else place}))
    return calls


def attach_predictor(host: list[Call], x: np.ndarray, g_y: np.ndarray, shape: ConvShape, *, rows: int = ROWS,
                     cols: int = COLS, chunk: int = WGRAD_CHUNK) -> list[Call]:
    """The PSG predictor's sweep over the weight gradient (every block over every position)
    laid onto the predictor buses of the input-gradient calls ``host`` (same layer, in place:
    prows/pcols and place["pred"] set), walking the blocks in order; a hosting call of B beats
    carries up to B positions of one block (its other beats are zero operands: g_h = 0 adds
    nothing). Returns the predictor-only WGRAD calls (chunk beats) for what the host could not
    carry. The counts are ``predictor_only_calls``'s."""
    blocks = wgrad_blocks(x, g_y, shape, rows=rows, cols=cols)
    npos = blocks[0][0].shape[0] if blocks else 0
    assign, extra = _pred_plan([c.beats for c in host], len(blocks), npos, chunk, _host_min_beats(rows, cols))

    def segment(b: int, p0: int, npp: int, beats: int):
        r_ops, c_ops, pl = blocks[b]
        pr = np.zeros((beats, rows), np.int64)
        pc = np.zeros((beats, cols), np.int64)
        pr[:npp], pc[:npp] = r_ops[p0: p0 + npp], c_ops[p0: p0 + npp]
        return pr, pc, {**pl, "p0": p0, "np": npp}

    for call, seg in zip(host, assign):
        if seg is not None:
            call.prows, call.pcols, call.place["pred"] = segment(*seg, call.beats)
    out = []
    for b, p0, npp in extra:
        pr, pc, place = segment(b, p0, npp, npp)
        out.append(Call(WGRAD, pr, pc, np.zeros((rows, cols), bool), prows=pr, pcols=pc,
                        place={"exact": None, "pred": place}))
    return out


def wgrad_sum(calls: list[Call], results: list[dict], shape: ConvShape, path: str) -> np.ndarray:
    """What the shell accumulates in BRAM from the calls' result beats: path "exact" sums P
    (dW), "pred" sums acc_lo (G_msb); (co, ci*k*k) int64."""
    key = {"exact": "p", "pred": "lo"}[path]
    acc = np.zeros((shape.co, shape.ci * shape.k * shape.k), np.int64)
    for call, res in zip(calls, results):
        pl = call.place.get(path)
        if pl is not None:
            acc[pl["co0"]: pl["co0"] + pl["nr"], pl["j0"]: pl["j0"] + pl["nc"]] += res[key][: pl["nr"], : pl["nc"]]
    return acc
