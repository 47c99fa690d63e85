"""Bit-exact golden models of the three kernels (numpy, int64 arithmetic).

These define what the HLS kernels, their C simulation, the RTL PSG engine and the torch
reference must compute. They favour clarity over speed: im2col in int64.

Layouts: x NCHW, w OIHW (co, ci, k, k), y/g_y NCHW. A *sample list* (SLU) names the
samples to process; the others are neither read nor written (``out`` keeps its contents).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernel_args
from .fixedpoint import (
    BETA_FRAC_BITS,
    DECAY_FRAC_BITS,
    INT16,
    MASTER_LIMIT,
    Dyadic,
    absmax,
    msb_split_g,
    msb_split_x,
    requantize,
)
from .block_ops import bn_act, bn_bwd_apply, bn_bwd_reduce, conv_fwd_stats  # noqa: F401 (the block ops' golden models, a backend's methods)
from .shapes import ConvShape


def _windows(x: np.ndarray, shape: ConvShape) -> np.ndarray:
    """(n, ci, ho, wo, k, k) int64 view of the zero-padded input."""
    p, s, k = shape.pad, shape.stride, shape.k
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    return win[:, :, ::s, ::s][:, :, : shape.ho, : shape.wo]


def conv_fwd_acc(x: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """The int32 accumulator of the forward convolution (no bias), as int64."""
    win = _windows(x, shape)                                     # n ci ho wo kh kw
    return np.einsum("nchwij,ocij->nohw", win, w.astype(np.int64), optimize=True)


def conv_fwd(x, w, bias, mult: Dyadic, *, stride: int = 1, pad: int = 0, relu: bool = False,
             samples=None, out: np.ndarray | None = None, stats: np.ndarray | None = None,
             w_sums: np.ndarray | None = None) -> np.ndarray:
    """y = requant(conv(x, w) + bias): int8, or uint8 with the ReLU fused (clamp at 0).

    ``bias`` is int32 in accumulator units (scale s_x * s_w), or None. ``stats``: an int64
    (co, 2) array the output stage fills with BN's batch sums over the listed samples
    (``block_ops.conv_fwd_stats``: sum of y, sum of y^2 per output channel). ``w_sums``: an
    int64 (ci,) array the weight load fills with the sums of |w| per input channel
    (``kernel_args.w_abs_sums``), whatever the sample list.
    """
    a = kernel_args.check_conv_fwd(x, w, bias, mult, stride=stride, pad=pad, relu=relu,
                                   samples=samples, out=out)
    idx, out = a.idx, a.out
    kernel_args.check_stats_out(stats, a.shape.co)
    kernel_args.check_w_sums_out(w_sums, a.shape.ci)
    if w_sums is not None:
        w_sums[...] = kernel_args.w_abs_sums(w)
    if idx.size:
        acc = conv_fwd_acc(x[idx], w, a.shape)
        if a.bias is not None:
            acc = acc + a.bias.astype(np.int64)[None, :, None, None]
        out[idx] = requantize(acc, a.mult, a.fmt)
    if stats is not None:
        stats[...] = conv_fwd_stats(out, idx)
    return out


def conv_bwd_data(g_y, w, mult: Dyadic, *, in_hw: tuple[int, int], stride: int = 1, pad: int = 0,
                  samples=None, out: np.ndarray | None = None) -> np.ndarray:
    """g_x = requant(conv_transpose(g_y, w)) as int16 codes (48-bit accumulator)."""
    a = kernel_args.check_conv_bwd_data(g_y, w, mult, in_hw=in_hw, stride=stride, pad=pad,
                                        samples=samples, out=out)
    shape, idx, out = a.shape, a.idx, a.out
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
    out[idx] = requantize(acc[:, :, p: p + shape.h, p: p + shape.w], a.mult, INT16)
    return out


@dataclass
class PsgResult:
    """What ``conv_bwd_weight_psg`` produces besides the updated master weights."""

    w_master: np.ndarray      # int32, updated
    sign: np.ndarray          # int8 in {-1, 0, 1}: the update direction per weight
    predicted: np.ndarray     # bool: decided by the MSB predictor
    gmsb_absmax: int          # max |G_msb| (the threshold is beta times this)
    w_absmax: int | None = None   # max |W| after the update (the kernel's stats[2]); None: not reported

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
    kernel_args.check_beta_q(beta_q)
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
    a = kernel_args.check_conv_bwd_weight_psg(x, g_y, w_master, stride=stride, pad=pad, beta_q=beta_q,
                                              lr_q=lr_q, wd_q=wd_q, samples=samples)
    g_msb, g_exact = wgrad_terms(x, g_y, a.shape, a.idx)
    sign, predicted, amax = psg_decide(g_msb, g_exact, beta_q)
    w_new = sign_update(w_master, sign, lr_q, wd_q)
    return PsgResult(w_new, sign, predicted, amax, absmax(w_new))
