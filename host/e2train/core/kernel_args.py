"""The argument check of the kernel calls (the three conv passes and the block unit's three
operations), one copy for every back-end.

The golden models (:mod:`e2train.core.golden`), the C simulation (:mod:`e2train.core.csim`)
and the fabric (:mod:`e2train.device.backend_pynq`) all call these before they compute, so
a bad call is refused by each of them with the same exception and the same message, and
the checks cannot drift apart (they had: the square-kernel check and the beta bound).

Each check returns what the back-ends need next: the validated :class:`ConvShape`, the
sample list as int32 indices, the ``out`` array to fill (made when the caller passed none)
and the multiplier as a :class:`Dyadic`. Everything is checked whether or not the sample
list is empty, so a call that is wrong is wrong on every batch. numpy only.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from .fixedpoint import (
    BETA_FRAC_BITS,
    DECAY_FRAC_BITS,
    INT8,
    INT16,
    MAX_SHIFT,
    UINT8,
    Dyadic,
    QFormat,
    absmax,
    format_of,
)
from .shapes import MAX_BATCH, MAX_BIAS, MAX_DIM, STRIDES, ConvShape, ShapeError, check_samples, check_wgrad_shape

# lr_q is a Q2.30-style step added to a master weight held below 2**30 (golden.sign_update).
LR_Q_LIMIT = 1 << 30


@dataclass(frozen=True)
class FwdArgs:
    shape: ConvShape
    idx: np.ndarray            # int32 sample indices
    fmt: QFormat               # of y: UINT8 with the ReLU fused, else INT8
    out: np.ndarray
    bias: np.ndarray | None    # int32 (co,)
    mult: Dyadic


@dataclass(frozen=True)
class BwdDataArgs:
    shape: ConvShape
    idx: np.ndarray
    out: np.ndarray            # int16, the shape of x
    mult: Dyadic


@dataclass(frozen=True)
class PsgArgs:
    shape: ConvShape
    idx: np.ndarray


def check_x(x: np.ndarray) -> None:
    if format_of(x) not in (INT8, UINT8):
        raise TypeError(f"x must be int8 or uint8 codes, got {x.dtype}")


def check_w(w: np.ndarray) -> None:
    if format_of(w) is not INT8:
        raise TypeError(f"w must be int8 codes, got {w.dtype}")


def check_g_y(g_y: np.ndarray) -> None:
    if format_of(g_y) is not INT16:
        raise TypeError(f"g_y must be int16 codes, got {g_y.dtype}")


def check_mult(mult) -> Dyadic:
    """A requantisation multiplier (a Dyadic or an (m, s) pair) in the kernels' range."""
    m, s = (int(v) for v in mult)
    if m < 0 or m >= 1 << 31 or not 0 <= s <= MAX_SHIFT:
        raise ValueError(f"requantisation multiplier out of range: {Dyadic(m, s)} "
                         f"(need 0 <= m < 2**31, 0 <= s <= {MAX_SHIFT})")
    return Dyadic(m, s)


def _out(out: np.ndarray | None, shape: tuple, dtype: np.dtype, name: str) -> np.ndarray:
    if out is None:
        return np.zeros(shape, dtype)
    if out.shape != shape or out.dtype != dtype:
        raise ShapeError(f"out must be {name}{shape}, got {out.dtype}{out.shape}")
    if not out.flags.writeable:
        raise ShapeError("out must be writeable (the kernel writes the listed samples into it)")
    return out


