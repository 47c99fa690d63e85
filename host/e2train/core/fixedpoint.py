"""The fixed-point contract of e2train, written once (numpy only, bit-exact).

Every other implementation -- the HLS kernels (hls/), the RTL engine (fpga/rtl), the
on-device trainer and the torch reference -- either calls this module or is tested
against it. docs/fixed-point.md is the prose version of the same contract.

Summary
-------
* Codes: activations uint8 after a ReLU, int8 elsewhere; weights int8; gradients int16.
* Scales: one per tensor, *dyadic*: value = code * m * 2**-s with an integer mantissa m of
  ``MANT_BITS`` significant bits. Full-range: the chosen max maps onto the top code.
* Requantisation acc -> narrower code: ``sat((acc * M + 2**(S-1)) >> S)`` (round half up,
  arithmetic shift, saturate); (M, S) is a :class:`Dyadic` too. No float in a kernel.
* MSB split by rounding to nearest, ties away from zero (contract v2), top code saturating,
  so that the split is exact and unbiased.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# Mantissa width of every dyadic number (tensor scales and requantisation multipliers).
# 15 bits keeps acc * M inside int64 for 48-bit accumulators and inside one DSP48E1
# (25x18 multiplier) for the 16/18-bit side of the product.
MANT_BITS = 15
MAX_SHIFT = 62

# beta and the other PSG/update scalars are fixed point on the kernel side.
BETA_FRAC_BITS = 16          # beta_q = round(beta * 2**16), beta in (0, 1]
DECAY_FRAC_BITS = 30         # wd_q = round(lr * wd * 2**30)
MASTER_LIMIT = (1 << 30) - 1  # master weights saturate at +-(2**30 - 1) (int32 with headroom)


@dataclass(frozen=True)
class QFormat:
    """An integer code format: its numpy dtype and the range of codes."""

    name: str
    lo: int
    hi: int
    dtype: type

    @property
    def unsigned(self) -> bool:
        return self.lo == 0

    def saturate(self, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Codes of this format from integers v, clipped; into ``out`` (of this dtype) when given."""
        if out is None:
            return np.clip(v, self.lo, self.hi).astype(self.dtype)
        np.clip(v, self.lo, self.hi, out=out, casting="unsafe")     # clipped and stored in one pass
        return out


INT8 = QFormat("int8", -128, 127, np.int8)
UINT8 = QFormat("uint8", 0, 255, np.uint8)
INT16 = QFormat("int16", -32768, 32767, np.int16)
INT32 = QFormat("int32", -(1 << 31), (1 << 31) - 1, np.int32)

FORMATS = {f.name: f for f in (INT8, UINT8, INT16, INT32)}


def format_of(arr: np.ndarray) -> QFormat:
    """The code format of an integer array, from its dtype."""
    name = np.dtype(arr.dtype).name
    if name not in FORMATS:
        raise TypeError(f"no fixed-point format for dtype {name}; expected one of {sorted(FORMATS)}")
    return FORMATS[name]


class Dyadic(NamedTuple):
    """A non-negative dyadic number m * 2**-s (integer mantissa m, shift s >= 0)."""

    m: int
    s: int

    @property
    def value(self) -> float:
        return math.ldexp(self.m, -self.s)

    @staticmethod
    def from_float(r: float) -> "Dyadic":
        """Nearest dyadic with a ``MANT_BITS``-bit mantissa (round half up on the mantissa).

        Deterministic: float64 ``frexp`` and an exact power-of-two scaling, so every
        implementation that calls this gets the same (m, s) for the same input.
        """
        r = float(r)
        if not math.isfinite(r) or r <= 0.0:
            raise ValueError(f"a dyadic number must be finite and > 0, got {r!r}")
        f, e = math.frexp(r)                          # r = f * 2**e, f in [0.5, 1)
        m = math.floor(math.ldexp(f, MANT_BITS) + 0.5)
        s = MANT_BITS - e
        if m == 1 << MANT_BITS:                       # rounding carried into a new bit
            m, s = m >> 1, s - 1
        if s < 0:                                     # r >= 2**MANT_BITS: keep s = 0
            m, s = m << -s, 0
            if m >= 1 << 31:
                raise ValueError(f"dyadic {r!r} too large for a 31-bit mantissa")
        if s > MAX_SHIFT:                             # very small r: lose mantissa bits
            m = math.floor(math.ldexp(m, MAX_SHIFT - s) + 0.5)
            s = MAX_SHIFT
            if m == 0:
                raise ValueError(f"dyadic {r!r} too small (below 2**-{MAX_SHIFT})")
        return Dyadic(int(m), int(s))


ONE = Dyadic(1, 0)


