"""Bit-exact golden models of the fabric's *block* operations (docs/fixed-point.md section 9).

The convolution passes (``core.golden``) leave a residual block's other steps to these:

* ``conv_fwd_stats``: BN's batch statistics, accumulated in the forward pass's output stage
  (per output channel, over the listed samples: sum of y codes and of their squares);
* ``bn_act``: BN (folded into one per-channel integer affine map), the residual add (option-A
  shortcut read in place: stride subsample, channel offset), ReLU and requantisation to the next
  conv's uint8 input, in one streaming pass; with per-(sample, channel) sums of the output (the
  gates' and the classifier's average pooling) and per-sample maxima (the next scale);
* ``bn_bwd_reduce``: the gradient of a block's output (one int16 source, or two: the next conv's
  input gradient plus the next block's shortcut), masked by the ReLU (output code > 0), written
  back as int16, with BN backward's per-channel reductions and the SLU gate's per-sample sums;
* ``bn_bwd_apply``: BN backward's input gradient, one per-channel integer affine map of the
  masked gradient and the conv output, requantised to the int16 g_y of the conv's backward.

All arithmetic is integer (int64 here; every intermediate fits 48 bits, checked) with the
contract's requantisation rounding (``(v + 2^(S-1)) >> S``, round half up, then saturate). The
per-channel coefficients are worked out on the ARM (``fold_*`` below, float64, per channel:
negligible work) from BN's parameters and statistics; the fabric only multiplies, adds, shifts.

Layouts: NCHW. A *sample list* names the samples a gated block runs for: ``bn_act`` applies BN
to the listed samples and lets the unlisted ones take the shortcut alone; the reductions and
``bn_bwd_apply`` cover the listed samples only. ``samples=None`` lists every sample.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import kernel_args
from .fixedpoint import INT8, INT16, UINT8, Dyadic, scale_for, shift_round_up
# The operand limits that keep every intermediate inside 48 bits (the DSP48E1's P register) and
# the argument checks live in kernel_args, one copy for golden, the C simulation and the board.
from .kernel_args import CONST_LIMIT, MAX_BLOCK_SHIFT, MULT_LIMIT

# The folds below place the largest multiplier just under 2^23 and the largest constant just
# under 2^43: one bit under each limit, so the rounding to an integer cannot reach it.
_MULT_TOP = MULT_LIMIT.bit_length() - 2
_CONST_TOP = CONST_LIMIT.bit_length() - 2


@dataclass(frozen=True)
class Shortcut:
    """Option-A shortcut geometry: output (n, c, h, w) reads the source at (n, c - lo, h*stride,
    w*stride); channels outside the source read 0."""
    stride: int = 1
    lo: int = 0

    def gather(self, src: np.ndarray, c_out: int, hw: tuple[int, int]) -> np.ndarray:
        kernel_args.check_shortcut(self, src.shape, c_out, hw)
        s = int(self.stride)
        xs = src[:, :, ::s, ::s][:, :, : hw[0], : hw[1]].astype(np.int64)
        out = np.zeros((src.shape[0], c_out) + tuple(hw), np.int64)
        out[:, self.lo: self.lo + src.shape[1]] = xs
        return out

    def scatter(self, g: np.ndarray, src_shape: tuple) -> np.ndarray:
        """The adjoint of ``gather``: g (n, c_out, h, w) -> the source's shape."""
        kernel_args.check_shortcut(self, src_shape, g.shape[1], g.shape[2:])
        s = int(self.stride)
        out = np.zeros(src_shape, np.int64)
        h, w = g.shape[2], g.shape[3]
        out[:, :, ::s, ::s][:, :, :h, :w] = g[:, self.lo: self.lo + src_shape[1]]
        return out


IDENTITY = Shortcut()


# -- forward ----------------------------------------------------------------------------------
def conv_fwd_stats(y: np.ndarray, samples=None) -> np.ndarray:
    """(co, 2) int64: per output channel, sum of y and sum of y^2 over the listed samples (the
    forward pass's output stage accumulates them as it writes y)."""
    idx = kernel_args.check_fwd_stats(y, samples)
    v = np.asarray(y)[idx].astype(np.int64)
    return np.stack([v.sum(axis=(0, 2, 3)), (v * v).sum(axis=(0, 2, 3))], axis=1)


