"""Bit-exact golden models of the three kernels (numpy, int64 arithmetic).

These define what the HLS kernels, their C simulation, the RTL PSG engine and the torch
reference must compute. They favour clarity over speed: im2col in int64.

Layouts: x NCHW, w OIHW (co, ci, k, k), y/g_y NCHW. A *sample list* (SLU) names the
samples to process; the others are neither read nor written (``out`` keeps its contents).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixedpoint import (
    BETA_FRAC_BITS,
    DECAY_FRAC_BITS,
    INT8,
    INT16,
    MASTER_LIMIT,
    UINT8,
    Dyadic,
    format_of,
    msb_split_g,
    msb_split_x,
    requantize,
)
from .shapes import MAX_BIAS, ConvShape, ShapeError, check_samples


def _windows(x: np.ndarray, shape: ConvShape) -> np.ndarray:
    """(n, ci, ho, wo, k, k) int64 view of the zero-padded input."""
    p, s, k = shape.pad, shape.stride, shape.k
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    return win[:, :, ::s, ::s][:, :, : shape.ho, : shape.wo]


def _check_x(x: np.ndarray) -> None:
    if format_of(x) not in (INT8, UINT8):
        raise TypeError(f"x must be int8 or uint8 codes, got {x.dtype}")


def _check_w(w: np.ndarray) -> None:
    if format_of(w) is not INT8:
        raise TypeError(f"w must be int8 codes, got {w.dtype}")


def conv_fwd_acc(x: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """The int32 accumulator of the forward convolution (no bias), as int64."""
    win = _windows(x, shape)                                     # n ci ho wo kh kw
    return np.einsum("nchwij,ocij->nohw", win, w.astype(np.int64), optimize=True)


def conv_fwd(x, w, bias, mult: Dyadic, *, stride: int = 1, pad: int = 0, relu: bool = False,
             samples=None, out: np.ndarray | None = None) -> np.ndarray:
    """y = requant(conv(x, w) + bias): int8, or uint8 with the ReLU fused (clamp at 0).

    ``bias`` is int32 in accumulator units (scale s_x * s_w), or None.
    """
    _check_x(x)
    _check_w(w)
    shape = ConvShape.of(x, w, stride, pad)
    idx = check_samples(samples, shape.n)
    fmt = UINT8 if relu else INT8
    if out is None:
        out = np.zeros(shape.y_shape, fmt.dtype)
    elif out.shape != shape.y_shape or out.dtype != fmt.dtype:
        raise ShapeError(f"out must be {fmt.name}{shape.y_shape}, got {out.dtype}{out.shape}")
    if idx.size == 0:
        return out
    acc = conv_fwd_acc(x[idx], w, shape)
    if bias is not None:
        b = np.asarray(bias)
        if b.shape != (shape.co,) or b.dtype != np.int32:
            raise ShapeError(f"bias must be int32 of shape ({shape.co},), got {b.dtype}{b.shape}")
        if b.size and int(np.abs(b.astype(np.int64)).max()) > MAX_BIAS:
            raise ShapeError(f"bias magnitude above {MAX_BIAS} could overflow the int32 accumulator")
        acc = acc + b.astype(np.int64)[None, :, None, None]
    out[idx] = requantize(acc, mult, fmt)
    return out


def conv_bwd_data(g_y, w, mult: Dyadic, *, in_hw: tuple[int, int], stride: int = 1, pad: int = 0,
                  samples=None, out: np.ndarray | None = None) -> np.ndarray:
    """g_x = requant(conv_transpose(g_y, w)) as int16 codes (48-bit accumulator)."""
    if format_of(g_y) is not INT16:
        raise TypeError(f"g_y must be int16 codes, got {g_y.dtype}")
    _check_w(w)
    if g_y.ndim != 4 or w.ndim != 4:
        raise ShapeError(f"g_y and w must be 4-D (NCHW, OIHW), got {g_y.shape} and {w.shape}")
    if w.shape[2] != w.shape[3]:
        raise ShapeError(f"only square kernels are supported, got {w.shape[2]}x{w.shape[3]}")
    n = g_y.shape[0]
    shape = ConvShape(n, int(w.shape[1]), int(in_hw[0]), int(in_hw[1]), int(w.shape[0]),
                      int(w.shape[2]), stride, pad)
    if g_y.shape != shape.y_shape:
        raise ShapeError(f"g_y must be {shape.y_shape} for this conv, got {g_y.shape}")
    idx = check_samples(samples, n)
    if out is None:
        out = np.zeros(shape.x_shape, np.int16)
    elif out.shape != shape.x_shape or out.dtype != np.int16:
        raise ShapeError(f"out must be int16{shape.x_shape}, got {out.dtype}{out.shape}")
    if idx.size == 0:
        return out
    p, s, k = shape.pad, shape.stride, shape.k
    g = g_y[idx].astype(np.int64)
    hp, wp = shape.h + 2 * p, shape.w + 2 * p
    acc = np.zeros((idx.size, shape.ci, hp, wp), np.int64)
    w64 = w.astype(np.int64)
    for i in range(k):
        for j in range(k):
            contrib = np.einsum("nohw,oc->nchw", g, w64[:, :, i, j], optimize=True)
            acc[:, :, i: i + s * shape.ho: s, j: j + s * shape.wo: s] += contrib
    out[idx] = requantize(acc[:, :, p: p + shape.h, p: p + shape.w], mult, INT16)
    return out


@dataclass
class PsgResult:
    """What ``conv_bwd_weight_psg`` produces besides the updated master weights."""

    w_master: np.ndarray      # int32, updated
    sign: np.ndarray          # int8 in {-1, 0, 1}: the update direction per weight
    predicted: np.ndarray     # bool: decided by the MSB predictor
    gmsb_absmax: int          # max |G_msb| (the threshold is beta times this)

    @property
    def n_predicted(self) -> int:
        return int(self.predicted.sum())


def wgrad_terms(x: np.ndarray, g_y: np.ndarray, shape: ConvShape, idx: np.ndarray):
    """(G_msb, G_exact) over the listed samples, both int64 of the weight shape.

    G_msb = sum x_h * g_h; G_exact = 1024*G_msb + 16*sum x_h*g_l + 64*sum x_l*g_h + sum x_l*g_l,
    which equals sum x*g exactly.
    """
    xh, xl = msb_split_x(x[idx])
    gh, gl = msb_split_g(g_y[idx])
    wins = {name: _windows(v, shape) for name, v in (("xh", xh), ("xl", xl))}

    def corr(a, b):
        return np.einsum("nchwij,nohw->ocij", wins[a], b, optimize=True)

    g_msb = corr("xh", gh)
    g_exact = 1024 * g_msb + 16 * corr("xh", gl) + 64 * corr("xl", gh) + corr("xl", gl)
    return g_msb, g_exact


def psg_decide(g_msb: np.ndarray, g_exact: np.ndarray, beta_q: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The PSG rule. Returns (sign int8, predicted bool, max|G_msb|).

    Predicted where |G_msb| >= tau = beta * max|G_msb|, compared exactly in integers as
    |G_msb| * 2**16 >= beta_q * max|G_msb|, and G_msb != 0 (a zero predictor is never
    confident: it only matters when every G_msb is zero, where tau = 0). sign(0) = 0.

    ``beta_q = 0`` turns the predictor off: every sign comes from the exact gradient (the
    8-bit baseline without PSG). User-facing beta goes through ``beta_to_fixed``, which
    accepts (0, 1] only.
    """
    if not 0 <= int(beta_q) <= 1 << BETA_FRAC_BITS:
        raise ValueError(f"beta_q must be in [0, {1 << BETA_FRAC_BITS}] (0 = predictor off), got {beta_q}")
    a = np.abs(g_msb)
    amax = int(a.max()) if a.size else 0
    predicted = ((a << BETA_FRAC_BITS) >= int(beta_q) * amax) & (g_msb != 0) & (int(beta_q) > 0)
    sign = np.where(predicted, np.sign(g_msb), np.sign(g_exact)).astype(np.int8)
    return sign, predicted, amax


