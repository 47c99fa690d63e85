"""PSG's weight gradient on the training engine, scheduled so the predictor costs no second full read.

The schedule (modelled; the engine and shell pieces it needs are named where they are not built):

1. **Predictor during the input-gradient pass.** The predictor sweep (G_msb of every weight over
   every position) rides on the predictor buses of the same layer's input-gradient calls
   (``engine_map.attach_predictor``, mode 1 carries prows/pcols). Its x is read from DDR once
   per layer. Its g is the g_y that the input-gradient pass streams anyway *if* the predictor's
   positions follow that pass's position tiles (``g_shared``): today's ``attach_predictor``
   walks the weight gradient's own block order instead, so it reads its g again; both are
   modelled and labelled.
2. **G_msb on chip.** During the predictor sweep the shell's partial-sum BRAM (36 BRAM36 of
   512 x 72 bits, ``engine_map.WGRAD_PART_WEIGHTS`` words) holds two weights' G_msb per word
   (36 bits each; |G_msb| <= 15 * 512 * 64 * 32 * 32 < 2**30 for the largest ResNet-CIFAR layer at
   batch 64), so every ResNet-20 layer's 36,864 weights fit in one group. At the end of the sweep
   the shell takes tau = beta * max|G_msb| and keeps FLAG_BITS per weight (decided, sign) in a
   flag memory (``flag_bram36``: 2 BRAM36 for 36,864 weights, beside fpga/fit.py's rows); the
   partial sums are then free for the exact sweep's dW.
3. **Exact sweep only where a weight is undecided.** Per weight group (``engine_map``) and
   chunk, the shell reads from DDR the g of the output channels that have an undecided weight
   and the x of the input channels that do; a block call whose weights are all decided does not
   run (no beats), and inside a running call only the undecided cells' DSPs are clocked.
   Counted honestly: a channel whose weights are all decided skips its reads, any other pays
   them in full, so the saving is the measured share of *fully decided channels*, not the share
   of decided weights (``exact_need`` measures it on real layer decisions).

4. **Reuse what is in BRAM.** The exact sweep walks the positions in the reverse order of the
   predictor's, so it starts with what the predictor staged last and the chunk buffers still
   hold: up to their capacity (``chunk_buffer_bytes``: the data the kernel's chunk buffers hold,
   perfmodel.wgrad_chunk_bytes) of the first exact group's x, and of its g when the predictor read
   its own, is not read again (``reused_bytes``). A layer whose operands fit entirely (small
   images, small batches) reads nothing twice; a ResNet-CIFAR layer at batch 64 (1-3 MB of x and
   g) saves a few per cent.

Everything here is modelled, not measured.
"""
from __future__ import annotations

import numpy as np

from . import engine_map as em
from . import perfmodel as pm
from .shapes import ConvShape
from .work import Work

FLAG_BITS = 2             # per weight after the decision: decided, sign
GMSB_SLOT_BITS = 36       # half a 72-bit partial-sum word during the predictor sweep


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def flag_bram36(n_weights: int) -> int:
    """BRAM36 (36 Kbit each) of the decision flags of a layer of ``n_weights`` weights."""
    return _ceil(n_weights * FLAG_BITS, 36 * 1024)


def gmsb_fits(shape: ConvShape) -> bool:
    """Whether the layer's G_msb fits the partial-sum BRAM two per word (one predictor group)."""
    return shape.co * shape.ci * shape.k * shape.k <= 2 * em.WGRAD_PART_WEIGHTS