def bn_act(y: np.ndarray, a: np.ndarray, b: np.ndarray, shift: int, *, r: np.ndarray | None = None,
           r_mult: int = 0, shortcut: Shortcut = IDENTITY, samples=None, relu: bool = True):
    """out = sat(shift_round(y*a[c] + b[c] + sc(r)*r_mult, shift)) for the listed samples,
    sat(shift_round(sc(r)*r_mult, shift)) for the others (they take the shortcut).

    Returns (out uint8 (n, c, h, w) [int8 without the ReLU], pooled int64 (n, c): each sample's
    per-channel sum of out, vmax int64 (n,): each sample's max |v| before saturation)."""
    k = kernel_args.check_bn_act(y, a, b, shift, r=r, r_mult=r_mult, shortcut=shortcut, samples=samples)
    y = np.asarray(y)
    (n, c, h, w), a, b, idx = k.nchw, k.a, k.b, k.idx
    acc = np.zeros((n, c, h, w), np.int64)
    if r is not None:
        acc += shortcut.gather(np.asarray(r), c, (h, w)) * int(r_mult)
    acc[idx] += y[idx].astype(np.int64) * a[None, :, None, None] + b[None, :, None, None]
    v = shift_round_up(acc, int(shift))
    out = (UINT8 if relu else INT8).saturate(v)
    pooled = out.astype(np.int64).sum(axis=(2, 3))
    vmax = np.abs(v).reshape(n, -1).max(axis=1) if v.size else np.zeros(n, np.int64)
    return out, pooled, vmax


# -- backward ---------------------------------------------------------------------------------
def bn_bwd_reduce(o: np.ndarray, y: np.ndarray, g_a: np.ndarray, *, ma: int = 1, g_b: np.ndarray | None = None,
                  mb: int = 0, b_shortcut: Shortcut = IDENTITY, shift: int = 0, r: np.ndarray | None = None,
                  r_shortcut: Shortcut = IDENTITY, samples=None):
    """The masked output gradient and BN backward's reductions.

    gc = sat16(shift_round(g_a*ma + sc_b(g_b)*mb, shift))   the block output's gradient
    g_m = gc where o > 0, else 0                             ReLU backward (o: bn_act's codes)

    Returns (g_m int16 (n, c, h, w) for every sample; red int64 (c, 3): per channel, over the
    listed samples, sum g_m, sum g_m*y, max |g_m|; gate int64 (n, 2): per sample, sum gc*o and
    sum gc*sc_r(r) (zeros without r), the straight-through gate gradient's two sums).
    ``g_b`` with ``b_shortcut`` is a gradient of the next block's shortcut, read at its source
    geometry: sc_b maps it *back* (the adjoint of the forward gather)."""
    k = kernel_args.check_bn_bwd_reduce(o, y, g_a, ma=ma, g_b=g_b, mb=mb, b_shortcut=b_shortcut, shift=shift, r=r,
                                        r_shortcut=r_shortcut, samples=samples)
    o, y, g_a = np.asarray(o), np.asarray(y), np.asarray(g_a)
    n, c, h, w = k.nchw
    acc = g_a.astype(np.int64) * int(ma)
    if g_b is not None:
        g_b = np.asarray(g_b)
        acc += b_shortcut.scatter(g_b.astype(np.int64), o.shape) * int(mb)
    gc = INT16.saturate(shift_round_up(acc, int(shift))).astype(np.int64)
    g_m = np.where(o > 0, gc, 0)
    idx = k.idx
    gl, yl = g_m[idx], y[idx].astype(np.int64)
    red = np.stack([gl.sum(axis=(0, 2, 3)), (gl * yl).sum(axis=(0, 2, 3)),
                    np.abs(gl).max(axis=(0, 2, 3)) if gl.size else np.zeros(c, np.int64)], axis=1)
    gate = np.zeros((n, 2), np.int64)
    gate[:, 0] = (gc * o.astype(np.int64)).sum(axis=(1, 2, 3))
    if r is not None:
        gate[:, 1] = (gc * r_shortcut.gather(np.asarray(r), c, (h, w))).sum(axis=(1, 2, 3))
    return g_m.astype(np.int16), red.astype(np.int64), gate


