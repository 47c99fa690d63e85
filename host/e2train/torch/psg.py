"""Fixed-point convolutions that emulate the contract of ``e2train.core`` in PyTorch.

``PSGConv2d`` runs the three passes of a convolution exactly as the kernels do (see
``core.golden`` and ``device.nn_qconv``, whose scale policy it copies):

* forward: x -> uint8 (after a ReLU) or int8 codes with a full-range dyadic scale from the
  *running max* of |x| (EMA, momentum 0.9, including the current batch, of the batch max or
  of the mean per-sample max: ``set_act_scale``; values above it saturate); int8 weights
  re-derived from int32 master weights (``core.fixedpoint.weight_codes``); the int32
  accumulator is requantised to int8 (``sat((acc*M + 2**(S-1)) >> S)``) with a running-max
  output scale (calibrated on the first call with the exact worst-case bound);
* backward: g_y -> int16 with the max of the current batch; g_x = requantised int16
  transposed convolution (scale: the previous batch's max |g_x|, doubled when saturated);
  the weight gradient is only a *sign*: the PSG rule (``core.golden.psg_decide``) on
  G_msb = sum x_h*g_h (4-bit x, 10-bit g, split by rounding, ties away from zero) and the
  exact sum x*g.

The integer sums run as float32 convolutions where a bound computed from the operands
proves every partial sum an integer below 2**24 (exact in any order), split into limbs and
sample groups where it does not, and as float64 (exact below 2**53 for every shape the
kernels accept, ``core.shapes``) as the last resort: see ``conv2d_parts``,
``conv2d_input_parts`` and ``exact_wgrad``. The weight "gradient" handed to autograd is the
sign in {-1, 0, +1} chosen by the layer's ``decide`` rule (default ``psg_decide_t``);
``SignStep`` (``e2train.torch.optim``) applies the device's update rule to the int32
master weights.

``set_exact(model, False)`` switches layers to a fast emulation for exploration: the same
quantisation, scales, decisions and counters, but every integer sum as one float32
convolution (``fast_conv2d_parts``, ``fast_conv2d_input_parts``, ``fast_wgrad``), so results
can differ from the golden models where a sum exceeds 2**24 -- only at near-ties of a
rounding, sign or threshold decision. The exact mode is the default and the reference.

Off the CPU (on a GPU) the layer runs ``psg_sync_free``'s passes instead: the same codes,
scales, signs and counts, computed without reading any value back to the host
(``set_sync_free``; the CPU tests run both kinds and compare them bit for bit).

``QConv2d`` is the comparison point "8-bit forward, 32-bit float gradients": the same
quantised forward with a straight-through float backward, trained by ordinary SGD.
"""
from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core import fixedpoint as fxp
from ..core.golden import DECAY_FRAC_BITS, MASTER_LIMIT, psg_decide, sign_update
from ..core.shapes import ConvShape, ShapeError
from . import fused

RUNNING_MOMENTUM = 0.9     # the device's EMA of activation and output maxima (nn_qconv)
NAN = float("nan")


def _running(prev: float, batch: float) -> float:
    return batch if math.isnan(prev) else RUNNING_MOMENTUM * prev + (1 - RUNNING_MOMENTUM) * batch


class _Scratch(threading.local):
    """Reusable temporaries, one buffer per name, grown to the largest size seen.

    glibc hands multi-megabyte blocks back to the OS on free, so a fresh one is page-faulted
    in on every step, and at these sizes that costs as much as the arithmetic done on it
    (measured at 64x16x32x32 with freed blocks kept instead: the exact weight-gradient sums
    took 22 ms instead of 38). Only temporaries that never outlive the call that takes them
    come from here; codes saved for the backward and tensors handed to autograd do not.
    """

    def __init__(self):
        self.bufs: dict = {}

    def get(self, name: str, shape, dtype: torch.dtype, device) -> torch.Tensor:
        n = math.prod(shape)
        key = (name, dtype, torch.device(device))
        buf = self.bufs.get(key)
        if buf is None or buf.numel() < n:
            buf = self.bufs[key] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(shape)


_scratch = _Scratch()


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS.

    The exact emulation allocates and frees multi-megabyte tensors several times per layer
    and step -- torch's convolution outputs and oneDNN's workspaces, which ``_Scratch``
    cannot reach -- and glibc unmaps blocks of that size on free, so each is page-faulted in
    again on the next step: measured at 64x16x32x32, the input-gradient pass took 42 ms by
    default and 15 ms with this. Process-wide (every torch layer gets it) and not undone;
    memory the process frees stays reserved to it. The environment variables
    MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ do the same from outside. Returns
    False where the C library has no ``mallopt`` (not glibc).
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3          # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


def _absmax(t: torch.Tensor) -> float:
    """max |t| in one pass (aminmax; abs() would allocate a copy). NaN propagates."""
    if not t.numel():
        return 0.0
    lo, hi = torch.aminmax(t)
    return max(-float(lo), float(hi))


def quantize_t(x: torch.Tensor, scale: fxp.Dyadic, fmt: fxp.QFormat, *, out: torch.Tensor | None = None,
               absmax: float | None = None) -> torch.Tensor:
    """``core.fixedpoint.quantize`` in torch: floor(x / scale + 1/2) in float64, saturated.

    Bit for bit the numpy version: x * 2**s is exact, so numpy's x * 2**s / m and the single
    division x / (m * 2**-s) here are the same real quotient, rounded once. One fused pass
    (``fused.quantize_``). Returns the codes as float32 (every int16 code is exact there), in
    ``out`` if given. ``absmax``: max |x| where the caller has it (NaN and infinities are
    looked for only when it is not finite).
    """
    x = x.detach()
    if out is None:
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    if not x.numel():
        return out
    fused.quantize_(x.contiguous(), scale.m, scale.s, float(fmt.lo), float(fmt.hi), out)
    if not math.isfinite(_absmax(x) if absmax is None else absmax):
        out.nan_to_num_(nan=0.0)           # +-inf already saturated to hi / lo
    return out