def exact_need(decided: np.ndarray, rows: int = em.ROWS, cols: int = em.COLS) -> dict:
    """What the exact sweep still has to read and run after a layer's decisions.

    ``decided``: bool (co, ci, k, k), True where the predictor decided the weight. Returns the
    per output channel and per input channel "has an undecided weight" masks, the per block
    mask of the engine's fixed layout (rows output channels x cols (ci, ky, kx) columns), and
    the shares of each that are fully decided."""
    d = np.asarray(decided, bool)
    if d.ndim != 4 or d.shape[2] != d.shape[3]:
        raise ValueError(f"decided must be (co, ci, k, k), got shape {d.shape}")
    co, ci, k, _ = d.shape
    und = ~d
    co_need = und.reshape(co, -1).any(1)
    ci_need = und.transpose(1, 0, 2, 3).reshape(ci, -1).any(1)
    flat = und.reshape(co, ci * k * k)
    nrb, ncb = _ceil(co, rows), _ceil(ci * k * k, cols)
    padded = np.zeros((nrb * rows, ncb * cols), bool)
    padded[:co, : ci * k * k] = flat
    blocks_need = padded.reshape(nrb, rows, ncb, cols).any(axis=(1, 3))
    return {"shape": (co, ci, k), "undecided": int(und.sum()), "weights": int(und.size), "undecided_mask": und,
            "co_need": co_need, "ci_need": ci_need, "blocks_need": blocks_need,
            "decided_share": float(d.mean()), "co_skip_share": float(1 - co_need.mean()),
            "ci_skip_share": float(1 - ci_need.mean()), "block_skip_share": float(1 - blocks_need.mean())}


def all_needed(shape: ConvShape, decided_share: float = 0.0) -> dict:
    """The need when no per-weight decisions are known: every channel and block pays its reads
    (the share of decided weights alone says nothing about whole channels)."""
    out = exact_need(np.zeros(shape.w_shape, bool))
    out["undecided"] = round(out["weights"] * (1.0 - decided_share))
    out["decided_share"] = float(decided_share)
    return out


def _x_channel_bytes(shape: ConvShape, n: int) -> int:
    """DDR bytes of one input channel's x over one sweep of a group: the rows each chunk stages
    (engine_map.chunk_slots), the same for every channel."""
    return sum(em.chunk_slots(shape, p0, p1) for p0, p1 in em.wgrad_chunks(n * shape.ho * shape.wo)) * shape.w