def _bias(bias, co: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.shape != (co,) or b.dtype != np.int32:
        raise ShapeError(f"bias must be int32 of shape ({co},), got {b.dtype}{b.shape}")
    if absmax(b) > MAX_BIAS:
        raise ShapeError(f"bias magnitude above {MAX_BIAS} could overflow the int32 accumulator")
    return b


def check_conv_fwd(x, w, bias, mult, *, stride, pad, relu, samples, out) -> FwdArgs:
    check_x(x)
    check_w(w)
    shape = ConvShape.of(x, w, stride, pad)
    idx = check_samples(samples, shape.n)
    fmt = UINT8 if relu else INT8
    out = _out(out, shape.y_shape, fmt.dtype, fmt.name)
    return FwdArgs(shape, idx, fmt, out, _bias(bias, shape.co), check_mult(mult))


def check_w_sums_out(w_sums, ci: int) -> None:
    """conv_fwd's ``w_sums``: None or a writable int64 (ci,) array (the weights' sums of |w| per
    input channel, the backward gain's; docs/fixed-point.md section 9)."""
    if w_sums is not None and (not isinstance(w_sums, np.ndarray) or w_sums.dtype != np.int64
                               or w_sums.shape != (ci,) or not w_sums.flags.writeable):
        raise ValueError(f"w_sums must be a writable int64 array of shape ({ci},) (sum of |w| per input "
                         f"channel), got {getattr(w_sums, 'dtype', type(w_sums).__name__)}{getattr(w_sums, 'shape', '')}")


def w_abs_sums(w: np.ndarray) -> np.ndarray:
    """sum over output channels and taps of |w| per input channel, int64 (ci,): what conv_fwd's
    weight load adds up with ``BF_W_SUMS`` (the bound |g_x acc| <= this * max |g_y|)."""
    return np.abs(w, dtype=np.int16).sum(axis=(0, 2, 3), dtype=np.int64)     # |-128| fits int16


def fwd_stats_layout(co: int, ci: int, bn_sums: bool, w_sums: bool) -> tuple[int, int, int]:
    """conv_fwd's stats buffer, int64: BN's sums [co][2] first when asked, then the weights'
    sums [ci]. Returns (the b_flags bits, where the weights' sums start, the buffer's length)."""
    n_bn = 2 * co if bn_sums else 0
    flags = (BF_BN_SUMS if bn_sums else 0) | (BF_W_SUMS if w_sums else 0)
    return flags, n_bn, n_bn + (ci if w_sums else 0)


def takes_arg(fn, name: str) -> bool:
    """Whether a kernel implementation's function takes the argument ``name`` (a wrapper says so
    through ``functools.wraps``): optional outputs such as conv_fwd's ``stats`` and ``w_sums``."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def check_stats_out(stats, co: int) -> None:
    """conv_fwd's ``stats``: None or a writable int64 (co, 2) array (BN's batch sums)."""
    if stats is not None and (not isinstance(stats, np.ndarray) or stats.dtype != np.int64
                              or stats.shape != (co, 2) or not stats.flags.writeable):
        raise ValueError(f"stats must be a writable int64 array of shape ({co}, 2) (sum of y, sum of y^2 "
                         f"per output channel), got {getattr(stats, 'dtype', type(stats).__name__)}"
                         f"{getattr(stats, 'shape', '')}")


def _square_4d(w: np.ndarray, name: str) -> None:
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ShapeError(f"{name} must be 4-D OIHW with a square kernel, got {w.shape}")


def check_conv_bwd_data(g_y, w, mult, *, in_hw, stride, pad, samples, out) -> BwdDataArgs:
    check_g_y(g_y)
    check_w(w)
    if g_y.ndim != 4:
        raise ShapeError(f"g_y must be 4-D NCHW, got {g_y.shape}")
    _square_4d(w, "w")
    h, wd = (int(v) for v in in_hw)
    shape = ConvShape(int(g_y.shape[0]), int(w.shape[1]), h, wd, int(w.shape[0]), int(w.shape[2]),
                      stride, pad)
    if g_y.shape != shape.y_shape:
        raise ShapeError(f"g_y must be {shape.y_shape} for this conv, got {g_y.shape}")
    idx = check_samples(samples, shape.n)
    out = _out(out, shape.x_shape, np.dtype(np.int16), "int16")
    return BwdDataArgs(shape, idx, out, check_mult(mult))


def check_conv_bwd_weight_psg(x, g_y, w_master, *, stride, pad, beta_q, lr_q, wd_q, samples) -> PsgArgs:
    check_x(x)
    check_g_y(g_y)
    if w_master.dtype != np.int32 or w_master.ndim != 4:
        raise TypeError(f"w_master must be 4-D int32, got {w_master.dtype}{w_master.shape}")
    if x.ndim != 4 or g_y.ndim != 4:
        raise ShapeError(f"x and g_y must be 4-D NCHW, got {x.shape} and {g_y.shape}")
    _square_4d(w_master, "w_master")
    shape = ConvShape(int(x.shape[0]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]),
                      int(w_master.shape[0]), int(w_master.shape[2]), stride, pad)
    if w_master.shape != shape.w_shape:
        raise ShapeError(f"w_master must be {shape.w_shape}, got {w_master.shape}")
    if g_y.shape != shape.y_shape:
        raise ShapeError(f"g_y must be {shape.y_shape} for this conv, got {g_y.shape}")
    check_wgrad_shape(shape)
    if not 0 <= int(lr_q) < LR_Q_LIMIT or not 0 <= int(wd_q) < 1 << DECAY_FRAC_BITS:
        raise ValueError(f"lr_q {lr_q} or wd_q {wd_q} out of range "
                         f"(need 0 <= lr_q < 2**30, 0 <= wd_q < 2**{DECAY_FRAC_BITS})")
    check_beta_q(beta_q)
    return PsgArgs(shape, check_samples(samples, shape.n))


def check_beta_q(beta_q) -> int:
    if not 0 <= int(beta_q) <= 1 << BETA_FRAC_BITS:
        raise ValueError(f"beta_q must be in [0, {1 << BETA_FRAC_BITS}] (0 = predictor off), got {beta_q}")
    return int(beta_q)


# -- the block unit (core.block_ops; hls/src/block_ops.cpp, hls/include/e2t_block.h) ----------------
# Operand limits that keep every intermediate inside 48 bits (the DSP48E1's P register):
# |code| <= 2^15, |multiplier| < 2^24, |constant| < 2^44, shift <= 40.
MULT_LIMIT = 1 << 24
CONST_LIMIT = 1 << 44
MAX_BLOCK_SHIFT = 40
# The unit's on-chip sums stay inside 48 bits: a sample's c*h*w elements (the gate sums) and a
# channel's n*h*w elements over the batch (sum g_m*y), as E2T_BLOCK_MAX_*_ELEMS.
MAX_BLOCK_SAMPLE_ELEMS = 1 << 22
MAX_BLOCK_CHANNEL_ELEMS = 1 << 24
# b_flags bits (hls/include/e2t_block.h E2T_BF_*): conv_fwd writes the BN sums; bn_act clamps to
# uint8 (ReLU); the shortcut source b_r is read; bn_bwd_reduce reads the second source b_gb;
# conv_fwd's weight load writes the sums of |w| per input channel (after the BN sums in stats).
BF_BN_SUMS, BF_RELU, BF_RESIDUAL, BF_TWO_SOURCES, BF_W_SUMS = 1, 2, 4, 8, 16


def check_block_coeffs(name: str, shift: int, mults=(), consts=()) -> None:
    """The rounding shift and the multipliers / constants of a block operation."""
    if not 0 <= int(shift) <= MAX_BLOCK_SHIFT:
        raise ValueError(f"{name}: shift {shift} outside 0..{MAX_BLOCK_SHIFT}")
    for m in mults:
        m = np.asarray(m, np.int64)
        if m.size and int(np.abs(m).max()) >= MULT_LIMIT:
            raise ValueError(f"{name}: a multiplier reaches 2^24 (fold the scales with a smaller shift)")
    for c in consts:
        c = np.asarray(c, np.int64)
        if c.size and int(np.abs(c).max()) >= CONST_LIMIT:
            raise ValueError(f"{name}: a constant reaches 2^44 (the output scale is far too fine)")


def check_block_shape(name: str, shape: tuple) -> tuple[int, int, int, int]:
    """A block tensor's (n, c, h, w) inside the unit's limits."""
    n, c, h, w = (int(v) for v in shape)
    if min(n, c, h, w) < 1 or n > MAX_BATCH or max(c, h, w) > MAX_DIM:
        raise ShapeError(f"{name}: tensor {tuple(shape)} outside the block unit's limits "
                         f"(1 <= n <= {MAX_BATCH}, 1 <= c, h, w <= {MAX_DIM})")
    if c * h * w > MAX_BLOCK_SAMPLE_ELEMS or n * h * w > MAX_BLOCK_CHANNEL_ELEMS:
        raise ShapeError(f"{name}: tensor {tuple(shape)} too large for the block unit's 48-bit sums "
                         f"(c*h*w <= 2^22 and n*h*w <= 2^24); split the batch")
    return n, c, h, w


def check_fwd_stats(y, samples) -> np.ndarray:
    """conv_fwd_stats' conv output (NCHW) and sample list; returns the listed samples (int32)."""
    y = np.asarray(y)
    if y.ndim != 4:
        raise ValueError(f"y must be NCHW, got shape {y.shape}")
    return check_samples(samples, y.shape[0])


