"""What one kernel call costs on the training engine: its modelled time and work (a ``Work``).

The one pricing of a call, used wherever a call is tallied: the simulated board
(``device.simdevice``, per call it runs) and the device trainer's tally (``device.nn_tally``),
so that both give the same modelled time and energy for the same call. It prices the call the
way the kernels compute it (hls/src/*.cpp through the engine, fabric v2):

* ``conv_fwd`` and ``conv_bwd_data``: ``perfmodel.engine_pass`` of the call's shape over its
  listed samples (engine_map's calls; requantiser and DDR bounds), its DDR bytes as that pass
  counts them, plus the sample list;
* ``conv_bwd_weight_psg``: the kernel's one sweep whatever beta_q, every block over every
  position, the DSPs computing every weight's exact sum and the predictor its G_msb beside them
  on the same operands (the kernel's stats[3] and stats[5]). The decisions do not change what
  ran: no MAC and no read is skipped, so ``predicted`` only has to agree with ``predictor_on``;
* every weight-gradient call ends with one loop, one weight per cycle, at least its DDR bytes
  over the DDR rate: the update (W in and out, sign and predicted flag out) and, with
  ``beta_q > 0``, the decision in the same loop (a compare per weight). A layer of one weight
  group takes its signs and decides from its partial sums on chip; a larger one reads each
  group's sums out after its sweep (a weight a cycle: signs, and G_msb to the kernel's DDR
  scratch) and reads G_msb back here (``gmsb_in_ddr``, the kernel's stats[7]).

Skipped samples are not in the call (SLU), so they cost nothing; a call with no listed sample
costs its start and, for the weight gradient, the update it still does (weight decay).
Everything here is modelled, not measured.
"""
from __future__ import annotations

import math

import numpy as np

from . import engine_map as em
from . import perfmodel as pm
from .shapes import ConvShape
from .work import Work

KERNELS = ("conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg")
UPDATE_DDR_BYTES = pm.UPDATE_DDR_BYTES
GMSB_DDR_BYTES = pm.GMSB_DDR_BYTES


def _check(kernel: str, shape: ConvShape, n_active: int) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
    if not isinstance(shape, ConvShape):
        raise TypeError(f"shape must be a ConvShape, got {type(shape).__name__}")
    if not 0 <= int(n_active) <= shape.n:
        raise ValueError(f"n_active must be in [0, {shape.n}], got {n_active}")


BN_SUMS_BYTES = 16             # per output channel: sum y and sum y^2, int64 each
W_SUMS_BYTES = 8               # per input channel: sum |w|, int64


def _conv_pass(kernel: str, shape: ConvShape, n: int, bn_sums: bool = False,
               w_sums: bool = False) -> tuple[Work, int]:
    """conv_fwd / conv_bwd_data: (work, cycles). ``bn_sums``: the forward output stage also
    sums y and y^2 per channel (two adds per output beside the requantiser, in the same cycle)
    and writes the sums once at the end of the call. ``w_sums``: the forward's weight load also
    adds |w| into its input channel's sum (in the load's cycle; a loop of its own, a weight a
    cycle, when no sample is listed and nothing is loaded) and writes the ci sums at the end."""
    s = shape
    w = Work()
    if kernel == "conv_fwd":
        w.add_macs(s.macs(n), 8, 8)
        w.add_ops(n * s.co * s.ho * s.wo, 32)          # requantisation
        if bn_sums:
            w.add_ops(2 * n * s.co * s.ho * s.wo, 32)  # y and y^2 into the channel's sums
            w.add_dram(BN_SUMS_BYTES * s.co)
        if w_sums:
            w.add_ops(s.co * s.ci * s.k * s.k, 24)     # |w| into its channel's sum
            w.add_dram(W_SUMS_BYTES * s.ci)
        name = "fwd"
    else:
        w.add_macs(s.macs(n), 8, 16)
        w.add_ops(n * s.ci * s.h * s.w, 48)            # requantisation of the 48-bit sums
        name = "bwd_data"
    # the sums written out (their clear shares the bias loop engine_pass counts), at least their
    # bytes at the DDR rate
    extra = (max(pm.fwd_channel_cycles(s, True) - pm.fwd_channel_cycles(s, False),
                 math.ceil(BN_SUMS_BYTES * s.co / pm.DDR_BYTES_PER_CYCLE)) if bn_sums else 0)
    if w_sums:
        extra += max(pm.fwd_w_sums_cycles(s, n), math.ceil(W_SUMS_BYTES * s.ci / pm.DDR_BYTES_PER_CYCLE))
    if n == 0:
        return w, em.HLS_CALL_OVERHEAD + extra
    r = pm.engine_pass(name, shape, n)
    beats = sum(c * b for c, b in em.call_beats(name, shape, n))
    # on chip: what came from DDR written into the buffers once, and per beat the ROWS row
    # operands (weights, 1 B) and the COLS column operands (2 B each: a packed x pair, or g)
    w.add_dram(r["ddr_bytes"] + 4 * n)
    w.add_sram(r["ddr_bytes"] + beats * (em.ROWS + 2 * em.COLS))
    return w, r["cycles"] + extra


