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

from .fixedpoint import INT16, Dyadic, scale_for

# Operand limits that keep every intermediate inside 48 bits (the DSP48E1's P register):
# |code| <= 2^15, |multiplier| < 2^24, |constant| < 2^44, shift <= 40.
MULT_LIMIT = 1 << 24
CONST_LIMIT = 1 << 44
MAX_BLOCK_SHIFT = 40
# The fold below places the largest multiplier just under 2^23 (24 bits signed).
_MULT_TOP = 23


def _shift_round(v: np.ndarray, s: int) -> np.ndarray:
    """(v + 2^(s-1)) >> s, round half up, as the requantisation rule (docs/fixed-point.md s.3)."""
    return v if s == 0 else (v + (1 << (s - 1))) >> s


def _check_coeffs(name: str, shift: int, mults=(), consts=()) -> None:
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


def _sample_index(samples, n: int) -> np.ndarray:
    if samples is None:
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(samples, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"sample list names samples outside 0..{n - 1}")
    if np.unique(idx).size != idx.size:
        raise ValueError("sample list repeats a sample")
    return idx


@dataclass(frozen=True)
class Shortcut:
    """Option-A shortcut geometry: output (n, c, h, w) reads the source at (n, c - lo, h*stride,
    w*stride); channels outside the source read 0."""
    stride: int = 1
    lo: int = 0

    def check(self, src_shape: tuple, c_out: int, hw: tuple[int, int], what: str = "shortcut source") -> None:
        """The source (n, c, H, W) covers an output of c_out channels and hw at this geometry."""
        s = int(self.stride)
        if s < 1:
            raise ValueError(f"{what}: shortcut stride must be at least 1, got {s}")
        if len(src_shape) != 4 or -(-src_shape[2] // s) < hw[0] or -(-src_shape[3] // s) < hw[1]:
            raise ValueError(f"{what} {tuple(src_shape)} does not cover {tuple(hw)} at stride {s}")
        if self.lo < 0 or self.lo + src_shape[1] > c_out:
            raise ValueError(f"{what} channels {src_shape[1]} at offset {self.lo} exceed {c_out}")

    def gather(self, src: np.ndarray, c_out: int, hw: tuple[int, int]) -> np.ndarray:
        self.check(src.shape, c_out, hw)
        s = int(self.stride)
        xs = src[:, :, ::s, ::s][:, :, : hw[0], : hw[1]].astype(np.int64)
        out = np.zeros((src.shape[0], c_out) + tuple(hw), np.int64)
        out[:, self.lo: self.lo + src.shape[1]] = xs
        return out

    def scatter(self, g: np.ndarray, src_shape: tuple) -> np.ndarray:
        """The adjoint of ``gather``: g (n, c_out, h, w) -> the source's shape."""
        self.check(src_shape, g.shape[1], g.shape[2:])
        s = int(self.stride)
        out = np.zeros(src_shape, np.int64)
        h, w = g.shape[2], g.shape[3]
        out[:, :, ::s, ::s][:, :, :h, :w] = g[:, self.lo: self.lo + src_shape[1]]
        return out


IDENTITY = Shortcut()


# -- the argument checks: one copy, called by every back-end before it computes ----------------
@dataclass(frozen=True)
class BlockArgs:
    """A checked block-operation call: the block tensor's (n, c, h, w), the listed samples
    (int64 indices) and the per-channel coefficients as int64 (a, b or p, q, t; none for the
    reduce)."""
    nchw: tuple[int, int, int, int]
    idx: np.ndarray
    coef: tuple[np.ndarray, ...] = ()


def _check_source(op: str, name: str, src, sc: Shortcut, nchw: tuple, dtype) -> None:
    """A tensor read through an option-A shortcut: its codes' type, the batch, the geometry."""
    src = np.asarray(src)
    if src.ndim != 4 or src.dtype != dtype or src.shape[0] != nchw[0]:
        raise ValueError(f"{op}: {name} must be {np.dtype(dtype).name} NCHW with the batch's {nchw[0]} samples, "
                         f"got {src.dtype}{src.shape}")
    sc.check(src.shape, nchw[1], nchw[2:], f"{op}: {name}")


def check_bn_act(y, a, b, shift, *, r=None, r_mult=0, shortcut: Shortcut = IDENTITY, samples=None) -> BlockArgs:
    y = np.asarray(y)
    if y.ndim != 4 or y.dtype != np.int8:
        raise ValueError(f"bn_act: y must be int8 NCHW, got {y.dtype}{y.shape}")
    n, c, h, w = y.shape
    a = np.asarray(a, np.int64).reshape(-1)
    b = np.asarray(b, np.int64).reshape(-1)
    if a.shape != (c,) or b.shape != (c,):
        raise ValueError(f"bn_act: a and b need one value per channel ({c}), got {a.shape}, {b.shape}")
    _check_coeffs("bn_act", shift, (a, [r_mult]), (b,))
    idx = _sample_index(samples, n)
    if r is not None:
        _check_source("bn_act", "r (the shortcut source)", r, shortcut, y.shape, np.uint8)
    return BlockArgs(y.shape, idx, (a, b))


def check_bn_bwd_reduce(o, y, g_a, *, ma=1, g_b=None, mb=0, b_shortcut: Shortcut = IDENTITY, shift=0, r=None,
                        r_shortcut: Shortcut = IDENTITY, samples=None) -> BlockArgs:
    o, y, g_a = np.asarray(o), np.asarray(y), np.asarray(g_a)
    if o.ndim != 4 or o.dtype != np.uint8:
        raise ValueError(f"bn_bwd_reduce: o must be the uint8 NCHW output of bn_act, got {o.dtype}{o.shape}")
    if y.shape != o.shape or y.dtype != np.int8:
        raise ValueError(f"bn_bwd_reduce: y must be int8 of o's shape {o.shape}, got {y.dtype}{y.shape}")
    if g_a.shape != o.shape or g_a.dtype != np.int16:
        raise ValueError(f"bn_bwd_reduce: g_a must be int16 of o's shape {o.shape}, got {g_a.dtype}{g_a.shape}")
    _check_coeffs("bn_bwd_reduce", shift, ([ma], [mb]))
    if g_b is not None:
        g_b = np.asarray(g_b)
        if g_b.dtype != np.int16 or g_b.ndim != 4 or g_b.shape[0] != o.shape[0]:
            raise ValueError(f"bn_bwd_reduce: g_b must be int16 NCHW with the batch's {o.shape[0]} samples, "
                             f"got {g_b.dtype}{g_b.shape}")
        # g_b is at the next block's geometry, which reads o through b_shortcut
        b_shortcut.check(o.shape, g_b.shape[1], g_b.shape[2:], "bn_bwd_reduce: o (g_b's shortcut source)")
    idx = _sample_index(samples, o.shape[0])
    if r is not None:
        _check_source("bn_bwd_reduce", "r (the shortcut source)", r, r_shortcut, o.shape, np.uint8)
    return BlockArgs(o.shape, idx)


def check_bn_bwd_apply(g_m, y, p, q, t, shift, *, samples=None) -> BlockArgs:
    g_m, y = np.asarray(g_m), np.asarray(y)
    if g_m.ndim != 4 or g_m.dtype != np.int16 or y.shape != g_m.shape or y.dtype != np.int8:
        raise ValueError(f"bn_bwd_apply: g_m int16 and y int8 of one NCHW shape, got {g_m.dtype}{g_m.shape}, "
                         f"{y.dtype}{y.shape}")
    n, c = g_m.shape[:2]
    p, q, t = (np.asarray(v, np.int64).reshape(-1) for v in (p, q, t))
    if not p.shape == q.shape == t.shape == (c,):
        raise ValueError(f"bn_bwd_apply: p, q, t need one value per channel ({c})")
    _check_coeffs("bn_bwd_apply", shift, (p, q), (t,))
    return BlockArgs(g_m.shape, _sample_index(samples, n), (p, q, t))


# -- forward ----------------------------------------------------------------------------------
def conv_fwd_stats(y: np.ndarray, samples=None) -> np.ndarray:
    """(co, 2) int64: per output channel, sum of y and sum of y^2 over the listed samples (the
    forward pass's output stage accumulates them as it writes y)."""
    y = np.asarray(y)
    if y.ndim != 4:
        raise ValueError(f"y must be NCHW, got shape {y.shape}")
    idx = _sample_index(samples, y.shape[0])
    v = y[idx].astype(np.int64)
    return np.stack([v.sum(axis=(0, 2, 3)), (v * v).sum(axis=(0, 2, 3))], axis=1)


def bn_act(y: np.ndarray, a: np.ndarray, b: np.ndarray, shift: int, *, r: np.ndarray | None = None,
           r_mult: int = 0, shortcut: Shortcut = IDENTITY, samples=None, relu: bool = True):
    """out = sat(shift_round(y*a[c] + b[c] + sc(r)*r_mult, shift)) for the listed samples,
    sat(shift_round(sc(r)*r_mult, shift)) for the others (they take the shortcut).

    Returns (out uint8 (n, c, h, w) [int8 without the ReLU], pooled int64 (n, c): each sample's
    per-channel sum of out, vmax int64 (n,): each sample's max |v| before saturation)."""
    y = np.asarray(y)
    chk = check_bn_act(y, a, b, shift, r=r, r_mult=r_mult, shortcut=shortcut, samples=samples)
    (n, c, h, w), a, b, idx = chk.nchw, chk.coef[0], chk.coef[1], chk.idx
    acc = np.zeros((n, c, h, w), np.int64)
    if r is not None:
        acc += shortcut.gather(np.asarray(r), c, (h, w)) * int(r_mult)
    acc[idx] += y[idx].astype(np.int64) * a[None, :, None, None] + b[None, :, None, None]
    v = _shift_round(acc, int(shift))
    fmt_lo, fmt_hi = (0, 255) if relu else (-128, 127)
    out = np.clip(v, fmt_lo, fmt_hi).astype(np.uint8 if relu else np.int8)
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
    o, y, g_a = np.asarray(o), np.asarray(y), np.asarray(g_a)
    chk = check_bn_bwd_reduce(o, y, g_a, ma=ma, g_b=g_b, mb=mb, b_shortcut=b_shortcut, shift=shift, r=r,
                              r_shortcut=r_shortcut, samples=samples)
    (n, c, h, w), idx = chk.nchw, chk.idx
    acc = g_a.astype(np.int64) * int(ma)
    if g_b is not None:
        acc += b_shortcut.scatter(np.asarray(g_b).astype(np.int64), o.shape) * int(mb)
    gc = INT16.saturate(_shift_round(acc, int(shift))).astype(np.int64)
    g_m = np.where(o > 0, gc, 0)
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
    g_m, y = np.asarray(g_m), np.asarray(y)
    chk = check_bn_bwd_apply(g_m, y, p, q, t, shift, samples=samples)
    (p, q, t), idx = chk.coef, chk.idx
    out = np.zeros(g_m.shape, np.int16)
    acc = (g_m[idx].astype(np.int64) * p[None, :, None, None] + y[idx].astype(np.int64) * q[None, :, None, None]
           + t[None, :, None, None])
    out[idx] = INT16.saturate(_shift_round(acc, int(shift)))
    return out


# -- the ARM's per-channel folds (float64, deterministic) --------------------------------------
def _shift_for(max_mult: float, max_const: float = 0.0) -> int:
    """The largest shift that keeps round(max_mult * 2^shift) below 2^23 and round(max_const *
    2^shift) below 2^43."""
    s = MAX_BLOCK_SHIFT
    for v, top in ((max_mult, _MULT_TOP), (max_const, 43)):
        if not math.isfinite(v):
            raise ValueError(f"block op coefficient is not finite ({v!r}): a scale or BN statistic is broken")
        if v > 0:
            s = min(s, top - 1 - math.floor(math.log2(v)))
    return int(max(s, 0))


def _fix(v, shift: int) -> np.ndarray:
    return np.floor(np.ldexp(np.asarray(v, np.float64), shift) + 0.5).astype(np.int64)


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
    k = np.asarray(k, np.float64)
    c0 = np.asarray(c0, np.float64)
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
    red = np.asarray(red, np.int64)
    gamma, mean, inv = (np.asarray(v, np.float64) for v in (gamma, mean, inv))
    m = max(int(count), 1)
    sg, sy = s_g.value, s_y.value
    dbeta = sg * red[:, 0].astype(np.float64)
    dgamma = sg * inv * (sy * red[:, 1].astype(np.float64) - mean * red[:, 0].astype(np.float64))
    k = gamma * inv
    pr = k * sg                                           # per g_m code
    qr = -k * inv * sy * dgamma / m                       # per y code
    tr = k * (inv * mean * dgamma - dbeta) / m            # constant
    gmax = red[:, 2].astype(np.float64)
    bound = np.abs(pr) * gmax + np.maximum(np.abs(tr - 128 * qr), np.abs(tr + 127 * qr))
    s_out = scale_for(float(bound.max(initial=0.0)), INT16)
    v = s_out.value
    shift = _shift_for(float(max(np.abs(pr).max(initial=0.0), np.abs(qr).max(initial=0.0))) / v,
                       float(np.abs(tr).max(initial=0.0)) / v)
    return BwdFold(_fix(pr / v, shift), _fix(qr / v, shift), _fix(tr / v, shift), shift, s_out, dgamma, dbeta)


__all__ = ["Shortcut", "IDENTITY", "BlockArgs", "check_bn_act", "check_bn_bwd_reduce", "check_bn_bwd_apply",
           "conv_fwd_stats", "bn_act", "bn_bwd_reduce", "bn_bwd_apply",
           "fold_bn_act", "act_bound", "fold_combine", "fold_bn_bwd", "ActFold", "CombineFold", "BwdFold"]
