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

The weight gradient runs chunk by chunk: the shell stages one chunk of positions (g of the
weight group's output channels, the x rows of its input channels that the chunk reaches) in
its chunk buffers, runs every block of the group over it (one call per block, operands from
the buffers), and adds each call's result into the group's partial sums in BRAM. The calls
of one chunk stage the next chunk in the buffers' other half (``wgrad_steps``). So g comes
from DDR once per weight group and x once per group and chunk (rows shared by two chunks of
one image twice), not once per block. With PSG the predictor's sweep (G_msb of every weight, over every position)
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
PART_ADDERS = 2          # the shell's partial-sum adders: a weight's G and G_msb, one weight a cycle
# The output stage (hls/src/e2t_engine.cpp output_stage), the process beside each engine call that
# takes the rows the engine emits during it (the previous call's), one output a cycle: a trip per
# row read, and the forward's 2*COLS positions, the input gradient's COLS of each row inside the
# layer, the weight gradient's COLS weights of every row.
# Weights whose partial sums (dW 41 bits + G_msb 31 bits in one 72-bit BRAM word, in range for
# n*ho*wo <= 2**17 positions: core.shapes.MAX_WGRAD_CALL_TERMS) the shell
# keeps on chip: 36 BRAM36 at 512 x 72. A layer with more weights runs in weight groups of
# whole row blocks (output channels), each a sweep over every position (x read once per group).
WGRAD_PART_WEIGHTS = 36 * 512
# The chunk buffers (hls/include/e2t_passes.h, namespace wgrad, the same numbers): x in 18
# banks of 72-bit words (9 codes), WGRAD_X_WORDS a bank per half (two halves: one staged while
# the other is read), read as 6 logical banks (channel parity x row residue) of 3 banks each;
# g of at most WGRAD_G_ROWS output channels, CHUNK positions, 4 codes a 64-bit word, a bank per
# engine row.
WGRAD_X_BANKS = 18
WGRAD_X_WORDS = 256
WGRAD_G_ROWS = 64
WGRAD_1X1_CYCLES = 9     # a 1x1 layer's beat: 18 channels of one row, two a cycle
# The forward's x buffer (hls/include/e2t_passes.h, namespace fwd, the same numbers): a block's
# 2*COLS positions read x from FWD_X_BANKS byte-wide banks (position i at tap (ky, kx) from bank
# i + kx // stride), FWD_X_WORDS entries a bank per half (one half staged while the other is
# read); the stager moves one 64-bit word's window of codes a trip.
FWD_X_BANKS = 2 * COLS + 2
FWD_X_WORDS = 1024
FWD_STAGE_CODES = 8
# The input gradient's g buffer (namespace bwd, the same numbers): a phase block's COLS positions
# read g_y from BWD_G_BANKS int16 banks (position c at the phase's tap column b from bank
# c + nkx - 1 - b), BWD_G_WORDS entries a bank per half; a stager trip is a 64-bit word, 4 codes.
BWD_G_BANKS = COLS + 2
BWD_G_WORDS = 512
BWD_STAGE_CODES = 4
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

def call_beats(pass_name: str, shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS,
               cols: int = COLS, chunk: int = WGRAD_CHUNK) -> list[tuple[int, int]]:
    """[(number of calls, beats per call)] of one pass over n_samples listed samples."""
    n = shape.n if n_samples is None else n_samples
    mode = PASSES[pass_name]
    if n == 0:
        return []
    if mode == FWD:
        pos = n * shape.ho * shape.wo
        calls = _ceil(shape.co, rows) * _ceil(pos, 2 * cols)
        kk, step = shape.k * shape.k, fwd_step_channels(shape)
        full, rem = divmod(shape.ci, step)     # the channel steps of a block (one when they fit)
        return [(calls * full, step * kk)] * bool(full) + [(calls, rem * kk)] * bool(rem)
    if mode == BWD:
        out = []
        for f in bwd_phases(shape):
            if not f["taps"] or not f["ny"] * f["nx"]:
                continue
            calls = _ceil(shape.ci, rows) * _ceil(n * f["ny"] * f["nx"], cols)
            step = bwd_step_channels(shape, f)
            full, rem = divmod(shape.co, step)   # the output-channel steps of a block (one when they fit)
            out += [(calls * full, step * f["taps"])] * bool(full) + [(calls, rem * f["taps"])] * bool(rem)
        return out
    return _chunked(_wgrad_blocks(shape, rows, cols), n * shape.ho * shape.wo, chunk)


def _wgrad_blocks(shape: ConvShape, rows: int, cols: int) -> int:
    return _ceil(shape.co, rows) * _ceil(shape.ci * shape.k * shape.k, cols)


def _chunked(blocks: int, npos: int, chunk: int) -> list[tuple[int, int]]:
    """Every block over npos positions in calls of chunk beats (the last one shorter)."""
    full, rem = divmod(npos, chunk)
    return [(blocks * full, chunk)] * bool(full) + [(blocks, rem)] * bool(rem)


def in_rows(shape: ConvShape, a: int, b: int) -> tuple[int, int]:
    """Input rows [lo, hi] that output rows a..b of one sample reach, clipped to the image."""
    return max(0, a * shape.stride - shape.pad), min(shape.h - 1, b * shape.stride - shape.pad + shape.k - 1)


def chunk_segments(shape: ConvShape, p0: int, p1: int) -> list[tuple[int, int, int]]:
    """(listed sample, first output row, last output row) of each sample that positions
    [p0, p1) touch."""
    hw, wo = shape.ho * shape.wo, shape.wo
    s0, s1 = p0 // hw, (p1 - 1) // hw
    return [(si, (p0 % hw) // wo if si == s0 else 0, ((p1 - 1) % hw) // wo if si == s1 else shape.ho - 1)
            for si in range(s0, s1 + 1)]


def chunk_slots(shape: ConvShape, p0: int, p1: int) -> int:
    """Input rows a chunk of positions [p0, p1) stages (per input channel)."""
    return sum(hi - lo + 1 for lo, hi in (in_rows(shape, a, b) for _, a, b in chunk_segments(shape, p0, p1)))


def wgrad_chunks(npos: int, chunk: int = WGRAD_CHUNK) -> list[tuple[int, int]]:
    """The weight gradient's chunks of npos listed positions: [(p0, p1)], CHUNK each but the last."""
    return [(p0, min(p0 + chunk, npos)) for p0 in range(0, npos, chunk)]


def row_words(shape: ConvShape) -> int:
    """72-bit words a staged x row takes (hls/include/e2t_passes.h): 9 codes at a stride of 7,
    so that every window of k neighbouring codes of the row and its padding lies in one word."""
    return _ceil(shape.w + 2 * shape.pad - shape.k + 1, 7)


def wgrad_beat_cycles(shape: ConvShape) -> int:
    """Cycles the weight gradient's feeder takes a beat: 1, or WGRAD_1X1_CYCLES for a 1x1 layer
    (its 18 channels come two a cycle from the chunk buffers' logical banks)."""
    return 1 if shape.k == 3 else WGRAD_1X1_CYCLES


def wgrad_plan(shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS, cols: int = COLS) -> tuple[int, int]:
    """(output channels, columns) of a weight group, as the kernel plans them (``plan`` in
    hls/src/conv_bwd_weight_psg.cpp): whole row blocks whose partial sums fit on chip, at most
    WGRAD_G_ROWS; every column unless a row block's partial sums do not fit, or the x rows of
    the widest chunk of every input channel do not fit the x buffer (then the channel pairs
    that do, in whole blocks of COLS columns). Columns 0: not even one block's channels fit
    (``shapes.check_wgrad_stage``)."""
    n = shape.n if n_samples is None else n_samples
    # every weight-gradient call's price and argument check asks: cached on all it reads
    key = (shape, n, rows, cols, WGRAD_PART_WEIGHTS, WGRAD_X_WORDS, WGRAD_G_ROWS, WGRAD_CHUNK)
    got = _PLAN_CACHE.get(key)
    if got is None:
        if len(_PLAN_CACHE) > 4096:
            _PLAN_CACHE.clear()
        got = _PLAN_CACHE[key] = _wgrad_plan(shape, n, rows, cols)
    return got


_PLAN_CACHE: dict = {}


def _wgrad_plan(shape: ConvShape, n: int, rows: int, cols: int) -> tuple[int, int]:
    taps = shape.ci * shape.k * shape.k
    r = min(WGRAD_G_ROWS, (WGRAD_PART_WEIGHTS // (rows * taps)) * rows) if rows * taps <= WGRAD_PART_WEIGHTS else rows
    c = taps if rows * taps <= WGRAD_PART_WEIGHTS else (WGRAD_PART_WEIGHTS // (rows * cols)) * cols
    slots = max([1] + [chunk_slots(shape, p0, p1) for p0, p1 in wgrad_chunks(n * shape.ho * shape.wo)])
    pairs = (3 * WGRAD_X_WORDS) // (_ceil(slots, 3) * row_words(shape))
    return r, min(c, (2 * pairs * shape.k * shape.k // WGRAD_X_BANKS) * WGRAD_X_BANKS)


def wgrad_groups(shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS,
                 cols: int = COLS) -> list[tuple[int, int, int, int]]:
    """The weight groups in sweep order: (first output channel, end, first column, end)."""
    r, c = wgrad_plan(shape, n_samples, rows=rows, cols=cols)
    taps = shape.ci * shape.k * shape.k
    if c == 0:
        raise ValueError(f"{shape}: the weight gradient's x chunk buffer cannot hold one column block "
                         f"(core.shapes.check_wgrad_stage)")
    return [(o0, min(o0 + r, shape.co), j0, min(j0 + c, taps)) for o0 in range(0, shape.co, r)
            for j0 in range(0, taps, c)]


def weight_groups(shape: ConvShape, rows: int = ROWS, n_samples: int | None = None) -> int:
    """Sweeps of the weight gradient: the groups whose partial sums, g and x rows fit on chip."""
    return len(wgrad_groups(shape, n_samples, rows=rows))


@dataclass(frozen=True)
class Step:
    """One weight group's chunk as the kernel stages it (``wgrad_steps``)."""

    p0: int
    p1: int
    nch: int            # the group's input channels (x units of the stagers)
    nr: int             # its output channels (g units)
    slots: int          # staged input rows per channel
    blocks: int         # the group's blocks: the step's engine calls

    def x_unit_trips(self, shape: ConvShape) -> int:
        return self.slots * row_words(shape)

    def g_unit_trips(self) -> int:
        return _ceil(self.p1 - self.p0, 4)


def wgrad_steps(shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS, cols: int = COLS) -> list[Step]:
    """The weight gradient's steps in sweep order (group by group, chunk by chunk)."""
    n = shape.n if n_samples is None else n_samples
    kk = shape.k * shape.k
    chunks = [(p0, p1, chunk_slots(shape, p0, p1)) for p0, p1 in wgrad_chunks(n * shape.ho * shape.wo)]
    out = []
    for o0, o1, j0, j1 in wgrad_groups(shape, n, rows=rows, cols=cols):
        blocks = _ceil(o1 - o0, rows) * _ceil(j1 - j0, cols)
        out += [Step(p0, p1, (j1 - j0) // kk, o1 - o0, slots, blocks) for p0, p1, slots in chunks]
    return out


def wgrad_staging(shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS, cols: int = COLS) -> dict:
    """What the kernel's stagers do over one pass, in the C simulation's counters' terms
    (``core.csim.wgrad_staging``): DDR bytes and loop trips of x and g, the prologue (the first
    step, before any call: the larger of its x and g trips), the calls that stage, and per
    call of step t the larger of its shares of step t+1's x and g trips ("per_call": one entry
    a call, in call order; the flush calls stage nothing) beside its beats ("per_call_beats")."""
    steps = wgrad_steps(shape, n_samples, rows=rows, cols=cols)
    out = {"x_bytes": 0, "g_bytes": 0, "x_trips": 0, "g_trips": 0, "prologue": 0, "staging_calls": 0,
           "call_trips": 0, "per_call": [], "per_call_beats": [], "per_call_out": [], "flush_out": [], "out_trips": 0}
    if not steps:
        return out
    for st in steps:
        out["x_bytes"] += st.nch * st.slots * shape.w
        out["g_bytes"] += st.nr * 2 * (st.p1 - st.p0)
        out["x_trips"] += st.nch * st.x_unit_trips(shape)
        out["g_trips"] += st.nr * st.g_unit_trips()
    first = steps[0]
    out["prologue"] = max(first.nch * first.x_unit_trips(shape), first.nr * first.g_unit_trips())
    for t, st in enumerate(steps):
        nxt = steps[t + 1] if t + 1 < len(steps) else None
        for b in range(st.blocks):
            trips = 0
            if nxt is not None:
                xu = (b + 1) * nxt.nch // st.blocks - b * nxt.nch // st.blocks
                gu = (b + 1) * nxt.nr // st.blocks - b * nxt.nr // st.blocks
                trips = max(xu * nxt.x_unit_trips(shape), gu * nxt.g_unit_trips())
            out["per_call"].append(trips)
            out["per_call_beats"].append(st.p1 - st.p0)
            # the output stage: the call before's rows, but in a group's first call (its first
            # chunk, p0 = 0); each group's flush call takes its last call's
            out["per_call_out"].append(gather_trips(rows, cols) if st.p0 or b else 0)
            if trips:
                out["staging_calls"] += 1
                out["call_trips"] += trips
        if nxt is None or nxt.p0 == 0:
            out["flush_out"].append(gather_trips(rows, cols))
    out["out_trips"] = sum(out["per_call_out"]) + sum(out["flush_out"])
    return out


# ---- the forward's x buffer (hls/src/conv_fwd.cpp: place, stage, the pass's step walk) -----------

def entry_slots(halo: int, width: int) -> int:
    """Slots of a staged buffer's entries (hls/include/e2t_passes.h entry_slots): segments j and
    j+m of a block share banks only when the m-1 whole rows of `width` positions between them
    are shorter than the halo; rounded up to 1, 2 or 4 (an entry is its base and the slot side
    by side)."""
    need = 2 + (halo - 1) // width if halo else 1
    return 1 if need <= 1 else 2 if need <= 2 else 4


def fwd_slots(shape: ConvShape) -> int:
    """Slots of the x buffer's entries: the halo (k-1)//stride over rows of wo positions."""
    return entry_slots((shape.k - 1) // shape.stride, shape.wo)


def fwd_phases(shape: ConvShape) -> int:
    return min(shape.stride, shape.k)


def fwd_step_channels(shape: ConvShape) -> int:
    """Input channels one step of the x buffer holds (k * phases * slots entries a channel)."""
    return min(shape.ci, FWD_X_WORDS // (shape.k * fwd_phases(shape) * fwd_slots(shape)))


def segments(rows: int, width: int, npos: int, p0: int, block: int) -> list[tuple[int, int, int, int, int]]:
    """(first position in the block, length, listed sample, row, first column) of each run of a
    block's positions p0 .. p0+block-1 (of npos, over samples of rows x width) on one row of
    one sample: the staged buffers' segments (the kernels' place())."""
    segs = []
    for p in range(p0, min(p0 + block, npos)):
        s, y, x = p // (rows * width), (p % (rows * width)) // width, p % width
        if p == p0 or x == 0:
            segs.append([p - p0, 0, s, y, x])
        segs[-1][1] += 1
    return [tuple(g) for g in segs]


def fwd_segments(shape: ConvShape, npos: int, p0: int, cols: int = COLS) -> list[tuple[int, int, int, int, int]]:
    """A forward block's segments: runs on one output row of one sample."""
    return segments(shape.ho, shape.wo, npos, p0, 2 * cols)


def row_trips(i0: int, rlen: int, stride: int, phases: int, lanes: int) -> int:
    """A stager's trips for one staged row of rlen codes from bank i0 (hls/include/e2t_passes.h
    row_trips): per phase the aligned windows of `lanes` banks its codes fall in, at least the
    row's 64-bit DDR words (`lanes` codes each)."""
    w = 0
    for ph in range(phases):
        n = _ceil(rlen - ph, stride)
        w += (i0 + n - 1) // lanes - i0 // lanes + 1
    return max(w, _ceil(rlen, lanes))


def fwd_unit_trips(shape: ConvShape, segs) -> tuple[int, int]:
    """(stager trips, DDR bytes) of one input channel of a block: per segment and kernel row its
    row's trips (row_trips); the bytes are the span's in-image codes of the rows inside the
    image."""
    s, k, pad = shape.stride, shape.k, shape.pad
    nph = fwd_phases(shape)
    trips = nbytes = 0
    for i0, ln, _, oy, ox in segs:
        rlen, ix0 = s * (ln - 1) + k, ox * s - pad
        trips += k * row_trips(i0, rlen, s, nph, FWD_STAGE_CODES)
        cols_in = min(shape.w - 1, ix0 + rlen - 1) - max(0, ix0) + 1
        rows_in = sum(0 <= oy * s - pad + ky < shape.h for ky in range(k))
        nbytes += rows_in * cols_in
    return trips, nbytes


def fwd_steps(shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS, cols: int = COLS) -> list[dict]:
    """The forward pass's steps in order (hls/src/conv_fwd.cpp): per group of output-channel
    tiles whose weights fit the weight buffer (MAX_TAPS rows), per block of 2*cols positions,
    one step of all input channels read by every tile's call, or, when the channels do not fit
    one step, per tile the steps of fwd_step_channels each (one call each). A step: its block's
    segments, channels (c0, nch; its units) and calls with their beats."""
    from .shapes import MAX_TAPS
    n = shape.n if n_samples is None else n_samples
    npos = n * shape.ho * shape.wo
    if npos == 0:
        return []
    taps = shape.ci * shape.k * shape.k
    tiles = _ceil(shape.co, rows)
    per_group = min(tiles, MAX_TAPS // taps)
    step = fwd_step_channels(shape)
    chans = [(c0, min(step, shape.ci - c0)) for c0 in range(0, shape.ci, step)]
    blocks = [fwd_segments(shape, npos, p0, cols) for p0 in range(0, npos, 2 * cols)]
    kk = shape.k * shape.k
    out = []
    for g0 in range(0, tiles, per_group):
        gt = min(per_group, tiles - g0)
        for segs in blocks:
            if len(chans) == 1:
                out.append({"segs": segs, "c0": 0, "nch": shape.ci, "units": shape.ci, "beats": shape.ci * kk,
                            "calls": gt, "tiles": list(range(g0, g0 + gt)), "first": True})
            else:
                out += [{"segs": segs, "c0": c0, "nch": nch, "units": nch, "beats": nch * kk, "calls": 1,
                         "tiles": [t], "first": c0 == 0}
                        for t in range(g0, g0 + gt) for c0, nch in chans]
    return out


def gather_trips(rows: int = ROWS, cols: int = COLS) -> int:
    """The weight gradient's output stage for one call: every row read, each of its cols weights."""
    return rows * (1 + cols)


def _stager_account(steps: list[dict], unit_of, out_of) -> dict:
    """What a pass's stager does over its steps (each with its "units" staged, its "calls" and
    their "beats"; unit_of(step) -> (trips, DDR bytes) of one unit), in the C simulation's
    counters' terms: DDR bytes and trips, the prologue (the first step, before any call), the
    calls that stage, and per call ("per_call", in call order) its even share of the next step's
    units' trips beside its beats ("per_call_beats"). And the output stage: per call
    ("per_call_out") the trips of the (block, tile) whose rows it emits (out_of(tile): the one
    before, when the call starts a (block, tile): the step's "first"; its calls' tiles are the
    step's "tiles"), "flush_out" the last one's (the flush call's), "out_trips" all of them."""
    out = {"x_bytes": 0, "trips": 0, "prologue": 0, "staging_calls": 0, "call_trips": 0, "per_call": [],
           "per_call_beats": [], "per_call_out": [], "flush_out": 0, "out_trips": 0}
    pending = None
    for st in steps:
        for tile in st["tiles"]:
            emits = st["first"] and pending is not None
            out["per_call_out"].append(pending if emits else 0)
            if st["first"]:
                pending = out_of(tile)
    out["flush_out"] = pending or 0
    out["out_trips"] = sum(out["per_call_out"]) + out["flush_out"]
    for st in steps:
        st["unit"] = unit_of(st)
        out["trips"] += st["units"] * st["unit"][0]
        out["x_bytes"] += st["units"] * st["unit"][1]
    if not steps:
        return out
    out["prologue"] = steps[0]["units"] * steps[0]["unit"][0]
    for t, st in enumerate(steps):
        nxt = steps[t + 1] if t + 1 < len(steps) else None
        q = st["calls"]
        for c in range(q):
            trips = 0
            if nxt is not None:
                trips = ((c + 1) * nxt["units"] // q - c * nxt["units"] // q) * nxt["unit"][0]
            out["per_call"].append(trips)
            out["per_call_beats"].append(st["beats"])
            if trips:
                out["staging_calls"] += 1
                out["call_trips"] += trips
    return out


def _per_layout(fn, key):
    """unit_of for _stager_account: fn(step) once per key(step) (a step's unit trips depend only on
    its block's layout)."""
    seen = {}

    def unit_of(st):
        k = key(st)
        if k not in seen:
            seen[k] = fn(st)
        return seen[k]
    return unit_of


def fwd_staging(shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS, cols: int = COLS) -> dict:
    """What the forward's stager does over one pass (``core.csim.fwd_staging``): _stager_account
    of fwd_steps, a unit an input channel, and the counters' weight loads ("w_trips")."""
    unit_of = _per_layout(lambda st: fwd_unit_trips(shape, st["segs"]), lambda st: tuple(st["segs"]))
    acc = _stager_account(fwd_steps(shape, n_samples, rows=rows, cols=cols), unit_of,
                          lambda t: rows + min(rows, shape.co - t * rows) * 2 * cols)
    acc["w_trips"] = weight_load_trips("fwd", shape, n_samples)
    return acc


# ---- the input gradient's g buffer (hls/src/conv_bwd_data.cpp: place, stage, the pass's walk) -----

def bwd_phases(shape: ConvShape) -> list[dict]:
    """The gather form's phases in the kernel's order (py, px): first input row/column (fy, fx),
    rows and columns per sample (ny, nx), taps per row and column (nky, nkx), the taps (nky*nkx)
    and the output offsets (cy, cx): position (fy + S*ty, fx + S*tx) at tap (py + S*a, px + S*b)
    reads g_y at (ty + cy - a, tx + cx - b)."""
    s, p, k = shape.stride, shape.pad, shape.k
    out = []
    for py in range(s):
        for px in range(s):
            fy, fx = (py - p) % s, (px - p) % s
            ny = _ceil(shape.h - fy, s) if fy < shape.h else 0
            nx = _ceil(shape.w - fx, s) if fx < shape.w else 0
            nky = _ceil(k - py, s) if py < k else 0
            nkx = _ceil(k - px, s) if px < k else 0
            out.append({"py": py, "px": px, "fy": fy, "fx": fx, "ny": ny, "nx": nx, "nky": nky, "nkx": nkx,
                        "taps": nky * nkx, "cy": (fy + p - py) // s, "cx": (fx + p - px) // s})
    return out


def bwd_slots(phase: dict) -> int:
    """Slots of the g buffer's entries: the halo nkx - 1 over the phase's rows of nx positions."""
    return entry_slots(phase["nkx"] - 1, phase["nx"])


def bwd_step_channels(shape: ConvShape, phase: dict) -> int:
    """Output channels one step of the g buffer holds (nky * slots entries a channel)."""
    return min(shape.co, BWD_G_WORDS // (phase["nky"] * bwd_slots(phase)))


def bwd_segments(phase: dict, npos: int, q0: int, cols: int = COLS) -> list[tuple[int, int, int, int, int]]:
    """An input-gradient block's segments: runs on one phase row (ty, first tx) of one sample."""
    return segments(phase["ny"], phase["nx"], npos, q0, cols)


def bwd_unit_trips(shape: ConvShape, phase: dict, segs) -> tuple[int, int]:
    """(stager trips, DDR bytes) of one output channel of a block: per segment and kernel row its
    row's trips; the bytes are the span's in-output codes (2 B each) of the rows inside the output."""
    trips = nbytes = 0
    for i0, ln, _, ty, tx in segs:
        rlen, ox0 = ln + phase["nkx"] - 1, tx + phase["cx"] - (phase["nkx"] - 1)
        trips += phase["nky"] * row_trips(i0, rlen, 1, 1, BWD_STAGE_CODES)
        cols_in = max(0, min(shape.wo - 1, ox0 + rlen - 1) - max(0, ox0) + 1)
        rows_in = sum(0 <= ty + phase["cy"] - a < shape.ho for a in range(phase["nky"]))
        nbytes += 2 * rows_in * cols_in
    return trips, nbytes


def bwd_steps(shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS, cols: int = COLS) -> list[dict]:
    """The input-gradient pass's steps in order (hls/src/conv_bwd_data.cpp): per group of input-channel
    tiles whose weights fit the weight buffer (MAX_TAPS rows), per phase with taps, per block of
    cols positions, one step of all output channels read by every tile's call, or, when they do
    not fit one step, per tile the steps of bwd_step_channels each (one call each)."""
    from .shapes import MAX_TAPS
    n = shape.n if n_samples is None else n_samples
    if n == 0:
        return []
    tiles = _ceil(shape.ci, rows)
    per_group = min(tiles, MAX_TAPS // (shape.co * shape.k * shape.k))
    out = []
    for g0 in range(0, tiles, per_group):
        gt = min(per_group, tiles - g0)
        for f in bwd_phases(shape):
            npos = n * f["ny"] * f["nx"]
            if not f["taps"] or not npos:
                continue
            step = bwd_step_channels(shape, f)
            chans = [(o0, min(step, shape.co - o0)) for o0 in range(0, shape.co, step)]
            for q0 in range(0, npos, cols):
                segs = bwd_segments(f, npos, q0, cols)
                if len(chans) == 1:
                    out.append({"phase": f, "segs": segs, "o0": 0, "nco": shape.co, "units": shape.co,
                                "beats": shape.co * f["taps"], "calls": gt, "tiles": list(range(g0, g0 + gt)),
                                "first": True})
                else:
                    out += [{"phase": f, "segs": segs, "o0": o0, "nco": nco, "units": nco, "beats": nco * f["taps"],
                             "calls": 1, "tiles": [t], "first": o0 == 0} for t in range(g0, g0 + gt)
                            for o0, nco in chans]
    return out


# ---- the weight buffer (the passes' group loads: hls/src/conv_fwd.cpp, conv_bwd_data.cpp) -----

def bwd_zero_trips(shape: ConvShape, n_samples: int | None = None) -> int:
    """The input gradient's loop outside its calls for the positions of phases without taps
    (k = 1, stride 2: no g_y reaches them, g_x = requant(0)): per such phase and block of COLS
    listed positions, a trip for each position slot of each input channel
    (``core.csim.bwd_staging().zero_trips``)."""
    n = shape.n if n_samples is None else n_samples
    if n == 0:
        return 0
    return sum(shape.ci * COLS * _ceil(n * f["ny"] * f["nx"], COLS)
               for f in bwd_phases(shape) if not f["taps"])


def weight_load_trips(pass_name: str, shape: ConvShape, n_samples: int | None = None) -> int:
    """The weight loader's trips over one pass (``core.csim.fwd_staging().w_trips``, and
    ``bwd_staging``'s): each group of tiles' weights go into the weight buffer before the group's
    first call, a byte a trip (hls/src/conv_fwd.cpp, conv_bwd_data.cpp: the buffer's banks are its
    R lanes, and a DDR word holds one lane's taps), while the engine waits; the lanes past the
    layer's channels are written as zeros in the same trips. Every tile is loaded once a pass:
    the forward R*ci*k*k bytes a tile of output channels, the input gradient R*co*k*k a tile of
    input channels. None for the weight gradient, or when the pass has no call."""
    if PASSES[pass_name] == WGRAD or not call_beats(pass_name, shape, n_samples):
        return 0
    kk = shape.k * shape.k
    if PASSES[pass_name] == FWD:
        return _ceil(shape.co, ROWS) * ROWS * shape.ci * kk
    return _ceil(shape.ci, ROWS) * ROWS * shape.co * kk


def bwd_staging(shape: ConvShape, n_samples: int | None = None, *, rows: int = ROWS, cols: int = COLS) -> dict:
    """What the input gradient's stager does over one pass (``core.csim.bwd_staging``, x_bytes:
    the bytes of g_y read): _stager_account of bwd_steps, a unit an output channel, and the
    counters' weight loads ("w_trips") and zeros for phases without taps ("zero_trips")."""
    unit_of = _per_layout(lambda st: bwd_unit_trips(shape, st["phase"], st["segs"]),
                          lambda st: (st["phase"]["py"], st["phase"]["px"], tuple(st["segs"])))
    acc = _stager_account(bwd_steps(shape, n_samples, rows=rows, cols=cols), unit_of,
                          lambda t: rows + min(rows, shape.ci - t * rows) * cols)
    acc["w_trips"] = weight_load_trips("bwd_data", shape, n_samples)
    acc["zero_trips"] = bwd_zero_trips(shape, n_samples)
    return acc


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
    """The blocks by weight group (``wgrad_groups``, in sweep order)."""
    return [[b for b in blocks if o0 <= b[2]["co0"] < o1 and j0 <= b[2]["j0"] < j1]
            for o0, o1, j0, j1 in wgrad_groups(shape, rows=rows)]


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