def check_shortcut(shortcut, src_shape: tuple, c_out: int, hw: tuple) -> None:
    """An option-A shortcut (``block_ops.Shortcut``: stride, lo) reading a source of NCHW shape
    ``src_shape`` for an output of ``c_out`` channels and plane ``hw``: stride 1 or 2, every
    dimension in 1..MAX_DIM, the source's channels inside the output's at offset lo, its
    subsampled plane covering ``hw``."""
    hw = tuple(int(v) for v in hw)
    s, lo = int(shortcut.stride), int(shortcut.lo)
    if s not in STRIDES:
        raise ValueError(f"shortcut stride {s} not supported (the block unit reads stride 1 or 2)")
    src_c, src_h, src_w = (int(v) for v in src_shape[1:])
    if min(src_c, src_h, src_w, c_out, *hw) < 1 or max(src_c, src_h, src_w, c_out, *hw) > MAX_DIM:
        raise ShapeError(f"shortcut from {tuple(src_shape)} to ({c_out}, {hw[0]}, {hw[1]}) outside 1..{MAX_DIM} "
                         "per dimension")
    if -(-src_h // s) < hw[0] or -(-src_w // s) < hw[1]:
        raise ValueError(f"shortcut source {tuple(src_shape)} does not cover {tuple(hw)} at stride {s}")
    if lo < 0 or lo + src_c > c_out:
        raise ValueError(f"shortcut source channels {src_c} at offset {lo} exceed {c_out}")


@dataclass(frozen=True)
class BnActArgs:
    nchw: tuple
    a: np.ndarray              # int64 (c,)
    b: np.ndarray              # int64 (c,)
    idx: np.ndarray            # int32 listed samples


@dataclass(frozen=True)
class BnReduceArgs:
    nchw: tuple
    idx: np.ndarray


@dataclass(frozen=True)
class BnApplyArgs:
    nchw: tuple
    p: np.ndarray
    q: np.ndarray
    t: np.ndarray
    idx: np.ndarray


def _source(name: str, r, dtype, n: int, what: str) -> np.ndarray:
    r = np.asarray(r)
    if r.ndim != 4 or r.dtype != dtype or r.shape[0] != n:
        raise ValueError(f"{name}: {what} must be {np.dtype(dtype).name} NCHW with {n} samples, got {r.dtype}{r.shape}")
    return r


def check_bn_act(y, a, b, shift, *, r, r_mult, shortcut, samples) -> BnActArgs:
    y = np.asarray(y)
    if y.ndim != 4 or y.dtype != np.int8:
        raise ValueError(f"bn_act: y must be int8 NCHW, got {y.dtype}{y.shape}")
    n, c, h, w = check_block_shape("bn_act", y.shape)
    a = np.asarray(a, np.int64).reshape(-1)
    b = np.asarray(b, np.int64).reshape(-1)
    if a.shape != (c,) or b.shape != (c,):
        raise ValueError(f"bn_act: a and b need one value per channel ({c}), got {a.shape}, {b.shape}")
    check_block_coeffs("bn_act", shift, (a, [r_mult]), (b,))
    idx = check_samples(samples, n)
    if r is not None:
        check_shortcut(shortcut, _source("bn_act", r, np.uint8, n, "r (the shortcut source)").shape, c, (h, w))
    return BnActArgs((n, c, h, w), a, b, idx)


def check_bn_bwd_reduce(o, y, g_a, *, ma, g_b, mb, b_shortcut, shift, r, r_shortcut, samples) -> BnReduceArgs:
    o, y, g_a = np.asarray(o), np.asarray(y), np.asarray(g_a)
    if o.ndim != 4 or o.dtype != np.uint8:
        raise ValueError(f"bn_bwd_reduce: o must be the uint8 NCHW output of bn_act, got {o.dtype}{o.shape}")
    if y.shape != o.shape or y.dtype != np.int8:
        raise ValueError(f"bn_bwd_reduce: y must be int8 of o's shape {o.shape}, got {y.dtype}{y.shape}")
    if g_a.shape != o.shape or g_a.dtype != np.int16:
        raise ValueError(f"bn_bwd_reduce: g_a must be int16 of o's shape {o.shape}, got {g_a.dtype}{g_a.shape}")
    n, c, h, w = check_block_shape("bn_bwd_reduce", o.shape)
    check_block_coeffs("bn_bwd_reduce", shift, ([ma], [mb]))
    if g_b is not None:
        gb = np.asarray(g_b)
        if gb.dtype != np.int16:
            raise ValueError(f"bn_bwd_reduce: g_b must be int16, got {gb.dtype}")
        gb = _source("bn_bwd_reduce", gb, np.int16, n, "g_b (the next block's shortcut gradient)")
        # g_b is at the next block's output geometry, whose shortcut reads this block's output
        check_shortcut(b_shortcut, o.shape, gb.shape[1], gb.shape[2:])
    if r is not None:
        check_shortcut(r_shortcut, _source("bn_bwd_reduce", r, np.uint8, n, "r (the shortcut source)").shape, c,
                       (h, w))
    return BnReduceArgs((n, c, h, w), check_samples(samples, n))


def check_bn_bwd_apply(g_m, y, p, q, t, shift, *, samples) -> BnApplyArgs:
    g_m, y = np.asarray(g_m), np.asarray(y)
    if g_m.ndim != 4 or g_m.dtype != np.int16 or y.shape != g_m.shape or y.dtype != np.int8:
        raise ValueError(f"bn_bwd_apply: g_m int16 and y int8 of one NCHW shape, got {g_m.dtype}{g_m.shape}, "
                         f"{y.dtype}{y.shape}")
    n, c, h, w = check_block_shape("bn_bwd_apply", g_m.shape)
    p, q, t = (np.asarray(v, np.int64).reshape(-1) for v in (p, q, t))
    if not p.shape == q.shape == t.shape == (c,):
        raise ValueError(f"bn_bwd_apply: p, q, t need one value per channel ({c})")
    check_block_coeffs("bn_bwd_apply", shift, (p, q), (t,))
    return BnApplyArgs((n, c, h, w), p, q, t, check_samples(samples, n))