def scale_for(maxabs: float, fmt: QFormat) -> Dyadic:
    """Full-range scale: ``maxabs`` maps onto the top code of ``fmt``.

    A zero (or non-finite) max gives the scale 1.0: every code is then zero anyway, and
    the caller never divides by zero.
    """
    maxabs = float(maxabs)
    if not math.isfinite(maxabs):
        raise ValueError(f"cannot choose a scale for a non-finite max ({maxabs!r})")
    if maxabs <= 0.0:
        return ONE
    return Dyadic.from_float(maxabs / fmt.hi)


# How a batch's activations set the statistic that the running max of x follows
# (docs/fixed-point.md section 2): "batch_max", the largest |x| in the batch, or
# "mean_sample_max", the mean over the samples of each sample's largest |x| (the E2-Train
# authors' policy: the few samples above it saturate, and the rest keep finer steps).
ACT_SCALE_POLICIES = ("batch_max", "mean_sample_max")
ACT_SCALE_DEFAULT = "batch_max"          # the measurement behind it: docs/fixed-point.md section 8


def check_act_scale(policy: str) -> str:
    if policy not in ACT_SCALE_POLICIES:
        raise ValueError(f"activation scale policy must be one of {', '.join(ACT_SCALE_POLICIES)}, got {policy!r}")
    return policy


def act_batch_max(sample_maxima, policy: str) -> float:
    """The batch's activation statistic from each sample's max |x| (float32 or float64 values):
    their max, or their mean summed exactly (``math.fsum``), so that every implementation that
    passes the same maxima gets the same float64 whatever order it holds them in. 0 for none."""
    vals = [float(v) for v in sample_maxima]
    if not vals:
        return 0.0
    if check_act_scale(policy) == "batch_max":
        return max(vals)
    return math.fsum(vals) / len(vals)


def quantize(x: np.ndarray, scale: Dyadic, fmt: QFormat, *, finite: bool = False) -> np.ndarray:
    """float -> codes: floor(x * 2^s / m + 1/2) in float64, saturated to ``fmt`` (+-inf to its
    ends, NaN to 0).

    Four passes over x (``QUANTIZE_PASSES``): the divide by m * 2^-s, widened to float64 inside
    the ufunc (no float64 copy of x first), the add of 1/2 and the floor in place, the
    saturation storing into the codes. Where m * 2^-s is a float64 exactly (every scale with
    s <= 62 and a mantissa of at most 53 significant bits: every one ``Dyadic.from_float`` makes) the one divide rounds the same real x * 2^s / m once, as the
    contract's multiply by 2^s (exact) and divide by m do, so it gives the same bits; elsewhere
    those two run. ``finite=True``: the caller has found a finite max |x|, so x holds no NaN and
    the NaN pass (two more) is left out; the codes are the same.
    """
    d = scale.value
    if math.ldexp(d, scale.s) == scale.m:
        q = np.divide(x, d, dtype=np.float64)
    else:                                             # m * 2^-s not exact: the contract's two steps
        q = np.multiply(x, math.ldexp(1.0, scale.s), dtype=np.float64)
        np.divide(q, scale.m, out=q)
    np.add(q, 0.5, out=q)
    np.floor(q, out=q)
    if not finite:
        np.copyto(q, 0.0, where=np.isnan(q))
    return fmt.saturate(q, np.empty(q.shape, fmt.dtype))


QUANTIZE_PASSES = 4     # what quantize(..., finite=True) runs an element: the ARM's tally of it


def dequantize(q: np.ndarray, scale: Dyadic) -> np.ndarray:
    """codes -> float32 (exact in float64, then rounded once)."""
    return (np.asarray(q, dtype=np.float64) * scale.value).astype(np.float32)


def requant_multiplier(acc_scale: float, out_scale: Dyadic) -> Dyadic:
    """The (M, S) that maps accumulator codes of scale ``acc_scale`` onto ``out_scale``."""
    return Dyadic.from_float(float(acc_scale) / out_scale.value)


def absmax(v: np.ndarray) -> int:
    """max |v| of an integer array as a Python int (0 when empty), without abs() of a narrow type
    (|int32 min| overflows it) and without a widened copy: a min and a max."""
    v = np.asanyarray(v)
    return max(-int(v.min()), int(v.max())) if v.size else 0