def requantize_t(acc: torch.Tensor, mult: fxp.Dyadic, fmt: fxp.QFormat, *,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """``core.fixedpoint.requantize`` in torch: sat((acc*M + 2**(S-1)) >> S), as float32 codes
    (in ``out`` if given). ``acc`` holds integers (any float or integer dtype)."""
    if out is None:
        out = torch.empty(acc.shape, dtype=torch.float32, device=acc.device)
    _requantize_parts(((acc, 1),), mult, fmt, out)
    return out


def _requantize_parts(parts, mult: fxp.Dyadic, fmt: fxp.QFormat, out: torch.Tensor, *,
                      dequant: float = 1.0, peak: float | None = None) -> int:
    """``requantize_t`` of acc = sum w_i * part_i (integer-valued tensors, w_i powers of two:
    the limbs of an exact convolution), without forming acc on its own. Writes the codes
    times ``dequant`` (1: the codes themselves; a scale: ``core.fixedpoint.dequantize`` of
    them) to ``out``
    and returns max |code|.

    Every partial sum times M*2**-S is an integer below 2**52 times a power of two while
    |acc*M| < 2**52, so float64 computes it exactly, in any grouping, and one fused pass does
    it (``fused.requantize_``); int64 arithmetic otherwise (beyond what the kernels'
    accumulators reach). ``peak``: a bound on |acc| the caller already has (else measured).
    """
    if not out.numel():
        return 0
    if peak is None or peak * mult.m >= 2.0 ** 52:
        peak = sum(w * _absmax(p) for p, w in parts)
    if peak * mult.m < 2.0 ** 52 and len(parts) <= 2:
        c = math.ldexp(mult.m, -mult.s)
        (p0, w0), (p1, w1) = parts[0], (parts[1] if len(parts) > 1 else (None, 0))
        top = fused.requantize_(p0, w0 * c, p1, w1 * c, 0.5 if mult.s else 0.0, float(fmt.lo), float(fmt.hi),
                                dequant, out)
        return int(top)
    q = sum(p.round().to(torch.int64) * int(w) for p, w in parts) * int(mult.m)
    if mult.s:
        q = (q + (1 << (mult.s - 1))) >> mult.s
    q.clamp_(fmt.lo, fmt.hi)
    out.copy_(q.double() * dequant)
    return int(q.abs().max())


def _split_shape(x: torch.Tensor, slots: tuple, batch_major: bool) -> tuple:
    return (len(slots) * x.shape[0], *x.shape[1:]) if batch_major else (x.shape[0], len(slots), *x.shape[1:])


def _output_buffer(parts, dtype: torch.dtype) -> torch.Tensor:
    """Where a layer's dequantised output goes: the convolution's own output tensor when the
    accumulator is that one tensor of the output's dtype (overwritten element by element by
    ``_requantize_parts``; it is not needed after), else a new tensor."""
    (p0, w0), rest = parts[0], parts[1:]
    if not rest and w0 == 1 and p0.dtype == dtype and p0.is_contiguous() and p0._base is None:
        return p0
    return torch.empty(p0.shape, dtype=dtype, device=p0.device)


# the predictor splits as (half, 1/step, step, lo, hi) of
# h = clamp(sign(v) * floor((|v| + half) / step), lo, hi): ties away from zero (contract v2)
_X_SPLIT = (8.0, 1.0 / 16, 16.0, -math.inf)                       # hi: fxp.x_h_top(unsigned)
_G_SPLIT = (32.0, 1.0 / 64, 64.0, float(fxp.G_H_MIN), float(fxp.G_H_MAX))


def _split_t(v: torch.Tensor, consts: tuple, slots: tuple, out: torch.Tensor | None, batch_major: bool) -> torch.Tensor:
    if out is None:
        out = torch.empty(_split_shape(v, slots, batch_major), dtype=v.dtype, device=v.device)
    fused.split_(v.contiguous(), *consts, out, tuple(slots), batch_major)
    return out


def split_x_t(x: torch.Tensor, unsigned: bool, slots: tuple = ("h",), *, out: torch.Tensor | None = None,
              batch_major: bool = True) -> torch.Tensor:
    """The predictor limbs of activation codes, x = 16*x_h + x_l with x_h = min(sign(x) *
    ((|x| + 8) >> 4), top) (``core.fixedpoint.msb_split_x``; on float codes, where floor division of an
    integer by 16 is exact), stacked in one tensor in one pass: slot i holds limb
    ``slots[i]`` ("h", "l", or "x" for x itself), as (P*n, ...) (``batch_major``, P = len(slots))
    or (n, P, ...). ``out``: the buffer to write, else a new one."""
    return _split_t(x, (*_X_SPLIT, float(fxp.x_h_top(unsigned))), slots, out, batch_major)


def split_g_t(g: torch.Tensor, slots: tuple = ("h",), *, out: torch.Tensor | None = None,
              batch_major: bool = True) -> torch.Tensor:
    """The predictor limbs of gradient codes, g = 64*g_h + g_l with g_h = clamp(sign(g) *
    ((|g| + 32) >> 6), -512, 511) (``core.fixedpoint.msb_split_g``), stacked as in ``split_x_t``."""
    return _split_t(g, _G_SPLIT, slots, out, batch_major)


def psg_decide_t(g_msb: torch.Tensor, g_exact: torch.Tensor, beta_q: int):
    """``core.golden.psg_decide`` in torch. Returns (sign float, predicted bool, amax).

    The sums hold integers; on the CPU the rule's comparison |G_msb| * 2**16 >= beta_q *
    max|G_msb| is made in float64 where both sides stay below 2**53 (exact there: every sum
    these layers produce), else by ``core.golden.psg_decide`` itself on int64 copies. On
    any other device it is ``psg_decide_int_t``: integers on the device, no value read back
    (amax is then a 0-d int64 tensor on the device)."""
    if not g_msb.is_cpu:
        sign, predicted, amax = psg_decide_int_t(g_msb, g_exact, beta_q)
        return sign.to(torch.float64), predicted, amax
    amax_f = _absmax(g_msb)
    if amax_f * 2.0 ** fxp.BETA_FRAC_BITS < 2.0 ** 53 and g_msb.dtype == torch.float64:
        sign, predicted = fused.decide(g_msb.contiguous(), g_exact.to(torch.float64).contiguous(),
                                       2.0 ** fxp.BETA_FRAC_BITS, int(beta_q), amax_f)
        return sign, predicted, int(amax_f)
    as_int = lambda t: t.round().to(torch.int64).cpu().numpy()  # noqa: E731
    sign, predicted, amax = psg_decide(as_int(g_msb), as_int(g_exact), int(beta_q))
    dev = g_msb.device
    return torch.from_numpy(sign).to(dev, torch.float64), torch.from_numpy(predicted).to(dev), amax


def psg_decide_int_t(g_msb: torch.Tensor, g_exact: torch.Tensor, beta_q: int):
    """``core.golden.psg_decide`` as integer tensor arithmetic on the operands' device: the
    same expression, |G_msb| << 16 >= beta_q * max|G_msb| and G_msb != 0, in int64, with
    sign(0) = 0. Returns (sign int8, predicted bool, max|G_msb| as a 0-d int64 tensor); reads
    nothing back to the host.

    The sums arrive as floats holding integers; they are rounded to the nearest integer
    before the comparison, so the decision and its count depend only on the integers (a
    float32 GPU convolution off by a fraction -- a transform-based algorithm -- cannot move
    a weight across the threshold by a rounding error alone). ``beta_q`` in [0, 2**16].
    |G_msb| << 16 stays in int64 while |G_msb| < 2**47: |x_h*g_h| <= 15*512 per term would
    take 2**34 terms per weight, far beyond any shape the kernels accept."""
    if not 0 <= int(beta_q) <= 1 << fxp.BETA_FRAC_BITS:
        raise ValueError(f"beta_q must be in [0, {1 << fxp.BETA_FRAC_BITS}] (0 = predictor off), got {beta_q}")
    gm = g_msb.round().to(torch.int64)
    ge = g_exact.round().to(torch.int64)
    a = gm.abs()
    amax = a.max() if a.numel() else torch.zeros((), dtype=torch.int64, device=a.device)
    if int(beta_q) > 0:
        predicted = (torch.bitwise_left_shift(a, fxp.BETA_FRAC_BITS) >= amax * int(beta_q)) & (gm != 0)
    else:
        predicted = torch.zeros(gm.shape, dtype=torch.bool, device=gm.device)
    sign = torch.where(predicted, torch.sign(gm), torch.sign(ge)).to(torch.int8)
    return sign, predicted, amax


def sign_update_t(w_master: torch.Tensor, sign: torch.Tensor, lr_q: int, wd_q: int) -> torch.Tensor:
    """``core.golden.sign_update`` on the tensors' device, in int64: W <- sat(W - lr_q*sign -
    ((W*wd_q + 2**29) >> 30)) with an arithmetic shift (floor, as numpy's on int64),
    saturated at +-MASTER_LIMIT, as int32. |W| < 2**31 and wd_q < 2**30 keep W*wd_q below
    2**61. ``sign`` holds -1, 0, +1 (any dtype)."""
    w = w_master.to(torch.int64)
    decay = torch.bitwise_right_shift(w * int(wd_q) + (1 << (DECAY_FRAC_BITS - 1)), DECAY_FRAC_BITS)
    new = w - int(lr_q) * sign.to(torch.int64) - decay
    return new.clamp_(-MASTER_LIMIT, MASTER_LIMIT).to(torch.int32)


# --- exact integer convolutions on the fast float32 path ------------------------------
# float32 adds and multiplies integers exactly while every partial sum stays below 2**24,
# whatever the summation order. Each helper proves that bound from the operands (peak
# code times the largest sum of |other operand| that one output element sees) and takes
# the float32 convolution when it holds; otherwise it splits an operand into its MSB/LSB
# limbs (the predictor split) and, for the weight gradient, the batch into groups of
# samples summed separately, and falls back to float64 (exact below 2**53, which the
# kernels' shape limits guarantee) when even that is not enough.
F32_EXACT = float(1 << 24)
# cuDNN may run a float32 convolution on TF32 tensor cores (its default): operands rounded to
# 11 significant bits, products and sums in float32. Every operand of the exact path fits in
# 11 bits (8-bit codes, limbs of at most 512 in magnitude) except a whole int16 gradient
# code, which goes whole into a GPU convolution only when it fits too, else split into limbs.
TF32_EXACT = float(1 << 11)


def conv2d_parts(xq, wq, stride, padding, groups, wsum: float | None = None, peak: float | None = None):
    """sum x*w (the forward accumulator) as exact parts: ((tensor, weight), ...) with
    acc = sum weight * tensor. ``wsum`` = max_o sum |w_o| (or a bound on it); ``peak``: a
    bound on max |x| (default: measured, which reads it back from the device)."""
    if wsum is None:
        wsum = float(wq.abs().sum(dim=(1, 2, 3)).max()) if wq.numel() else 0.0
    conv = lambda a, w: F.conv2d(a, w, None, stride, padding, 1, groups)  # noqa: E731
    if (_absmax(xq) if peak is None else peak) * wsum < F32_EXACT:
        return ((conv(xq.float(), wq.float()), 1),)
    n = xq.shape[0]
    if 15 * wsum < F32_EXACT:          # x = 16*x_h + x_l, |x_h|, |x_l| <= 15: two limbs, one call
        limbs = _scratch.get("forward limbs", (2 * n, *xq.shape[1:]), torch.float32, xq.device)
        split_x_t(xq, True, ("h", "l"), out=limbs)   # the uint8 split is exact for int8 codes too
        both = conv(limbs, wq.float())
        return (both[:n], 16), (both[n:], 1)
    return ((conv(xq.double(), wq.double()), 1),)


def _combine(parts) -> torch.Tensor:
    """sum weight * tensor of exact parts, in float64 (exact below 2**53)."""
    acc = parts[0][0].double() * parts[0][1]
    for p, w in parts[1:]:
        acc += w * p.double()
    return acc


def exact_conv2d(xq, wq, stride, padding, groups, wsum: float | None = None) -> torch.Tensor:
    """sum x*w (the forward accumulator), exact, as float64."""
    return _combine(conv2d_parts(xq, wq, stride, padding, groups, wsum))


def _transposed_conv(wq, stride, padding, groups):
    """convt(g, x_shape): sum g*w of the transposed convolution, in g's dtype."""
    if stride == 1 and groups == 1 and 2 * padding == wq.shape[2] - 1:
        # the transposed convolution of a "same" stride-1 conv is a forward conv with the
        # kernel flipped and its channel axes swapped: the same products, summed in some
        # order (exact either way), and the forward kernels do not allocate the large
        # workspace that oneDNN's backward-data pass takes on every call (measured at
        # 64x16x32x32: 17 ms -> 6 ms)
        wt = wq.flip(2, 3).transpose(0, 1).contiguous()
        return lambda g, shape: F.conv2d(g, wt.to(g.dtype), None, 1, padding)
    return lambda g, shape: torch.nn.grad.conv2d_input(shape, wq.to(g.dtype), g, stride, padding, 1, groups)


def conv2d_input_parts(x_shape, wq, gq, stride, padding, groups, wsum: float | None = None,
                       peak: float | None = None):
    """sum g*w of the transposed convolution (the input gradient) as exact parts (see
    ``conv2d_parts``). ``wsum`` = max_c sum_o |w[o, c]| (or a bound); ``peak``: a bound on
    max |g| (default: measured)."""
    if wsum is None:
        wsum = float(wq.abs().sum(dim=(0, 2, 3)).max()) if wq.numel() else 0.0
    n = gq.shape[0]
    convt = _transposed_conv(wq, stride, padding, groups)
    peak = _absmax(gq) if peak is None else peak
    if peak * wsum < F32_EXACT and (gq.is_cpu or peak <= TF32_EXACT):
        return ((convt(gq.float(), x_shape), 1),)
    if 512 * wsum < F32_EXACT:         # g = 64*g_h + g_l, |g_h| <= 512, |g_l| <= 63: two limbs, one call
        limbs = _scratch.get("input limbs", (2 * n, *gq.shape[1:]), torch.float32, gq.device)
        split_g_t(gq, ("h", "l"), out=limbs)
        both = convt(limbs, (2 * n, *x_shape[1:]))
        return (both[:n], 64), (both[n:], 1)
    if 32 * wsum < F32_EXACT:
        # g = 1024*a + 32*b + c, |a| <= 32, |b|, |c| <= 16 (two nearest-limb splits, ties away
        # from zero): three limbs in one float32 call instead of one float64 convolution (a
        # wide layer, or the data-free bound of a GPU step); the top two recombined in float64
        # (exact: below 2**40), so the requantisation sees two parts as from the other paths
        limbs = _scratch.get("input limbs 3", (3 * n, *gq.shape[1:]), torch.float32, gq.device)
        fused.split_(gq.contiguous(), 512.0, 1.0 / 1024, 1024.0, -32.0, 32.0, limbs[: 2 * n], ("h", "l"), True)
        rest = _scratch.get("input limbs rest", (n, *gq.shape[1:]), torch.float32, gq.device)
        rest.copy_(limbs[n: 2 * n])
        fused.split_(rest, 16.0, 1.0 / 32, 32.0, -math.inf, math.inf, limbs[n:], ("h", "l"), True)
        three = convt(limbs, (3 * n, *x_shape[1:]))
        top = three[:n].double().mul_(1024).add_(three[n: 2 * n].double().mul_(32))
        return (top, 1), (three[2 * n:], 1)
    return ((convt(gq.double(), x_shape), 1),)


def exact_conv2d_input(x_shape, wq, gq, stride, padding, groups, wsum: float | None = None) -> torch.Tensor:
    """sum g*w of the transposed convolution, exact, as float64."""
    return _combine(conv2d_input_parts(x_shape, wq, gq, stride, padding, groups, wsum))


def _sample_groups(bsum: torch.Tensor, peaks: torch.Tensor) -> int | None:
    """The fewest interleaved sample groups k (k divides n; group j = samples j, j+k, ...)
    whose sums are all proved exact in float32: peak_p * sum over the group of sum |b_p|
    < 2**24 for every product p and output channel. ``bsum`` is (n, P, co) in float64.
    None when even one sample per group is too large."""
    n = bsum.shape[0]
    bound = bsum * peaks.view(1, -1, 1)
    for k in (d for d in range(1, n + 1) if n % d == 0):
        if float(bound.view(n // k, k, -1).sum(0).max()) < F32_EXACT:
            return k
    return None


def _static_groups(n: int, per_sample: float) -> int | None:
    """``_sample_groups`` from the codes' ranges alone (no value read back): the fewest
    interleaved groups k (k divides n) with (n / k) * per_sample < 2**24, per_sample bounding
    one sample's share of a sum. None when one sample alone may exceed it."""
    for k in (d for d in range(1, n + 1) if n % d == 0):
        if (n // k) * per_sample < F32_EXACT:
            return k
    return None


def exact_wgrad(xq, x_unsigned: bool, gq, wshape, stride, padding, groups, with_msb: bool = True,
                static: bool = False):
    """(G_msb, G_exact) of the PSG rule, exact, as float64.

    With the predictor splits x = 16*x_h + x_l and g = 64*g_h + g_l (exact):
    G_msb = sum x_h*g_h and G_exact = sum x*g = 1024*G_msb + 64*sum x_l*g_h + sum x*g_l,
    three products of small operands (|x_h|, |x_l| <= 15, |g_l| <= 63) instead of the four
    of ``core.golden.wgrad_terms`` -- the same integers. Without the predictor
    (``with_msb`` = False, G_msb = None) two: G_exact = 64*sum x*g_h + sum x*g_l.

    All products run as ONE grouped float32 convolution: the operands are stacked as
    channel groups, and the batch is folded into k interleaved sample groups, each summed
    separately (same MACs as one ungrouped call) so that every float32 partial sum is
    provably below 2**24; the k partial results are added in float64. k is the smallest
    divisor of n that the bound allows; a batch where one sample alone exceeds it runs in
    float64. ``static``: the bound from the codes' ranges alone (no value read back from the
    device; more groups or float64 where the data would have allowed fewer -- the same sums).
    """
    n, ci = xq.shape[0], xq.shape[1]
    co = gq.shape[1]
    p = 3 if with_msb else 2
    dev = xq.device
    a = _scratch.get("wgrad x", (n, p, *xq.shape[1:]), torch.float32, dev)
    b = _scratch.get("wgrad g", (n, p, *gq.shape[1:]), torch.float32, dev)
    x_peak = float(fxp.UINT8.hi if x_unsigned else -fxp.INT8.lo)
    if with_msb:
        split_x_t(xq, x_unsigned, ("h", "l", "x"), out=a, batch_major=False)
        split_g_t(gq, ("h", "h", "l"), out=b, batch_major=False)
        # |x_h| <= 15 (uint8) or 8 (int8); |x_l| <= 15 (the top code's remainder)
        peaks = (15.0 if x_unsigned else 8.0, 15.0, x_peak)
    else:
        split_x_t(xq, x_unsigned, ("x", "x"), out=a, batch_major=False)
        split_g_t(gq, ("h", "l"), out=b, batch_major=False)
        peaks = (x_peak, x_peak)
    hw = gq.shape[2] * gq.shape[3]
    limb_peaks = (512, 512, 63) if with_msb else (512, 63)          # |g_h|, |g_h|, |g_l|
    if n * hw * max(a_pk * b_pk for a_pk, b_pk in zip(peaks, limb_peaks)) < F32_EXACT:
        k = 1                          # the codes' ranges alone prove one float32 sum exact
    elif static:
        k = _static_groups(n, hw * max(a_pk * b_pk for a_pk, b_pk in zip(peaks, limb_peaks)))
    else:
        # Upper bounds of sum |limb| per (sample, channel) from one pass over |g|:
        # |g_h| <= (|g| + 32) / 64 and |g_l| <= min(|g|, 63) (63 at the saturated top code
        # 32767 = 64*511 + 63, else 32). The float32 sum of |g| is at most
        # (hw - 1) * 2**-24 relatively below the true one (any order): inflated by that.
        gabs = torch.abs(gq, out=_scratch.get("wgrad |g|", gq.shape, gq.dtype, dev))
        gsum = gabs.sum((2, 3)).double().mul_(1.0 + hw * 2.0 ** -23)               # n x co
        h_sum = (gsum + 32 * hw) / 64
        l_sum = gsum.clamp(max=63.0 * hw)
        bsum = torch.stack([h_sum, h_sum, l_sum] if with_msb else [h_sum, l_sum], 1)  # n x p x co
        k = _sample_groups(bsum, torch.tensor(peaks, dtype=torch.float64, device=dev))
    dt = torch.float32 if k is not None else torch.float64
    k = k or 1
    a, b = a.to(dt).view(n // k, k * p * ci, *xq.shape[2:]), b.to(dt).view(n // k, k * p * co, *gq.shape[2:])
    r = torch.nn.grad.conv2d_weight(a, (k * p * wshape[0], *wshape[1:]), b, stride, padding, 1, k * p * groups)
    r = r.view(k, p, *wshape).double().sum(0)
    if with_msb:
        return r[0], r[0] * 1024 + r[1] * 64 + r[2]
    return None, r[0] * 64 + r[1]


# --- the fast (not bit-exact) emulation: one float32 convolution per sum -----------------
# The same integer operands as above, but every sum is one float32 convolution whatever its
# size. Below 2**24 that is the exact sum (so on small layers the fast mode is bit-exact);
# beyond, float32 rounds partial sums (relative error about n * 2**-24 for n terms), so a
# requantised code or a decision that sits within that distance of a rounding or sign
# boundary, or of the beta*max|G_msb| threshold, can come out differently from the golden
# model. Every result is still an integer (float32 numbers from 2**24 up are integers), so
# the requantisation and the decision rule run unchanged on it.

def fast_conv2d_parts(xq, wq, stride, padding, groups, wsum=None):
    """``conv2d_parts``' signature; sum x*w as one float32 convolution (not exact beyond 2**24)."""
    return ((F.conv2d(xq.float(), wq.float(), None, stride, padding, 1, groups), 1),)


def fast_conv2d_input_parts(x_shape, wq, gq, stride, padding, groups, wsum=None):
    """``conv2d_input_parts``' signature; one float32 transposed convolution."""
    return ((_transposed_conv(wq, stride, padding, groups)(gq.float(), x_shape), 1),)


def fast_wgrad(xq, x_unsigned: bool, gq, wshape, stride, padding, groups, with_msb: bool = True):
    """``exact_wgrad``'s signature and results (float64 tensors of integers), computed as
    float32: G = sum x*g and G_msb = sum x_h*g_h as two weight-gradient convolutions (G
    alone without the predictor). Two calls, not one grouped call: measured at
    64x16x32x32, 10.6 ms against 21.5 for the stacked operands in two channel groups."""
    g_exact = torch.nn.grad.conv2d_weight(xq.float(), wshape, gq.float(), stride, padding, 1, groups).double()
    if not with_msb:
        return None, g_exact
    return fast_msb_wgrad(xq, x_unsigned, gq, wshape, stride, padding, groups), g_exact


def fast_grads(xq, wq, gq, stride, padding, groups):
    """Both backward sums of the fast mode from one convolution-backward call: (sum g*w, the
    input gradient's accumulator, float32; G = sum x*g, float64 of float32 sums)."""
    gi, gw, _ = torch.ops.aten.convolution_backward(gq, xq, wq, None, [stride] * 2, [padding] * 2, [1, 1],
                                                    False, [0, 0], groups, [True, True, False])
    return gi, gw.double()


def fast_msb_wgrad(xq, x_unsigned: bool, gq, wshape, stride, padding, groups):
    """G_msb = sum x_h*g_h as one float32 weight-gradient convolution, float64."""
    dev = xq.device
    xh = split_x_t(xq, x_unsigned, out=_scratch.get("fast wgrad x_h", xq.shape, torch.float32, dev))
    gh = split_g_t(gq, out=_scratch.get("fast wgrad g_h", gq.shape, torch.float32, dev))
    return torch.nn.grad.conv2d_weight(xh, wshape, gh, stride, padding, 1, groups).double()


def _act_stats(layer, x: torch.Tensor) -> tuple[float, float]:
    """(max |x|, the statistic the layer's running max of x follows): under "batch_max" the
    same number, under "mean_sample_max" ``core.fixedpoint.act_batch_max`` of each sample's
    max |x|, taken in the same single pass over x (aminmax per sample)."""
    if layer.act_scale == "batch_max" or not x.numel():
        bmax = _absmax(x)
        return bmax, bmax
    lo, hi = torch.aminmax(x.reshape(x.shape[0], -1), dim=1)
    per_sample = torch.maximum(-lo, hi).double().cpu()
    return float(per_sample.max()), fxp.act_batch_max(per_sample.tolist(), layer.act_scale)


def set_act_scale(model: nn.Module, policy: str) -> int:
    """The activation scale policy (``core.fixedpoint.ACT_SCALE_POLICIES``) of every fixed-point
    layer in ``model`` (``PSGConv2d``, ``QConv2d``): which batch statistic the running max of x
    follows. Returns the number of layers set."""
    fxp.check_act_scale(policy)
    layers = [m for m in model.modules() if isinstance(m, (PSGConv2d, QConv2d))]
    for m in layers:
        m.act_scale = policy
    return len(layers)


def set_exact(model: nn.Module, exact: bool) -> int:
    """Switch every ``PSGConv2d`` in ``model`` to the exact (default, bit-exact) or the fast
    float32 emulation. Only how the integer sums are computed changes: quantisation, scales,
    decisions, counters and the MACs the work meter prices stay the same. An emulation
    setting, not model state: not in ``state_dict``. Returns the number of layers switched."""
    layers = [m for m in model.modules() if isinstance(m, PSGConv2d)]
    for m in layers:
        m.exact = bool(exact)
    return len(layers)


def set_sync_free(model: nn.Module, on: bool | None) -> int:
    """Which passes the ``PSGConv2d`` layers of ``model`` run: None (default) the passes that
    read no value back to the host (``psg_sync_free``) wherever the layer's tensors are not on
    the CPU, and the host passes on the CPU; True the sync-free passes everywhere (how the
    CPU tests check them: the same bits); False the host passes everywhere. An emulation
    setting, not model state. Returns the number of layers set."""
    layers = [m for m in model.modules() if isinstance(m, PSGConv2d)]
    for m in layers:
        m.sync_free = on
        m._rederive()
    return len(layers)


class _PSGConvFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, layer: "PSGConv2d"):
        if layer._use_sync_free(x):
            from . import psg_sync_free
            return psg_sync_free.forward(ctx, x, layer)
        ctx.sync_free = False
        xq, s_x = layer._quantize_input(x)
        wq = layer.w_codes
        acc_scale = s_x.value * layer.w_scale.value
        parts = conv2d_parts if layer.exact else fast_conv2d_parts
        acc = parts(xq, wq, layer.stride, layer.padding, layer.groups, layer._wsum_fwd)
        y = layer._requantize_output(acc, acc_scale, xq, x.dtype)
        ctx.layer = layer
        # the int8 codes this forward ran on: the backward's input gradient uses them even if
        # the masters were updated in between (pipelined training; _rederive replaces w_codes,
        # it never writes into it)
        ctx.w = (wq, layer.w_scale, layer._wsum_bwd)
        ctx.save_for_backward(xq)
        return y

    @staticmethod
    def backward(ctx, gy):
        if ctx.sync_free:
            from . import psg_sync_free
            return psg_sync_free.backward(ctx, gy)
        layer: PSGConv2d = ctx.layer
        (xq,) = ctx.saved_tensors
        gmax = _absmax(gy)
        s_gy = fxp.scale_for(gmax, fxp.INT16)
        gq = quantize_t(gy, s_gy, fxp.INT16, out=_scratch.get("gy codes", gy.shape, torch.float32, gy.device),
                        absmax=gmax)
        gx = gw = None
        if not layer.exact and ctx.needs_input_grad[0] and ctx.needs_input_grad[1]:
            # fast mode: the input gradient's sum g*w and G = sum x*g in one backward call,
            # as an fp32 layer computes them (the operands' reorders are shared)
            acc_x, g_exact = fast_grads(xq, ctx.w[0], gq, layer.stride, layer.padding, layer.groups)
            gx = layer._grad_input(gq, s_gy, xq.shape, gy.dtype, acc=((acc_x, 1),), w=ctx.w)
            gw = layer._sign_grad(xq, gq, g_exact=g_exact).to(layer.weight.dtype)
            return gx, gw, None
        if ctx.needs_input_grad[0]:
            gx = layer._grad_input(gq, s_gy, xq.shape, gy.dtype, w=ctx.w)
        if ctx.needs_input_grad[1]:
            gw = layer._sign_grad(xq, gq).to(layer.weight.dtype)
        return gx, gw, None


class PSGConv2d(nn.Module):
    """A bias-free k x k convolution (k in 1, 3; stride 1, 2) in the fixed-point contract.

    ``beta`` > 0: PSG (predictor decides where confident); ``beta`` = 0: every sign from
    the exact gradient (the 8-bit/16-bit baseline without PSG). ``x_unsigned``: the input
    comes out of a ReLU (uint8 codes), else int8. ``exact`` = False: the fast emulation,
    every integer sum as one float32 convolution (not bit-exact beyond 2**24; ``set_exact``).

    State (all in ``state_dict``): ``w_master`` int32 and ``frac_bits`` (value = W*2**-F),
    the scale maxima ``x_max``/``y_max``/``gx_max`` (NaN = not yet set). ``weight`` is a float
    view of the master weights (for optimisers, inspection and checkpoints of the float
    model); the backward writes the update sign into ``weight.grad``.
    """

    pass_bits = ((8, 8), (16, 8), (8, 16))   # fwd, bwd-data, bwd-weight operand widths

    # The decision rule, called once per backward as decide(G_msb, G_exact, beta_q) ->
    # (sign in {-1, 0, 1}, predicted bool, max|G_msb|) on float64 tensors of the weight's
    # shape holding integers, exact ones in the exact mode (``psg_decide_t``'s signature). Assign a callable to one
    # layer (``layer.decide = rule``) to study another rule, e.g. a random control; the
    # exact and MSB sums, the counters and the MACs the work meter prices stay the layer's.
    decide = staticmethod(psg_decide_t)
    # which batch statistic the running max of x follows (``set_act_scale``)
    act_scale = fxp.ACT_SCALE_DEFAULT
    # None: the sync-free passes off the CPU, the host passes on it (``set_sync_free``)
    sync_free: bool | None = None

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, groups: int = 1, *, beta: float = 0.05,
                 x_unsigned: bool = True, exact: bool = True):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        # the kernels' shape limits, checked once here with a nominal 8x8 input
        ConvShape(1, in_channels, 8, 8, out_channels, kernel_size, stride, padding)
        if in_channels % groups or out_channels % groups:
            raise ShapeError(f"groups={groups} must divide {in_channels} and {out_channels} channels")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.groups = kernel_size, stride, padding, groups
        self.x_unsigned = bool(x_unsigned)
        self.exact = bool(exact)   # False: the fast float32 emulation (``set_exact``)
        self.beta_q = fxp.beta_to_fixed(beta) if beta > 0 else 0
        w = torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size, dtype=torch.float64)
        nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
        frac = fxp.master_frac_bits(float(w.abs().max()))
        self.register_buffer("w_master", torch.round(torch.ldexp(w, torch.tensor(frac))).to(torch.int32))
        self.register_buffer("frac_bits", torch.tensor(frac, dtype=torch.int64))
        self._frac = frac         # frac_bits on the host (read without a sync)
        self._sf_known: set = set()      # scale maxima seen set (not NaN) by the sync-free passes
        self._sf_bad: dict | None = None  # their error flags: message -> device bool, read once per step
        for name in ("x_max", "y_max", "gx_max"):
            self.register_buffer(name, torch.tensor(NAN, dtype=torch.float64))
        self.weight = nn.Parameter(torch.zeros(w.shape, dtype=torch.float32))
        self._n_predicted_dev: torch.Tensor | None = None   # the device's share of n_predicted, not yet read
        self.n_predicted = 0      # weights decided by the predictor, since reset_stats()
        self.n_decided = 0        # weight signs decided (predictor or exact)
        self.pending_wgrad: list[tuple[int, int]] = []   # (weight-grad MACs, exact MACs) per backward
        self._rederive()

    # -- master weights ---------------------------------------------------------------
    def _use_sync_free(self, t: torch.Tensor) -> bool:
        return (not t.is_cpu) if self.sync_free is None else self.sync_free

    def _rederive(self) -> None:
        """int8 compute copy from the masters (``weight_codes``), and the float view."""
        if self._use_sync_free(self.w_master):
            from . import psg_sync_free
            psg_sync_free.rederive(self)
            return
        codes, scale = fxp.weight_codes(self.w_master.cpu().numpy(), int(self.frac_bits))
        self.w_scale = scale
        self.w_codes = torch.from_numpy(codes.astype(np.float32)).to(self.w_master.device)
        a = self.w_codes.abs()
        self._wsum_fwd = float(a.sum(dim=(1, 2, 3)).max())   # bounds for the exact float32 path
        self._wsum_bwd = float(a.sum(dim=(0, 2, 3)).max())
        with torch.no_grad():
            # W * 2**-F rounded once to float32: the int32 -> float32 conversion is that one
            # rounding, and the power-of-two factor is exact
            torch.mul(self.w_master, math.ldexp(1.0, -int(self.frac_bits)), out=self.weight.data)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._frac = int(self.frac_bits)
        self._sf_known = set()           # the loaded maxima may be unset
        self._rederive()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._sf_known = set()
        self._rederive()
        return out

    @torch.no_grad()
    def sign_step(self, lr: float, weight_decay: float) -> None:
        """The device's update: W <- sat(W - lr_q*sign - ((W*wd_q + 2**29) >> 30)), then
        re-derive the int8 copy. Calls ``core.golden.sign_update`` itself: one rule."""
        if self.weight.grad is None:
            return
        f = self._frac
        lr_q, wd_q = fxp.lr_to_fixed(lr, f), fxp.decay_to_fixed(lr, weight_decay)
        if self.w_master.is_cpu:
            sign = self.weight.grad.detach().numpy().astype(np.int8)
            self.w_master.copy_(torch.from_numpy(sign_update(self.w_master.numpy(), sign, lr_q, wd_q)))
        else:       # the same integer rule on the device (``sign_update_t``, tested against it bit for bit)
            self.w_master.copy_(sign_update_t(self.w_master, self.weight.grad.detach(), lr_q, wd_q))
        self._rederive()

    # -- passes -----------------------------------------------------------------------
    def _quantize_input(self, x: torch.Tensor):
        fmt = fxp.UINT8 if self.x_unsigned else fxp.INT8
        bmax, stat = _act_stats(self, x.detach())
        if self.training or math.isnan(float(self.x_max)):
            self.x_max.fill_(_running(float(self.x_max), stat) if self.training else stat)
        s_x = fxp.scale_for(float(self.x_max), fmt)
        return quantize_t(x.detach(), s_x, fmt, absmax=bmax), s_x

    def _requantize_output(self, acc, acc_scale: float, xq: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The layer's output: ``acc`` (the accumulator as exact parts, ``conv2d_parts``)
        requantised to int8 codes and dequantised to ``dtype``, in one pass."""
        shape = acc[0][0].shape
        peak = (fxp.UINT8.hi if self.x_unsigned else -fxp.INT8.lo) * self._wsum_fwd   # bound on |acc|
        if math.isnan(float(self.y_max)):
            # first call: the exact bound max_o sum|w| * max|x| never saturates; measure it
            bound = acc_scale * _absmax(xq) * self._wsum_fwd
            s_cal = fxp.scale_for(bound, fxp.INT8)
            ymax = s_cal.value * _requantize_parts(acc, fxp.requant_multiplier(acc_scale, s_cal), fxp.INT8,
                                                   _scratch.get("y codes", shape, torch.float32, xq.device), peak=peak)
            if ymax > 0:
                self.y_max.fill_(ymax)
        s_y = fxp.scale_for(0.0 if math.isnan(float(self.y_max)) else float(self.y_max), fxp.INT8)
        y = _output_buffer(acc, dtype)
        top = _requantize_parts(acc, fxp.requant_multiplier(acc_scale, s_y), fxp.INT8, y,
                                dequant=s_y.value, peak=peak)
        if self.training and y.numel():
            ym = float(self.y_max)
            est = 2 * ym if (top >= fxp.INT8.hi and not math.isnan(ym)) else top * s_y.value
            if est > 0:
                self.y_max.fill_(_running(ym, est))
        return y

    def _grad_input(self, gq: torch.Tensor, s_gy: fxp.Dyadic, x_shape, dtype: torch.dtype, acc=None,
                    w=None) -> torch.Tensor:
        """``acc``: the sum g*w already computed (as exact parts), else computed here.
        ``w``: (codes, scale, max column sum) of the weights the forward used (default: now's)."""
        codes, w_scale, wsum = w if w is not None else (self.w_codes, self.w_scale, self._wsum_bwd)
        acc_scale = s_gy.value * w_scale.value
        if math.isnan(float(self.gx_max)):
            self.gx_max.fill_(acc_scale * _absmax(gq) * wsum)
        s_gx = fxp.scale_for(float(self.gx_max), fxp.INT16)
        if acc is None:
            parts = conv2d_input_parts if self.exact else fast_conv2d_input_parts
            acc = parts(x_shape, codes, gq, self.stride, self.padding, self.groups, wsum)
        gx = _output_buffer(acc, dtype)
        top = _requantize_parts(acc, fxp.requant_multiplier(acc_scale, s_gx), fxp.INT16, gx,
                                dequant=s_gx.value, peak=-fxp.INT16.lo * wsum)
        if top >= fxp.INT16.hi:
            self.gx_max.fill_(2 * float(self.gx_max))
        elif top > 0:
            self.gx_max.fill_(top * s_gx.value)       # this batch's max, for the next batch
        return gx

    def _sign_grad(self, xq: torch.Tensor, gq: torch.Tensor, g_exact: torch.Tensor | None = None,
                   static: bool = False) -> torch.Tensor:
        """``g_exact``: the fast mode's float32 sum x*g when already computed (``fast_grads``).
        ``static``: the exact sums' float32 bounds from the code ranges alone (no value read back)."""
        wshape = tuple(self.w_master.shape)
        if g_exact is None:
            sums = exact_wgrad if self.exact else fast_wgrad
            kw = {"static": True} if static and self.exact else {}
            g_msb, g_exact = sums(xq, self.x_unsigned, gq, wshape, self.stride, self.padding,
                                  self.groups, with_msb=bool(self.beta_q), **kw)
        else:
            g_msb = fast_msb_wgrad(xq, self.x_unsigned, gq, wshape, self.stride, self.padding,
                                   self.groups) if self.beta_q else None
        if g_msb is None:
            g_msb = torch.zeros_like(g_exact)
        sync_free = self._use_sync_free(gq)
        if sync_free and self.decide is psg_decide_t:
            sign, predicted, _ = psg_decide_int_t(g_msb, g_exact, self.beta_q)    # the device's form
        else:
            sign, predicted, _ = self.decide(g_msb, g_exact, self.beta_q)
        if predicted.is_cpu and not sync_free:
            n_pred = int(predicted.sum())
            self._n_predicted += n_pred
        else:
            # counted on the device and read when asked for (``n_predicted``): no sync here
            n_pred = predicted.sum(dtype=torch.int64)
            self._n_predicted_dev = n_pred if self._n_predicted_dev is None else self._n_predicted_dev + n_pred
        self.n_decided += sign.numel()
        per_weight = gq.shape[0] * gq.shape[2] * gq.shape[3]   # MACs feeding one weight
        self.pending_wgrad.append((per_weight * sign.numel(), per_weight * (sign.numel() - n_pred)))
        return sign.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PSGConvFn.apply(x, self.weight, self)

    @property
    def n_predicted(self) -> int:
        """Weights decided by the predictor since ``reset_stats()`` (on a GPU the count is
        kept on the device; reading it waits for the backward passes that add to it)."""
        if self._sf_bad is not None:
            from . import psg_sync_free
            psg_sync_free.raise_errors(self)
        if self._n_predicted_dev is not None:
            self._n_predicted += int(self._n_predicted_dev)
            self._n_predicted_dev = None
        return self._n_predicted

    @n_predicted.setter
    def n_predicted(self, value: int) -> None:
        self._n_predicted, self._n_predicted_dev = int(value), None

    def reset_stats(self) -> None:
        self.n_predicted = self.n_decided = 0

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}, "
                f"groups={self.groups}, beta_q={self.beta_q}, x={'uint8' if self.x_unsigned else 'int8'}"
                + ("" if self.exact else ", fast"))


class _FakeQuant(torch.autograd.Function):
    """Quantise-dequantise with a full-range dyadic scale; straight-through backward."""

    @staticmethod
    def forward(ctx, x, maxabs: float, fmt: fxp.QFormat):
        s = fxp.scale_for(maxabs, fmt)
        return (quantize_t(x, s, fmt) * s.value).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


class QConv2d(nn.Conv2d):
    """8-bit forward (int8/uint8 x, int8 w, full-range dyadic scales; running max for x,
    current max for w), float32 backward: "8-bit training with 32-bit gradients"."""

    pass_bits = ((8, 8), (-32, 8), (8, -32))
    act_scale = fxp.ACT_SCALE_DEFAULT   # ``set_act_scale``

    def __init__(self, *args, x_unsigned: bool = True, **kw):
        kw.setdefault("bias", False)
        super().__init__(*args, **kw)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.x_unsigned = bool(x_unsigned)
        self.register_buffer("x_max", torch.tensor(NAN, dtype=torch.float64))

    def forward(self, x):
        if self.training or math.isnan(float(self.x_max)):
            stat = _act_stats(self, x.detach())[1]
            self.x_max.fill_(_running(float(self.x_max), stat) if self.training else stat)
        xq = _FakeQuant.apply(x, float(self.x_max), fxp.UINT8 if self.x_unsigned else fxp.INT8)
        wq = _FakeQuant.apply(self.weight, float(self.weight.detach().abs().max()), fxp.INT8)
        return self._conv_forward(xq, wq, self.bias)
