"""Fixed-point convolutions that emulate the contract of ``e2train.core`` in PyTorch.

``PSGConv2d`` runs the three passes of a convolution exactly as the kernels do (see
``core.golden`` and ``device.nn_qconv``, whose scale policy it copies):

* forward: x -> uint8 (after a ReLU) or int8 codes with a full-range dyadic scale from the
  *running max* of |x| (EMA, momentum 0.9, including the current batch); int8 weights
  re-derived from int32 master weights (``core.fixedpoint.weight_codes``); the int32
  accumulator is requantised to int8 (``sat((acc*M + 2**(S-1)) >> S)``) with a running-max
  output scale (calibrated on the first call with the exact worst-case bound);
* backward: g_y -> int16 with the max of the current batch; g_x = requantised int16
  transposed convolution (scale: the previous batch's max |g_x|, doubled when saturated);
  the weight gradient is only a *sign*: the PSG rule (``core.golden.psg_decide``) on
  G_msb = sum x_h*g_h (4-bit x, 10-bit g, split by rounding) and the exact sum x*g.

The integer sums run as float32 convolutions where a bound computed from the operands
proves every partial sum an integer below 2**24 (exact in any order), split into limbs or
batch chunks where it does not, and as float64 (exact below 2**53 for every shape the
kernels accept, ``core.shapes``) as the last resort: see ``exact_conv2d`` and friends. The
weight "gradient" handed to autograd is the sign in {-1, 0, +1}; ``SignStep``
(``e2train.torch.optim``) applies the device's update rule to the int32 master weights.

``QConv2d`` is the comparison point "8-bit forward, 32-bit float gradients": the same
quantised forward with a straight-through float backward, trained by ordinary SGD.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core import fixedpoint as fxp
from ..core.golden import sign_update
from ..core.shapes import ConvShape, ShapeError

RUNNING_MOMENTUM = 0.9     # the device's EMA of activation and output maxima (nn_qconv)
NAN = float("nan")


def _running(prev: float, batch: float) -> float:
    return batch if math.isnan(prev) else RUNNING_MOMENTUM * prev + (1 - RUNNING_MOMENTUM) * batch


def quantize_t(x: torch.Tensor, scale: fxp.Dyadic, fmt: fxp.QFormat) -> torch.Tensor:
    """``core.fixedpoint.quantize`` in torch: floor(x / scale + 1/2) in float64, saturated.

    The same float64 operations in the same order as the numpy version, so the codes agree
    bit for bit. Returns the codes as float32 (every int16 code is exact there).
    """
    q = torch.floor(x.double() * math.ldexp(1.0, scale.s) / scale.m + 0.5)
    q = torch.nan_to_num(q, nan=0.0, posinf=fmt.hi, neginf=fmt.lo)
    return q.clamp_(fmt.lo, fmt.hi).float()


def requantize_t(acc: torch.Tensor, mult: fxp.Dyadic, fmt: fxp.QFormat) -> torch.Tensor:
    """``core.fixedpoint.requantize`` in torch: sat((acc*M + 2**(S-1)) >> S), as float32 codes.

    acc*M and the shift with rounding are exact in float64 while |acc*M| < 2**52 (always
    so for the forward's 30-bit and the input gradient's 36-bit accumulators with a 15-bit
    M); int64 arithmetic otherwise.
    """
    peak = float(acc.abs().max()) if acc.numel() else 0.0
    if peak * mult.m < 2.0 ** 52:
        q = torch.floor(acc.double() * float(mult.m) * math.ldexp(1.0, -mult.s) + (0.5 if mult.s else 0.0))
        return q.clamp_(fmt.lo, fmt.hi).float()
    a = acc.round().to(torch.int64) * int(mult.m)
    if mult.s:
        a = (a + (1 << (mult.s - 1))) >> mult.s
    return a.clamp_(fmt.lo, fmt.hi).float()


def msb_split_x_t(x: torch.Tensor, unsigned: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """x = 16*x_h + x_l, x_h = min((x + 8) >> 4, top) (``core.fixedpoint.msb_split_x``).

    On float codes: (x + 8) / 16 and floor are exact, so floor() is the arithmetic shift."""
    xh = torch.floor((x + 8) * (1.0 / 16)).clamp_max_(fxp.x_h_top(unsigned))
    return xh, x - 16 * xh


def msb_split_g_t(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g = 64*g_h + g_l, g_h = clamp((g + 32) >> 6, -512, 511), on float codes (exact)."""
    gh = torch.floor((g + 32) * (1.0 / 64)).clamp_(fxp.G_H_MIN, fxp.G_H_MAX)
    return gh, g - 64 * gh