def bn_bwd_apply(g_m: np.ndarray, y: np.ndarray, p: np.ndarray, q: np.ndarray, t: np.ndarray, shift: int, *,
                 samples=None) -> np.ndarray:
    """g_y = sat16(shift_round(g_m*p[c] + y*q[c] + t[c], shift)) for the listed samples (the
    others 0: their conv backward does not run)."""
    k = kernel_args.check_bn_bwd_apply(g_m, y, p, q, t, shift, samples=samples)
    g_m, y = np.asarray(g_m), np.asarray(y)
    p, q, t, idx = k.p, k.q, k.t, k.idx
    out = np.zeros(g_m.shape, np.int16)
    acc = (g_m[idx].astype(np.int64) * p[None, :, None, None] + y[idx].astype(np.int64) * q[None, :, None, None]
           + t[None, :, None, None])
    out[idx] = INT16.saturate(shift_round_up(acc, int(shift)))
    return out


# -- the ARM's per-channel folds (float64, deterministic) --------------------------------------
def channel_moments(sums: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the mean and the (biased) variance of y in codes, float64, from
    ``conv_fwd_stats``' sums over ``count`` elements per channel."""
    m = max(int(count), 1)
    mean = np.divide(sums[:, 0], m, dtype=np.float64)         # the sums widened inside the divide
    return mean, np.maximum(np.divide(sums[:, 1], m, dtype=np.float64) - mean * mean, 0.0)


def _shift_for(max_mult: float, max_const: float = 0.0) -> int:
    """The largest shift that keeps round(max_mult * 2^shift) below 2^_MULT_TOP and
    round(max_const * 2^shift) below 2^_CONST_TOP."""
    s = MAX_BLOCK_SHIFT
    for v, top in ((max_mult, _MULT_TOP), (max_const, _CONST_TOP)):
        if not math.isfinite(v):
            raise ValueError(f"block op coefficient is not finite ({v!r}): a scale or BN statistic is broken")
        if v > 0:
            s = min(s, top - 1 - math.floor(math.log2(v)))
    return int(max(s, 0))


def _fix(v, shift: int) -> np.ndarray:
    return np.floor(np.ldexp(np.asanyarray(v).astype(np.float64, copy=False), shift) + 0.5).astype(np.int64)


@dataclass(frozen=True)
class ActFold:
    a: np.ndarray          # int64 (c,)
    b: np.ndarray          # int64 (c,)
    r_mult: int
    shift: int


def fold_bn_act(k: np.ndarray, c0: np.ndarray, s_y: Dyadic, s_out: Dyadic, s_r: Dyadic | None = None) -> ActFold:
    """BN as y_real -> k*y_real + c0 per channel (k = gamma/sqrt(var+eps), c0 = beta - k*mean),
    plus the shortcut r_real = r*s_r, in codes of s_out: a = k*s_y/s_out, b = c0/s_out, r_mult =
    s_r/s_out, all times 2^shift."""
    k = np.asanyarray(k).astype(np.float64, copy=False)
    c0 = np.asanyarray(c0).astype(np.float64, copy=False)
    a = k * s_y.value / s_out.value
    rm = 0.0 if s_r is None else s_r.value / s_out.value
    b = c0 / s_out.value
    shift = _shift_for(max(float(np.abs(a).max(initial=0.0)), rm), float(np.abs(b).max(initial=0.0)))
    return ActFold(_fix(a, shift), _fix(b, shift), int(_fix(rm, shift)), shift)


def act_bound(k: np.ndarray, c0: np.ndarray, s_y: Dyadic, r_max: float = 0.0) -> float:
    """An upper bound on bn_act's real output before saturation (for the first call's scale):
    max over channels of |k|*128*s_y + |c0|, plus the shortcut's max."""
    k = np.asarray(k, np.float64)
    return float(np.max(np.abs(k) * 128 * s_y.value + np.abs(np.asarray(c0, np.float64)), initial=0.0)) + r_max


@dataclass(frozen=True)
class CombineFold:
    ma: int
    mb: int
    shift: int
    scale: Dyadic          # the scale of gc and g_m


def fold_combine(s_a: Dyadic, s_b: Dyadic | None = None) -> CombineFold:
    """gc's scale and the two multipliers: one source keeps its codes (ma = 1); two sources are
    summed at the scale s_a + s_b, which no sum of two int16 codes can exceed."""
    if s_b is None:
        return CombineFold(1, 0, 0, s_a)
    sc = Dyadic.from_float(s_a.value + s_b.value)
    shift = _MULT_TOP - 1
    return CombineFold(int(_fix(s_a.value / sc.value, shift)), int(_fix(s_b.value / sc.value, shift)), shift, sc)


@dataclass(frozen=True)
class BwdFold:
    p: np.ndarray
    q: np.ndarray
    t: np.ndarray
    shift: int
    scale: Dyadic          # g_y's scale
    dgamma: np.ndarray     # float64 (c,): BN's parameter gradients, from the same reductions
    dbeta: np.ndarray


def fold_bn_bwd(red: np.ndarray, count: int, gamma: np.ndarray, mean: np.ndarray, inv: np.ndarray,
                s_g: Dyadic, s_y: Dyadic) -> BwdFold:
    """BN backward from bn_bwd_reduce's reductions, as g_y codes = g_m*p + y*q + t (>> shift).

    With xhat = (y*s_y - mean)*inv and m = count (listed samples x H x W):
      dbeta = s_g*sum g_m, dgamma = s_g*inv*(s_y*sum g_m*y - mean*sum g_m),
      g_x = gamma*inv*(g - dbeta/m - xhat*dgamma/m).
    g_y's scale is chosen from the exact bound of that affine map over |g_m| <= max|g_m| and y in
    -128..127, so the codes never saturate (except by the coefficients' rounding)."""
    red = np.asanyarray(red).astype(np.int64, copy=False)
    gamma = np.asanyarray(gamma)          # float32 widens inside k = gamma * inv, as a float64 copy would
    mean, inv = (np.asanyarray(v).astype(np.float64, copy=False) for v in (mean, inv))
    m = max(int(count), 1)
    sg, sy = s_g.value, s_y.value
    r0 = red[:, 0].astype(np.float64)
    dbeta = sg * r0
    dgamma = sg * inv * (np.multiply(red[:, 1], sy, dtype=np.float64) - mean * r0)   # widened in the multiply
    k = gamma * inv
    pr = k * sg                                           # per g_m code
    qr = -k * inv * sy * dgamma / m                       # per y code
    tr = k * (inv * mean * dgamma - dbeta) / m            # constant
    abs_pr = np.abs(pr)
    bound = np.multiply(abs_pr, red[:, 2], dtype=np.float64) + np.maximum(np.abs(tr - 128 * qr), np.abs(tr + 127 * qr))
    s_out = scale_for(float(bound.max(initial=0.0)), INT16)
    v = s_out.value
    shift = _shift_for(float(max(abs_pr.max(initial=0.0), np.abs(qr).max(initial=0.0))) / v,
                       float(np.abs(tr).max(initial=0.0)) / v)
    return BwdFold(_fix(pr / v, shift), _fix(qr / v, shift), _fix(tr / v, shift), shift, s_out, dgamma, dbeta)


__all__ = ["Shortcut", "IDENTITY", "conv_fwd_stats", "bn_act", "bn_bwd_reduce", "bn_bwd_apply",
           "channel_moments", "fold_bn_act", "act_bound", "fold_combine", "fold_bn_bwd", "ActFold", "CombineFold", "BwdFold"]