def _sweep(shape: ConvShape, n: int) -> tuple[float, int, int]:
    """The weight gradient's sweep over every block: (call cycles, beats, calls), each call at
    least the time the shell's adders take to fold its partial sums in and its stagers take to
    stage its share of the next chunk, after the first chunk's staging
    (``perfmodel.wgrad_sweep_cycles``)."""
    groups = em.call_beats("wgrad", shape, n)
    return pm.wgrad_sweep_cycles(shape, n), sum(c * b for c, b in groups), sum(c for c, _ in groups)


def blocks(shape: ConvShape) -> int:
    """Blocks of the weight gradient's engine layout (ROWS output channels x COLS taps)."""
    return -(-shape.co // em.ROWS) * -(-(shape.ci * shape.k * shape.k) // em.COLS)


def gmsb_in_ddr(shape: ConvShape, n: int | None = None) -> bool:
    """Whether the weight-gradient kernel with beta_q > 0 over n listed samples (default the
    batch) sends G_msb through its DDR scratch: the layer is more than one weight group (its
    partial sums, g or x rows do not all fit on chip at once; ``one_group`` in
    hls/src/conv_bwd_weight_psg.cpp)."""
    return em.weight_groups(shape, n_samples=n) > 1


def _wgrad(shape: ConvShape, n: int, predictor_on: bool) -> tuple[Work, int]:
    s = shape
    nw = s.co * s.ci * s.k * s.k
    w = Work()
    cycles = float(em.HLS_CALL_OVERHEAD)
    if n:
        t, beats, calls = _sweep(s, n)
        ddr = pm.wgrad_sweep_ddr(s, n)
        w.add_macs(em.pass_macs("wgrad", s, n), 4, 10)     # the predictor: every weight, every position
        w.add_macs(em.pass_macs("wgrad", s, n), 8, 16)     # the exact sums beside it, on the same beats
        w.add_dram(ddr + 4 * n)
        w.add_sram(pm.wgrad_sweep_sram(s, n, beats, calls))
        cycles += max(t, ddr / pm.DDR_BYTES_PER_CYCLE)    # the sweep, each group's flush call included
    multi = bool(n and gmsb_in_ddr(s, n))              # more than one weight group: the sums read out
    spill = predictor_on and multi
    if predictor_on and n:
        w.add_ops(nw, 48)                              # the decision's compare per weight
    w.add_ops(nw, 32)                                  # the update
    w.add_dram((UPDATE_DDR_BYTES + GMSB_DDR_BYTES * spill) * nw)
    return w, int(math.ceil(cycles)) + pm.wgrad_loop_cycles(s, predictor_on, spill, read_out=multi)


def price_call(kernel: str, shape: ConvShape, n_active: int, *, predictor_on: bool = True,
               predicted=None, n_predicted: int = 0, bn_sums: bool = False,
               w_sums: bool = False) -> tuple[Work, int]:
    """(work, cycles) of one kernel call over ``n_active`` listed samples; the work's time is
    cycles / ``perfmodel.CLOCK_HZ``. For ``conv_bwd_weight_psg``: ``predictor_on`` is
    beta_q > 0; ``predicted`` (the kernel's per-weight output) or ``n_predicted`` are checked
    against it (and against the layer's shape) but do not change the price: the kernel's one
    sweep runs every weight's exact sum whatever the predictor decides."""
    _check(kernel, shape, n_active)
    n = int(n_active)
    if kernel == "conv_bwd_weight_psg":
        if predicted is not None and np.asarray(predicted).shape != tuple(shape.w_shape):
            raise ValueError(f"predicted has shape {np.asarray(predicted).shape}, the layer's weights "
                             f"{tuple(shape.w_shape)}")
        if not predictor_on and (n_predicted or (predicted is not None and np.asarray(predicted).any())):
            raise ValueError("with the predictor off (beta_q = 0) no weight can be predicted")
        w, cycles = _wgrad(shape, n, predictor_on)
    else:
        if (bn_sums or w_sums) and kernel != "conv_fwd":
            raise ValueError("only conv_fwd forms BN sums and the weights' sums")
        w, cycles = _conv_pass(kernel, shape, n, bn_sums, w_sums)
    w.add_time(cycles / pm.CLOCK_HZ)
    return w, cycles


def call_work(kernel: str, shape: ConvShape, n_active: int, **kw) -> Work:
    """The modelled work and time (``Work.seconds``) of one kernel call (``price_call``)."""
    return price_call(kernel, shape, n_active, **kw)[0]


def call_cycles(kernel: str, shape: ConvShape, n_active: int, **kw) -> int:
    """The call's modelled cycles at ``perfmodel.CLOCK_HZ`` (``price_call``)."""
    return price_call(kernel, shape, n_active, **kw)[1]


# -- the block operations (core.block_ops; docs/fixed-point.md section 9) ----------------------
BLOCK_OPS = ("bn_act", "bn_bwd_reduce", "bn_bwd_apply")
# Elements per cycle of the block unit (hls/include/e2t_block.h E2T_BLOCK_LANES): one pipelined
# loop at II=1, each beat LANES elements of one channel plane. 4 lanes keep bn_act (3 B per
# element) under the DDR rate and put bn_bwd_reduce (up to 9 B) and bn_bwd_apply (5 B) at it.
BLOCK_LANES = 4
# The call's setup (block_ops.cpp mul_seq): the streaming loop's sizes and trip count, products
# by shift and add, one bit of a 13-bit operand a cycle.
BLOCK_SETUP_PRODUCTS = 11
# bn_bwd_reduce keeps a channel's plane ends this many beats apart (its sums' read-modify-write in
# BRAM): a sample of fewer beats gets idle tail beats (block_ops.cpp kRmwDistance).
BLOCK_RMW_DISTANCE = 4
BLOCK_SETUP_BITS = 13


def block_trips(op: str, nchw: tuple[int, int, int, int], n_listed: int, *, residual: bool = False) -> dict:
    """The loop trips of one block-unit call (hls/src/block_ops.cpp), one cycle each: the setup's
    shift-and-add products; the sample list's check (a bit cleared per batch sample, one per
    entry); the coefficients loaded into the BRAM (a word a cycle; bn_bwd_reduce zeroes its
    per-channel sums there); the streaming loop's beats (ceil(w / LANES) per row of each channel
    plane of each processed sample: the lanes stay in one row), its tail beat per processed sample
    (vmax, gate[s][1]; bn_bwd_reduce idles more on a sample of fewer than BLOCK_RMW_DISTANCE
    beats) and one cycle per sample it skips; bn_bwd_reduce's per-channel sums written after the
    loop. Processed samples: bn_act the listed ones (all of them with a shortcut), bn_bwd_reduce
    all, bn_bwd_apply the listed ones."""
    if op not in BLOCK_OPS:
        raise ValueError(f"unknown block operation {op!r}; expected one of {BLOCK_OPS}")
    n, c, h, w_ = (int(v) for v in nchw)
    if min(n, c, h, w_) < 0 or not 0 <= int(n_listed) <= n:
        raise ValueError(f"bad block-operation extent {nchw} with {n_listed} listed samples")
    listed = int(n_listed)
    proc = {"bn_act": n if residual else listed, "bn_bwd_reduce": n, "bn_bwd_apply": listed}[op]
    per_sample = c * h * -(-w_ // BLOCK_LANES)
    tails = {"bn_act": 1, "bn_bwd_reduce": max(1, BLOCK_RMW_DISTANCE - per_sample), "bn_bwd_apply": 0}[op]
    return {"list": n + listed,
            "coef": {"bn_act": 2 * c, "bn_bwd_reduce": c, "bn_bwd_apply": 3 * c}[op],
            "beats": proc * per_sample,
            "tails": proc * tails,
            "sums": 3 * c if op == "bn_bwd_reduce" else 0,
            "skips": n - proc,
            "setup": BLOCK_SETUP_PRODUCTS * BLOCK_SETUP_BITS}


def price_block(op: str, nchw: tuple[int, int, int, int], n_listed: int, *, residual: bool = False,
                two_sources: bool = False, gate: bool = False) -> tuple[Work, int]:
    """(work, cycles) of one block-operation call on a (n, c, h, w) tensor with ``n_listed``
    samples listed: the unit's loop trips (``block_trips``, one a cycle), or its DDR bytes over the
    DDR rate where those are more, plus the call's start. ``residual``: bn_act reads the shortcut
    source; ``two_sources``: bn_bwd_reduce sums two gradients; ``gate``: it also reads the shortcut
    source for the gate's second sum (the first, sum gc*o, it always forms)."""
    trips = block_trips(op, nchw, n_listed, residual=residual)
    n, c, h, w_ = (int(v) for v in nchw)
    per = c * h * w_
    all_e, listed = n * per, int(n_listed) * per
    w = Work()
    if op == "bn_act":
        proc = all_e if residual else listed
        n_proc = n if residual else int(n_listed)
        # y (listed), r, o out; pooled[s][c] and vmax[s] (int64) of the processed samples; a, b
        ddr = listed + (proc if residual else 0) + proc + 8 * (n_proc * c + n_proc) + 16 * c
        w.add_ops(2 * listed + (proc if residual else 0), 48)      # y*a + b (+ r*r_mult), shift, clamp
    elif op == "bn_bwd_reduce":
        # g_a (+ g_b), o, y (listed), r (gate), g_m out; red[c][3] and gate[n][2] (int64)
        ddr = (2 * all_e * (2 if two_sources else 1) + all_e + listed + (all_e if gate else 0)
               + 2 * all_e + 24 * c + 16 * n)
        w.add_ops(all_e * (2 if two_sources else 1) + 2 * listed + all_e + (all_e if gate else 0), 48)
    else:
        ddr = 2 * listed + listed + 2 * listed + 24 * c          # g_m, y in, g_y out; p, q, t
        w.add_ops(3 * listed, 48)
    loop = sum(trips.values())
    cycles = em.HLS_CALL_OVERHEAD + max(loop, math.ceil(ddr / pm.DDR_BYTES_PER_CYCLE))
    w.add_dram(ddr + 4 * int(n_listed))
    w.add_sram(ddr)
    w.add_time(cycles / pm.CLOCK_HZ)
    return w, int(cycles)


def block_work(op: str, nchw: tuple[int, int, int, int], n_listed: int, **kw) -> Work:
    """The modelled work and time of one block-operation call (``price_block``)."""
    return price_block(op, nchw, n_listed, **kw)[0]


def peak_macs_per_cycle(kernel: str) -> int:
    """MACs the engine's grid can do per cycle in the kernel's pass: two packed int8 MACs per
    DSP48E1 in the forward pass, one elsewhere."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
    return em.ROWS * em.COLS * (2 if kernel == "conv_fwd" else 1)


def utilisation(kernel: str, shape: ConvShape, n_active: int, **kw) -> float:
    """The layer's MACs over the grid's MAC slots for the call's modelled cycles (0 with no
    sample): how busy the call keeps the engine."""
    w, cycles = price_call(kernel, shape, n_active, **kw)
    return shape.macs(n_active) / (cycles * peak_macs_per_cycle(kernel)) if n_active else 0.0