def psg_decide_t(g_msb: torch.Tensor, g_exact: torch.Tensor, beta_q: int):
    """``core.golden.psg_decide`` in torch int64. Returns (sign float, predicted bool, amax)."""
    gm = g_msb.round().to(torch.int64)
    a = gm.abs()
    amax = int(a.max()) if a.numel() else 0
    predicted = ((a << fxp.BETA_FRAC_BITS) >= int(beta_q) * amax) & (gm != 0) & (int(beta_q) > 0)
    sign = torch.where(predicted, torch.sign(gm), torch.sign(g_exact.round().to(torch.int64)))
    return sign, predicted, amax



# --- exact integer convolutions on the fast float32 path ------------------------------
# float32 adds and multiplies integers exactly while every partial sum stays below 2**24,
# whatever the summation order. Each helper proves that bound from the operands (peak
# code times the largest sum of |other operand| that one output element sees) and takes
# the float32 convolution when it holds; otherwise it splits an operand into its MSB/LSB
# limbs (the predictor split) or the batch into chunks, and falls back to float64 (exact
# below 2**53, which the kernels' shape limits guarantee) when even that is not enough.
F32_EXACT = float(1 << 24)


def _peak(t: torch.Tensor) -> float:
    return float(t.abs().max()) if t.numel() else 0.0


def exact_conv2d(xq, wq, stride, padding, groups, wsum: float | None = None) -> torch.Tensor:
    """sum x*w (the forward accumulator), exact, as float64. ``wsum`` = max_o sum |w_o|."""
    if wsum is None:
        wsum = float(wq.abs().sum(dim=(1, 2, 3)).max()) if wq.numel() else 0.0
    conv = lambda a, w: F.conv2d(a, w, None, stride, padding, 1, groups)  # noqa: E731
    if _peak(xq) * wsum < F32_EXACT:
        return conv(xq.float(), wq.float()).double()
    if 16 * wsum < F32_EXACT:          # x = 16*x_h + x_l, |x_h| <= 16, |x_l| <= 8: two limbs, one call
        xh = torch.floor((xq + 8) * (1.0 / 16))
        both = conv(torch.cat([xh, xq - 16 * xh]).float(), wq.float()).double()
        return 16 * both[: xq.shape[0]] + both[xq.shape[0]:]
    return conv(xq.double(), wq.double())


def exact_conv2d_input(x_shape, wq, gq, stride, padding, groups, wsum: float | None = None) -> torch.Tensor:
    """sum g*w of the transposed convolution (the input gradient), exact, as float64.
    ``wsum`` = max_c sum_o |w[o, c]|."""
    if wsum is None:
        wsum = float(wq.abs().sum(dim=(0, 2, 3)).max()) if wq.numel() else 0.0
    n = gq.shape[0]
    convt = lambda g, shape: torch.nn.grad.conv2d_input(shape, wq.to(g.dtype), g, stride, padding, 1, groups)  # noqa: E731
    if _peak(gq) * wsum < F32_EXACT:
        return convt(gq.float(), x_shape).double()
    if 512 * wsum < F32_EXACT:         # g = 64*g_h + g_l: two limbs, one call
        gh, gl = msb_split_g_t(gq)
        both = convt(torch.cat([gh, gl]).float(), (2 * n, *x_shape[1:])).double()
        return 64 * both[:n] + both[n:]
    return convt(gq.double(), x_shape)


def _chunks(per_sample: torch.Tensor, peak: float):
    """Split samples into runs whose summed per-channel |g| keeps peak*sum below 2**24.
    Yields (start, stop, exact_in_float32)."""
    n = per_sample.shape[0]
    if float(per_sample.sum(0).max()) * peak < F32_EXACT:
        yield 0, n, True
        return
    c = torch.cumsum(per_sample.double(), 0)
    start = 0
    while start < n:
        base = c[start - 1] if start else torch.zeros_like(c[0])
        over = ((c[start:] - base).amax(1) * peak >= F32_EXACT).nonzero()
        stop = start + int(over[0]) if over.numel() else n
        if stop == start:              # one sample alone is too large: float64 for it
            yield start, start + 1, False
            start += 1
        else:
            yield start, stop, True
            start = stop