def requantize(acc: np.ndarray, mult: Dyadic, fmt: QFormat, out: np.ndarray | None = None,
               peak: int | None = None) -> np.ndarray:
    """acc -> codes of ``fmt``: sat((acc * M + 2**(S-1)) >> S), round half up.

    ``acc`` must fit 48 bits (the kernels' widest accumulator) and acc * M must fit 62 bits;
    both hold for every multiplier ``Dyadic.from_float`` makes below 2**15. ``peak``: a bound
    on max |acc| the caller already has (the ranges are checked on it, without a pass over acc).
    """
    acc = np.asanyarray(acc)
    if acc.dtype.kind not in "iu":
        raise TypeError(f"requantize takes integer accumulators, got {acc.dtype}")
    if mult.m < 0 or mult.m >= 1 << 31 or not 0 <= mult.s <= MAX_SHIFT:
        raise ValueError(f"requantisation multiplier out of range: {mult}")
    if peak is None:
        peak = absmax(acc)
    if peak >= 1 << 47:
        raise OverflowError("accumulator exceeds 48 bits: the shape is outside what the kernels accept")
    if peak * mult.m >= 1 << 62:
        raise OverflowError(f"acc * M would exceed 62 bits (max |acc| = {peak}, M = {mult.m})")
    # four passes: the product widened to int64 inside the multiply (no int64 copy of acc first),
    # the rounding's add and shift in place, the saturation storing into the codes; three where
    # ``peak`` shows that no code can leave the format (``requantize_fits``): the shift stores
    # into the codes, and a clip would change nothing
    prod = np.multiply(acc, np.int64(mult.m), dtype=np.int64)
    if mult.s and requantize_fits(peak, mult, fmt):
        if out is None:
            out = np.empty(prod.shape, fmt.dtype)
        np.add(prod, 1 << (mult.s - 1), out=prod)
        return np.right_shift(prod, mult.s, out=out, casting="unsafe")
    return fmt.saturate(shift_round_up(prod, mult.s, out=prod), out)


def requantize_fits(peak: int, mult: Dyadic, fmt: QFormat) -> bool:
    """Whether ``requantize`` of accumulators with |acc| <= ``peak`` gives only codes inside
    ``fmt``'s range, so that its saturation changes nothing (the rounding is monotonic: the
    extremes are those of +-peak)."""
    r = (1 << (mult.s - 1)) if mult.s else 0
    return fmt.lo <= (-peak * mult.m + r) >> mult.s and (peak * mult.m + r) >> mult.s <= fmt.hi


def shift_round_up(v: np.ndarray, s: int, out: np.ndarray | None = None) -> np.ndarray:
    """(v + 2^(s-1)) >> s: the requantisation's rounding (half up), also the block operations'.
    With ``out`` (``v`` itself for in place) the two passes write there."""
    if s == 0:
        if out is not None and out is not v:
            np.copyto(out, v)
            return out
        return v
    if out is None:
        return (v + (1 << (s - 1))) >> s
    np.add(v, 1 << (s - 1), out=out)
    return np.right_shift(out, s, out=out)


# --- MSB predictors --------------------------------------------------------------------

# The contract's version. 2: the MSB split rounds half away from zero (v1 rounded half up,
# which biased the predictor towards +inf; docs/fixed-point.md section 5). Bitstream
# manifests and checkpoints record it; anything made under another version is refused,
# because its predictor signs, and so its trained weights, follow a different rule.
CONTRACT_VERSION = 2

X_SHIFT = 4      # x = 16*x_h + x_l
G_SHIFT = 6      # g = 64*g_h + g_l
G_H_MIN, G_H_MAX = -512, 511     # 10-bit signed g_h

# Tie rules of the MSB split. The contract uses SPLIT_RULE; the others exist so that the
# choice can be measured (benchmarks/bench_psg.py) and v1 reproduced:
#   "half_up"   contract v1: floor((v + h) / 2**k), ties towards +inf
#   "half_away" contract v2: sign(v) * floor((|v| + h) / 2**k), ties away from zero
#   "half_even" ties to the even quotient
SPLIT_RULES = ("half_up", "half_away", "half_even")
SPLIT_RULE = "half_away"


def round_shift(v: np.ndarray, k: int, rule: str = SPLIT_RULE) -> np.ndarray:
    """v / 2**k rounded to the nearest integer (int64), ties broken by ``rule``."""
    v = np.asarray(v, dtype=np.int64)
    half = 1 << (k - 1)
    if rule == "half_up":
        return (v + half) >> k
    if rule == "half_away":
        return np.where(v < 0, -((half - v) >> k), (v + half) >> k)
    if rule == "half_even":
        q = (v + half) >> k
        tie = (v & ((1 << k) - 1)) == half
        return q - (tie & ((q & 1) == 1))
    raise ValueError(f"unknown MSB split rule {rule!r}; choose one of {', '.join(SPLIT_RULES)}")


def x_h_top(unsigned: bool) -> int:
    """Top code of the 4-bit x predictor: 15 for uint8 activations, 7 for int8."""
    return 15 if unsigned else 7