def exact_sweep_ddr(shape: ConvShape, need: dict, n: int | None = None) -> int:
    """DDR bytes of the exact sweep: per weight group (``engine_map.wgrad_groups``), g of its
    output channels with an undecided weight in the group and the staged x rows of its input
    channels with one."""
    n = shape.n if n is None else n
    if need["shape"] != (shape.co, shape.ci, shape.k):
        raise ValueError(f"the decisions are for weights {need['shape']}, the layer has {(shape.co, shape.ci, shape.k)}")
    if n == 0:
        return 0
    g_plane, x_chan, kk = 2 * n * shape.ho * shape.wo, _x_channel_bytes(shape, n), shape.k * shape.k
    total = 0
    for o0, o1, j0, j1 in em.wgrad_groups(shape, n):
        und = need["undecided_mask"][o0: o1, j0 // kk: j1 // kk]
        total += g_plane * int(und.any(axis=(1, 2, 3)).sum())
        total += x_chan * int(und.any(axis=(0, 2, 3)).sum())
    return total


def chunk_buffer_bytes() -> int:
    """Data bytes the weight gradient's chunk buffers hold, x and g, both halves
    (perfmodel.wgrad_chunk_bytes)."""
    return sum(pm.wgrad_chunk_bytes())


def reused_bytes(shape: ConvShape, need: dict, n: int | None = None, *, g_shared: bool) -> int:
    """Bytes of the exact sweep's first weight group that the predictor left in the chunk
    buffers (x, and g when the predictor staged its own), up to their capacity."""
    n = shape.n if n is None else n
    if n == 0:
        return 0
    o0, o1, j0, j1 = em.wgrad_groups(shape, n)[0]
    kk = shape.k * shape.k
    und = need["undecided_mask"][o0: o1, j0 // kk: j1 // kk]
    x = _x_channel_bytes(shape, n) * int(und.any(axis=(0, 2, 3)).sum())
    g = 0 if g_shared else 2 * n * shape.ho * shape.wo * int(und.any(axis=(1, 2, 3)).sum())
    return min(chunk_buffer_bytes(), x + g)


def predictor_sweep_ddr(shape: ConvShape, n: int | None = None, *, g_shared: bool, hosted: bool) -> int:
    """DDR bytes of the predictor sweep: the staged x rows of every channel once (one group: G_msb
    two per word), else once per weight group's channels; and g unless it is the input-gradient
    pass's own stream (``g_shared`` and hosted on that pass)."""
    n = shape.n if n is None else n
    if n == 0:
        return 0
    kk = shape.k * shape.k
    chans = shape.ci if gmsb_fits(shape) else sum((j1 - j0) // kk for _, _, j0, j1 in em.wgrad_groups(shape, n))
    x = chans * _x_channel_bytes(shape, n)
    g = 0 if (g_shared and hosted) else 2 * n * shape.co * shape.ho * shape.wo
    return x + g


def scheduled_wgrad_work(shape: ConvShape, need: dict, n_samples: int | None = None, *,
                         g_shared: bool, pred_host: bool = True) -> Work:
    """The weight gradient with PSG under this module's schedule, as a Work tally (modelled).

    ``need``: ``exact_need`` of the layer's decisions (or ``all_needed``). Predictor MACs
    (4x10) for every weight-position; exact MACs (8x16) for the undecided weights only; DDR:
    the predictor sweep's (``predictor_sweep_ddr``), the exact sweep's (``exact_sweep_ddr``) and
    the update's 9 B per weight, less what the chunk buffers still hold (``reused_bytes``); on chip: what is written into and read out of the chunk buffers,
    the partial sums' read-modify-writes of the calls that run, the flags. Time: the exact
    sweep's calls that run plus the predictor-only calls (all of the sweep when ``pred_host`` is
    False), at least the DDR bytes over the board's DDR rate."""
    n = shape.n if n_samples is None else n_samples
    nw = shape.co * shape.ci * shape.k * shape.k
    npos = n * shape.ho * shape.wo
    groups = em.call_beats("wgrad", shape, n)
    beats = sum(c * b for c, b in groups)
    calls = sum(c for c, _ in groups)
    run_share = float(need["blocks_need"].mean()) if need["blocks_need"].size else 0.0
    w = Work()
    w.add_macs(em.pass_macs("wgrad", shape, n), 4, 10)
    w.add_macs(int(need["undecided"]) * npos, 8, 16)
    w.add_ops(nw, 48)                                   # the decision's compare per weight
    w.add_ops(nw, 32)                                   # the update
    pred_ddr = predictor_sweep_ddr(shape, n, g_shared=g_shared, hosted=pred_host)
    reuse = reused_bytes(shape, need, n, g_shared=g_shared and pred_host)
    ex_ddr = exact_sweep_ddr(shape, need, n) - reuse
    w.add_dram(pred_ddr + ex_ddr + 9 * nw)
    per_beat, per_call = 2 * em.ROWS + em.COLS, em.ROWS * em.COLS * 2 * 9
    pred_sram = pred_ddr + beats * per_beat + calls * per_call
    ex_sram = ex_ddr + run_share * (beats * per_beat + calls * per_call)      # reused bytes: read, not rewritten
    w.add_sram(int(pred_sram + ex_sram) + 2 * _ceil(nw * FLAG_BITS, 8))
    part = em.ROWS * em.COLS / pm.PART_ADDERS
    t = run_share * sum(c * max(b + em.HLS_CALL_OVERHEAD, part) for c, b in groups)
    t += sum(c * max(b + em.HLS_CALL_OVERHEAD, part) for c, b in em.predictor_only_calls(shape, n, host=pred_host))
    wg_ddr = ex_ddr + (0 if pred_host else pred_ddr)
    cycles = em.ROWS + em.HLS_CALL_OVERHEAD + max(t, wg_ddr / pm.DDR_BYTES_PER_CYCLE)
    w.add_time(cycles / pm.CLOCK_HZ)
    return w