def exact_wgrad(xq, x_unsigned: bool, gq, wshape, stride, padding, groups, with_msb: bool = True):
    """(G_msb, G_exact) of the PSG rule, exact, as float64.

    Both come from the predictor splits x = 16*x_h + x_l and g = 64*g_h + g_l (exact):
    G_msb = sum x_h*g_h and G_exact = 1024*G_msb + 16*sum x_h*g_l + 64*sum x_l*g_h +
    sum x_l*g_l, as in ``core.golden.wgrad_terms``. The four sums are one convolution call on
    the stacked limbs [x_h, x_l] x [g_h, g_l] (for groups == 1). Every limb of x is at most
    15 in magnitude, so the float32 bound 15 * sum|g limb| < 2**24 covers large batches;
    where it does not, the batch is chunked (float64 for a sample that alone exceeds it).
    ``with_msb`` = False returns G_msb = None (the predictor is off).
    """
    xh, xl = msb_split_x_t(xq, x_unsigned)
    gh, gl = msb_split_g_t(gq)
    co, ci = wshape[0], wshape[1]
    stacked = groups == 1
    if stacked:
        x_st, g_st = torch.cat([xh, xl], 1), torch.cat([gh, gl], 1)
        st_shape = (2 * co, 2 * ci, *wshape[2:])
    per_sample = torch.maximum(gh.abs().sum((2, 3)), gl.abs().sum((2, 3)))   # n x co
    peak = max(_peak(xh), _peak(xl))
    hh, hl, lh, ll = (torch.zeros(wshape, dtype=torch.float64, device=gq.device) for _ in range(4))

    def cw(a, g, shape, dt):
        return torch.nn.grad.conv2d_weight(a.to(dt), shape, g.to(dt), stride, padding, 1, groups).double()

    for a, b, fast in _chunks(per_sample, peak):
        dt = torch.float32 if fast else torch.float64
        if stacked:
            r = cw(x_st[a:b], g_st[a:b], st_shape, dt)
            hh += r[:co, :ci]
            lh += r[:co, ci:]
            hl += r[co:, :ci]
            ll += r[co:, ci:]
        else:
            hh += cw(xh[a:b], gh[a:b], wshape, dt)
            lh += cw(xl[a:b], gh[a:b], wshape, dt)
            hl += cw(xh[a:b], gl[a:b], wshape, dt)
            ll += cw(xl[a:b], gl[a:b], wshape, dt)
    g_exact = 1024 * hh + 16 * hl + 64 * lh + ll
    return (hh if with_msb else None), g_exact


class _PSGConvFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, layer: "PSGConv2d"):
        xq, s_x = layer._quantize_input(x)
        wq = layer.w_codes
        acc_scale = s_x.value * layer.w_scale.value
        acc = exact_conv2d(xq, wq, layer.stride, layer.padding, layer.groups, layer._wsum_fwd)
        y_codes, s_y = layer._requantize_output(acc, acc_scale, xq)
        ctx.layer = layer
        ctx.save_for_backward(xq)
        return (y_codes.double() * s_y.value).to(x.dtype)   # dequantise as core does

    @staticmethod
    def backward(ctx, gy):
        layer: PSGConv2d = ctx.layer
        (xq,) = ctx.saved_tensors
        s_gy = fxp.scale_for(float(gy.abs().max()) if gy.numel() else 0.0, fxp.INT16)
        gq = quantize_t(gy, s_gy, fxp.INT16)
        gx = None
        if ctx.needs_input_grad[0]:
            gx = layer._grad_input(gq, s_gy, xq.shape).to(gy.dtype)
        gw = None
        if ctx.needs_input_grad[1]:
            gw = layer._sign_grad(xq, gq).to(layer.weight.dtype)
        return gx, gw, None