def msb_split_x(x: np.ndarray, rule: str = SPLIT_RULE) -> tuple[np.ndarray, np.ndarray]:
    """x = 16*x_h + x_l with x_h = min(round(x / 16), top): rounding (ties per ``rule``;
    the contract's: away from zero), top code saturating. For uint8 x every rule but
    half_even is (x + 8) >> 4."""
    fmt = format_of(x)
    if fmt not in (INT8, UINT8):
        raise TypeError(f"x must be int8 or uint8, got {fmt.name}")
    xi = x.astype(np.int64)
    xh = np.minimum(round_shift(xi, X_SHIFT, rule), x_h_top(fmt.unsigned))
    return xh, xi - (xh << X_SHIFT)


def msb_split_g(g: np.ndarray, rule: str = SPLIT_RULE) -> tuple[np.ndarray, np.ndarray]:
    """g = 64*g_h + g_l with g_h = clamp(round(g / 64), -512, 511), ties per ``rule`` (the
    contract's: sign(g) * ((|g| + 32) >> 6), away from zero)."""
    if format_of(g) is not INT16:
        raise TypeError(f"g must be int16, got {np.dtype(g.dtype).name}")
    gi = g.astype(np.int64)
    gh = np.clip(round_shift(gi, G_SHIFT, rule), G_H_MIN, G_H_MAX)
    return gh, gi - (gh << G_SHIFT)


def beta_to_fixed(beta: float) -> int:
    """beta in (0, 1] -> beta_q = round(beta * 2**16) in [1, 65536]."""
    beta = float(beta)
    if not (0.0 < beta <= 1.0) or not math.isfinite(beta):
        raise ValueError(f"PSG beta must be in (0, 1], got {beta!r}")
    return max(1, int(math.floor(math.ldexp(beta, BETA_FRAC_BITS) + 0.5)))


def decay_to_fixed(lr: float, wd: float) -> int:
    """Decoupled weight decay per step, lr * wd, as a Q2.30 integer."""
    v = float(lr) * float(wd)
    if not (0.0 <= v < 1.0) or not math.isfinite(v):
        raise ValueError(f"lr * weight_decay must be in [0, 1), got {v!r}")
    return int(math.floor(math.ldexp(v, DECAY_FRAC_BITS) + 0.5))


# --- master weights --------------------------------------------------------------------

def master_frac_bits(w_maxabs: float, headroom_bits: int = 6) -> int:
    """Fraction bits F of a layer's int32 master weights (value = W * 2**-F).

    Chosen once, at initialisation, so that the initial max uses 30 - headroom bits: the
    weights may grow 2**headroom before they saturate, and an lr of 1e-3 is still
    thousands of master LSBs.
    """
    if not math.isfinite(w_maxabs) or w_maxabs <= 0:
        raise ValueError(f"cannot choose master weight format for max {w_maxabs!r}")
    e = math.frexp(w_maxabs)[1]                       # w_maxabs < 2**e
    return int(30 - headroom_bits - e)


def lr_to_fixed(lr: float, frac_bits: int) -> int:
    """Sign-step size in master LSBs: round(lr * 2**F), at least 1 for lr > 0."""
    lr = float(lr)
    if not (lr >= 0.0) or not math.isfinite(lr):
        raise ValueError(f"learning rate must be finite and >= 0, got {lr!r}")
    q = int(math.floor(math.ldexp(lr, frac_bits) + 0.5))
    if q >= 1 << 30:
        raise ValueError(f"learning rate {lr} is too large for a master format with {frac_bits} fraction bits")
    return max(q, 1) if lr > 0 else 0


def weight_codes(w_master: np.ndarray, frac_bits: int, out: np.ndarray | None = None) -> tuple[np.ndarray, Dyadic]:
    """Re-derive the int8 compute copy from int32 master weights (full range).

    Returns the int8 codes and their scale. The requantisation multiplier is the dyadic
    nearest 127 / max|W|, so the int8 scale is 2**-F / M * 2**S; we report the
    nominal full-range scale of max|W| * 2**-F / 127 as a dyadic, which is what every
    implementation uses to dequantise. With ``out`` (int8, the master weights' shape) the codes
    are written into it, and it is returned.
    """
    wmax = absmax(w_master)
    scale, mult = weight_code_scale(wmax, frac_bits)
    if mult is None:
        if out is None:
            return np.zeros(w_master.shape, np.int8), ONE
        out[...] = 0
        return out, ONE
    return requantize(w_master, mult, INT8, out), scale


def weight_code_scale(wmax: int, frac_bits: int) -> tuple[Dyadic, Dyadic | None]:
    """The int8 compute copy's (scale, requantisation multiplier) for master weights whose
    largest magnitude is ``wmax`` (``weight_codes``); (ONE, None) when wmax is 0: every code is
    0. The codes are element-wise given these, so any split of the weights gives the same codes."""
    if wmax == 0:
        return ONE, None
    scale = scale_for(math.ldexp(wmax, -frac_bits), INT8)
    return scale, requant_multiplier(math.ldexp(1.0, -frac_bits), scale)