def sign_update(w_master: np.ndarray, sign: np.ndarray, lr_q: int, wd_q: int) -> np.ndarray:
    """The update rule: W <- sat(W - lr_q*sign - round(W*wd_q / 2**30)), plain sign step.

    Decoupled weight decay (wd_q = lr*wd in Q2.30), round half up, saturating at
    +-(2**30 - 1). No momentum: the device keeps no optimiser state besides W.
    """
    w = w_master.astype(np.int64)
    decay = (w * int(wd_q) + (1 << (DECAY_FRAC_BITS - 1))) >> DECAY_FRAC_BITS
    new = w - int(lr_q) * sign.astype(np.int64) - decay
    return np.clip(new, -MASTER_LIMIT, MASTER_LIMIT).astype(np.int32)


def conv_bwd_weight_psg(x, g_y, w_master, *, stride: int = 1, pad: int = 0, beta_q: int,
                        lr_q: int, wd_q: int = 0, samples=None) -> PsgResult:
    """PSG weight gradient over the listed samples, fused with the sign update of W."""
    _check_x(x)
    if format_of(g_y) is not INT16:
        raise TypeError(f"g_y must be int16 codes, got {g_y.dtype}")
    if w_master.dtype != np.int32 or w_master.ndim != 4:
        raise TypeError(f"w_master must be 4-D int32, got {w_master.dtype}{w_master.shape}")
    if x.ndim != 4 or g_y.ndim != 4:
        raise ShapeError(f"x and g_y must be 4-D NCHW, got {x.shape} and {g_y.shape}")
    if w_master.shape[2] != w_master.shape[3]:
        raise ShapeError(f"only square kernels are supported, got {w_master.shape[2]}x{w_master.shape[3]}")
    shape = ConvShape(int(x.shape[0]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]),
                      int(w_master.shape[0]), int(w_master.shape[2]), stride, pad)
    if w_master.shape != shape.w_shape:
        raise ShapeError(f"w_master must be {shape.w_shape}, got {w_master.shape}")
    if g_y.shape != shape.y_shape:
        raise ShapeError(f"g_y must be {shape.y_shape} for this conv, got {g_y.shape}")
    if not 0 <= int(lr_q) < 1 << 30 or not 0 <= int(wd_q) < 1 << DECAY_FRAC_BITS:
        raise ValueError(f"lr_q {lr_q} or wd_q {wd_q} out of range")
    idx = check_samples(samples, shape.n)
    g_msb, g_exact = wgrad_terms(x, g_y, shape, idx)
    sign, predicted, amax = psg_decide(g_msb, g_exact, beta_q)
    return PsgResult(sign_update(w_master, sign, lr_q, wd_q), sign, predicted, amax)