class PSGConv2d(nn.Module):
    """A bias-free k x k convolution (k in 1, 3; stride 1, 2) in the fixed-point contract.

    ``beta`` > 0: PSG (predictor decides where confident); ``beta`` = 0: every sign from
    the exact gradient (the 8-bit/16-bit baseline without PSG). ``x_unsigned``: the input
    comes out of a ReLU (uint8 codes), else int8.

    State (all in ``state_dict``): ``w_master`` int32 and ``frac_bits`` (value = W*2**-F),
    the scale maxima ``x_max``/``y_max``/``gx_max`` (NaN = not yet set). ``weight`` is a float
    view of the master weights (for optimisers, inspection and checkpoints of the float
    model); the backward writes the update sign into ``weight.grad``.
    """

    pass_bits = ((8, 8), (16, 8), (8, 16))   # fwd, bwd-data, bwd-weight operand widths

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, groups: int = 1, *, beta: float = 0.05,
                 x_unsigned: bool = True):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        # the kernels' shape limits, checked once here with a nominal 8x8 input
        ConvShape(1, in_channels, 8, 8, out_channels, kernel_size, stride, padding)
        if in_channels % groups or out_channels % groups:
            raise ShapeError(f"groups={groups} must divide {in_channels} and {out_channels} channels")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.groups = kernel_size, stride, padding, groups
        self.x_unsigned = bool(x_unsigned)
        self.beta_q = fxp.beta_to_fixed(beta) if beta > 0 else 0
        w = torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size, dtype=torch.float64)
        nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
        frac = fxp.master_frac_bits(float(w.abs().max()))
        self.register_buffer("w_master", torch.round(torch.ldexp(w, torch.tensor(frac))).to(torch.int32))
        self.register_buffer("frac_bits", torch.tensor(frac, dtype=torch.int64))
        for name in ("x_max", "y_max", "gx_max"):
            self.register_buffer(name, torch.tensor(NAN, dtype=torch.float64))
        self.weight = nn.Parameter(torch.zeros(w.shape, dtype=torch.float32))
        self.n_predicted = 0      # weights decided by the predictor, since reset_stats()
        self.n_decided = 0        # weight signs decided (predictor or exact)
        self.pending_wgrad: list[tuple[int, int]] = []   # (weight-grad MACs, exact MACs) per backward
        self._rederive()

    # -- master weights ---------------------------------------------------------------
    def _rederive(self) -> None:
        """int8 compute copy from the masters (``weight_codes``), and the float view."""
        codes, scale = fxp.weight_codes(self.w_master.cpu().numpy(), int(self.frac_bits))
        self.w_scale = scale
        self.w_codes = torch.from_numpy(codes.astype(np.float32)).to(self.w_master.device)
        a = self.w_codes.abs()
        self._wsum_fwd = float(a.sum(dim=(1, 2, 3)).max())   # bounds for the exact float32 path
        self._wsum_bwd = float(a.sum(dim=(0, 2, 3)).max())
        with torch.no_grad():
            self.weight.copy_(torch.ldexp(self.w_master.double(), -self.frac_bits.double()).float())

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._rederive()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._rederive()
        return out

    @torch.no_grad()
    def sign_step(self, lr: float, weight_decay: float) -> None:
        """The device's update: W <- sat(W - lr_q*sign - ((W*wd_q + 2**29) >> 30)), then
        re-derive the int8 copy. Calls ``core.golden.sign_update`` itself: one rule."""
        if self.weight.grad is None:
            return
        f = int(self.frac_bits)
        lr_q, wd_q = fxp.lr_to_fixed(lr, f), fxp.decay_to_fixed(lr, weight_decay)
        sign = self.weight.grad.detach().cpu().numpy().astype(np.int8)
        new = sign_update(self.w_master.cpu().numpy(), sign, lr_q, wd_q)
        self.w_master.copy_(torch.from_numpy(new))
        self._rederive()

    # -- passes -----------------------------------------------------------------------
    def _quantize_input(self, x: torch.Tensor):
        fmt = fxp.UINT8 if self.x_unsigned else fxp.INT8
        bmax = float(x.detach().abs().max()) if x.numel() else 0.0
        if self.training or math.isnan(float(self.x_max)):
            self.x_max.fill_(_running(float(self.x_max), bmax) if self.training else bmax)
        s_x = fxp.scale_for(float(self.x_max), fmt)
        return quantize_t(x.detach(), s_x, fmt), s_x

    def _requantize_output(self, acc: torch.Tensor, acc_scale: float, xq: torch.Tensor):
        if math.isnan(float(self.y_max)):
            # first call: the exact bound max_o sum|w| * max|x| never saturates; measure it
            peak = float(xq.abs().max()) if xq.numel() else 0.0
            bound = acc_scale * peak * self._wsum_fwd
            s_cal = fxp.scale_for(bound, fxp.INT8)
            yc = requantize_t(acc, fxp.requant_multiplier(acc_scale, s_cal), fxp.INT8)
            ymax = float(yc.abs().max()) * s_cal.value if yc.numel() else 0.0
            if ymax > 0:
                self.y_max.fill_(ymax)
        s_y = fxp.scale_for(0.0 if math.isnan(float(self.y_max)) else float(self.y_max), fxp.INT8)
        yc = requantize_t(acc, fxp.requant_multiplier(acc_scale, s_y), fxp.INT8)
        if self.training and yc.numel():
            top = int(yc.abs().max())
            ym = float(self.y_max)
            est = 2 * ym if (top >= fxp.INT8.hi and not math.isnan(ym)) else top * s_y.value
            if est > 0:
                self.y_max.fill_(_running(ym, est))
        return yc, s_y

    def _grad_input(self, gq: torch.Tensor, s_gy: fxp.Dyadic, x_shape) -> torch.Tensor:
        acc_scale = s_gy.value * self.w_scale.value
        if math.isnan(float(self.gx_max)):
            peak = float(gq.abs().max()) if gq.numel() else 0.0
            self.gx_max.fill_(acc_scale * peak * self._wsum_bwd)
        s_gx = fxp.scale_for(float(self.gx_max), fxp.INT16)
        acc = exact_conv2d_input(x_shape, self.w_codes, gq, self.stride, self.padding, self.groups,
                                  self._wsum_bwd)
        gxc = requantize_t(acc, fxp.requant_multiplier(acc_scale, s_gx), fxp.INT16)
        top = int(gxc.abs().max()) if gxc.numel() else 0
        if top >= fxp.INT16.hi:
            self.gx_max.fill_(2 * float(self.gx_max))
        elif top > 0:
            self.gx_max.fill_(top * s_gx.value)       # this batch's max, for the next batch
        return gxc.double() * s_gx.value

    def _sign_grad(self, xq: torch.Tensor, gq: torch.Tensor) -> torch.Tensor:
        wshape = tuple(self.w_master.shape)
        g_msb, g_exact = exact_wgrad(xq, self.x_unsigned, gq, wshape, self.stride, self.padding,
                                     self.groups, with_msb=bool(self.beta_q))
        if g_msb is None:
            g_msb = torch.zeros_like(g_exact)
        sign, predicted, _ = psg_decide_t(g_msb, g_exact, self.beta_q)
        n_pred = int(predicted.sum())
        self.n_predicted += n_pred
        self.n_decided += sign.numel()
        per_weight = gq.shape[0] * gq.shape[2] * gq.shape[3]   # MACs feeding one weight
        self.pending_wgrad.append((per_weight * sign.numel(), per_weight * (sign.numel() - n_pred)))
        return sign.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PSGConvFn.apply(x, self.weight, self)

    def reset_stats(self) -> None:
        self.n_predicted = self.n_decided = 0

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}, "
                f"groups={self.groups}, beta_q={self.beta_q}, x={'uint8' if self.x_unsigned else 'int8'}")


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

    def __init__(self, *args, x_unsigned: bool = True, **kw):
        kw.setdefault("bias", False)
        super().__init__(*args, **kw)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.x_unsigned = bool(x_unsigned)
        self.register_buffer("x_max", torch.tensor(NAN, dtype=torch.float64))

    def forward(self, x):
        bmax = float(x.detach().abs().max()) if x.numel() else 0.0
        if self.training or math.isnan(float(self.x_max)):
            self.x_max.fill_(_running(float(self.x_max), bmax) if self.training else bmax)
        xq = _FakeQuant.apply(x, float(self.x_max), fxp.UINT8 if self.x_unsigned else fxp.INT8)
        wq = _FakeQuant.apply(self.weight, float(self.weight.detach().abs().max()), fxp.INT8)
        return self._conv_forward(xq, wq, self.bias)
