"""The PSG layer's passes without reading a value back to the host: what runs on a GPU.

``psg._PSGConvFn`` takes these passes where the layer's tensors are not on the CPU (or where
``psg.set_sync_free`` asks for them, which is how the CPU tests check them). They compute the
same codes, scales, signs and counts as the host passes in ``psg``, bit for bit, with three
differences in *how*:

* every scale is a ``dyadic_t.DyadicT`` (0-d int64 tensors m, s) computed on the device by
  the same float64 steps as ``core.fixedpoint``; the running maxima stay device tensors and
  are updated with ``torch.where`` instead of Python branches on their values;
* the choice between one float32 convolution, limbs and float64 for each integer sum is
  made from bounds known without looking at the data (the code ranges, and 127 times the
  fan-in for the weights): every one of those choices is exact, so only the cost differs;
* the weight codes are re-derived from the int32 masters on the device.

What the host raises on (a non-finite batch max, a scale out of range) is collected as a
device flag per layer and raised, as the same one-line error, when the step's counts are
read (``read_step_counts``, once per step through the work meter) or when ``n_predicted``
is read.

Syncs that remain, each outside the steady state or outside the layer's passes: a running
maximum that may still be unset (NaN) is checked on the host until it is seen set (the
first step); the "mean_sample_max" activation policy sums the per-sample maxima exactly on
the host (``math.fsum``); the work meter reads the predictor counts once per step.
"""
from __future__ import annotations

import math

import torch

from ..core import fixedpoint as fxp
from . import dyadic_t as dt
from . import psg

_M_LIMIT = float(1 << fxp.MANT_BITS)        # multipliers with s > 0 stay below this (from_float)


def absmax(t: torch.Tensor) -> torch.Tensor:
    """max |t| as a 0-d float64 tensor on t's device (0 for an empty t; NaN propagates)."""
    if not t.numel():
        return torch.zeros((), dtype=torch.float64, device=t.device)
    lo, hi = torch.aminmax(t)
    return torch.maximum(-lo, hi).double()


def running(prev: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """``psg._running`` on tensors: the same two float64 products and one sum (no fused
    multiply-add: separate operations)."""
    ema = prev * psg.RUNNING_MOMENTUM + batch * (1 - psg.RUNNING_MOMENTUM)
    return torch.where(torch.isnan(prev), batch, ema)


def _flag(layer, bad: torch.Tensor, what: str) -> None:
    """OR ``bad`` into the layer's flag for ``what`` (a device bool, read later)."""
    flags = layer._sf_bad if layer._sf_bad is not None else {}
    flags[what] = bad if what not in flags else flags[what] | bad
    layer._sf_bad = flags


def _pending_flags(layers):
    return [(m, what, bad) for m in layers if m._sf_bad for what, bad in m._sf_bad.items()]


def _raise(layer, what: str) -> None:
    raise ValueError(f"{layer.__class__.__name__}: {what} (a non-finite value reached the layer: "
                     "lower the learning rate or check the input)")


def raise_errors(layer) -> None:
    """Raise what the host passes would have raised (reads the layer's flags: one sync)."""
    flags = _pending_flags([layer])
    layer._sf_bad = None
    if flags:
        got = torch.stack([b.reshape(()) for _, _, b in flags]).tolist()
        for (_, what, _), b in zip(flags, got):
            if b:
                _raise(layer, what)


def _maybe_unset(layer, name: str) -> bool:
    """Whether buffer ``name`` may still be NaN: checked on the host (a sync) until seen set."""
    if name in layer._sf_known:
        return False
    if torch.isnan(getattr(layer, name)).item():
        return True
    layer._sf_known.add(name)
    return False


def quantize(x: torch.Tensor, scale: dt.DyadicT, fmt: fxp.QFormat, out: torch.Tensor) -> torch.Tensor:
    """``psg.quantize_t`` with a device scale: floor(x / scale + 1/2) in float64, saturated,
    NaN to 0 (``fused.quantize_torch``, the same operations)."""
    out.copy_(torch.clamp(torch.floor(x.detach().double() / scale.value + 0.5), fmt.lo, fmt.hi))
    return out.nan_to_num_(nan=0.0)


def requantize_parts(layer, parts, mult: dt.DyadicT, fmt: fxp.QFormat, out: torch.Tensor, dequant, peak: float):
    """``psg._requantize_parts`` with a device multiplier: returns max |code| as a 0-d float64
    tensor. The float64 form is exact while |acc| * M < 2**52; ``peak`` bounds |acc| and M <
    2**15 whenever its shift is positive -- a multiplier of 2**15 or more (an output scale
    2**15 times finer than the accumulator's) is flagged instead of computed."""
    if peak * _M_LIMIT >= 2.0 ** 52 or len(parts) > 2:
        raise ValueError(f"accumulator bound {peak:.3g} is beyond the sync-free requantisation "
                         "(|acc| * 2**15 must stay below 2**52)")
    _flag(layer, mult.m >= 1 << fxp.MANT_BITS, "requantisation multiplier out of the sync-free range")
    c = mult.value
    # the parts hold integers; rounding them first (a no-op on integers) keeps a GPU
    # convolution computed by a transform (FFT, Winograd: results off by far less than 1/2
    # at these magnitudes in float64) from moving a code across a rounding boundary
    acc = parts[0][0].double().round() * (parts[0][1] * c)
    if len(parts) > 1:
        acc = acc + parts[1][0].double().round() * (parts[1][1] * c)
    half = torch.where(mult.s > 0, 0.5, 0.0).to(torch.float64)
    q = torch.clamp(torch.floor(acc + half), fmt.lo, fmt.hi)
    out.copy_(q * dequant)
    return q.abs().max() if q.numel() else torch.zeros((), dtype=torch.float64, device=q.device)


def rederive(layer) -> None:
    """``fxp.weight_codes`` on the device: codes = sat((W*M + 2**(S-1)) >> S) with the
    multiplier nearest 2**-F / scale and scale = scale_for(max|W| * 2**-F, INT8)."""
    w = layer.w_master.to(torch.int64)
    f = layer._frac
    dev = w.device
    wmax = w.abs().max() if w.numel() else torch.zeros((), dtype=torch.int64, device=dev)
    scale, bad = dt.scale_for(wmax.double() * math.ldexp(1.0, -f), fxp.INT8)
    # torch.full fills on the device; torch.tensor would copy from the host and wait for it
    mult, bad_m = dt.requant_multiplier(torch.full((), math.ldexp(1.0, -f), dtype=torch.float64, device=dev), scale)
    _flag(layer, bad | ((wmax > 0) & bad_m), "weight scale out of range")
    s = mult.s
    half = torch.where(s > 0, torch.bitwise_left_shift(torch.ones_like(s), (s - 1).clamp(min=0)), 0)
    codes = torch.bitwise_right_shift(w * mult.m + half, s).clamp_(fxp.INT8.lo, fxp.INT8.hi)
    zero = wmax == 0                    # all-zero masters: zero codes, scale 1 (weight_codes)
    layer._w_scale_t = dt.DyadicT(torch.where(zero, 1, scale.m), torch.where(zero, 0, scale.s))
    layer.w_codes = codes.to(torch.float32)
    a = layer.w_codes.abs()
    # the measured sums (the scale calibrations use them, as the host does) as tensors, and
    # data-free bounds for choosing how to compute each integer sum
    zero_sum = torch.zeros((), dtype=torch.float64, device=dev)
    layer._wsum_fwd_t = a.sum(dim=(1, 2, 3)).max().double() if a.numel() else zero_sum
    layer._wsum_bwd_t = a.sum(dim=(0, 2, 3)).max().double() if a.numel() else zero_sum
    k2 = layer.kernel_size ** 2
    layer._wsum_fwd = float(-fxp.INT8.lo * (layer.in_channels // layer.groups) * k2)
    layer._wsum_bwd = float(-fxp.INT8.lo * layer.out_channels * k2)
    layer.w_scale = None                # the host form is not kept: reading it would sync
    with torch.no_grad():
        torch.mul(layer.w_master, math.ldexp(1.0, -f), out=layer.weight.data)


def forward(ctx, x: torch.Tensor, layer) -> torch.Tensor:
    fmt = fxp.UINT8 if layer.x_unsigned else fxp.INT8
    xd = x.detach()
    if layer.act_scale == "batch_max" or not xd.numel():
        stat = absmax(xd)
    else:                               # the exact mean of per-sample maxima: math.fsum on the host
        stat = torch.full((), psg._act_stats(layer, xd)[1], dtype=torch.float64, device=xd.device)
    if layer.training:
        layer.x_max.copy_(running(layer.x_max, stat))
        layer._sf_known.add("x_max")    # set now (a NaN batch max is flagged below instead)
    elif _maybe_unset(layer, "x_max"):
        layer.x_max.copy_(torch.where(torch.isnan(layer.x_max), stat, layer.x_max))
    s_x, bad = dt.scale_for(layer.x_max, fmt)
    _flag(layer, bad, "the running max of the input is not finite")
    xq = quantize(xd, s_x, fmt, torch.empty(xd.shape, dtype=torch.float32, device=xd.device))
    wq, w_scale = layer.w_codes, layer._w_scale_t
    acc_scale = s_x.value * w_scale.value
    x_peak = float(fmt.hi if layer.x_unsigned else -fmt.lo)
    if layer.exact:
        acc = psg.conv2d_parts(xq, wq, layer.stride, layer.padding, layer.groups, layer._wsum_fwd, peak=x_peak)
    else:
        acc = psg.fast_conv2d_parts(xq, wq, layer.stride, layer.padding, layer.groups)
    y = _requantize_output(layer, acc, acc_scale, xq, x.dtype, x_peak)
    ctx.layer, ctx.sync_free = layer, True
    ctx.w = (wq, w_scale, layer._wsum_bwd_t, layer._wsum_bwd)
    ctx.save_for_backward(xq)
    return y


def _requantize_output(layer, acc, acc_scale, xq, dtype, x_peak: float) -> torch.Tensor:
    shape = acc[0][0].shape
    peak = x_peak * layer._wsum_fwd
    i8 = fxp.INT8
    if _maybe_unset(layer, "y_max"):
        # first call: the exact bound max_o sum|w| * max|x| never saturates; measure it
        bound = acc_scale * absmax(xq) * layer._wsum_fwd_t
        s_cal, bad = dt.scale_for(bound, i8)
        mult, bad_m = dt.requant_multiplier(acc_scale, s_cal)
        _flag(layer, bad | bad_m, "output scale calibration out of range")
        top = requantize_parts(layer, acc, mult, i8, psg._scratch.get("y codes", shape, torch.float32, xq.device),
                               1.0, peak)
        ymax = s_cal.value * top
        layer.y_max.copy_(torch.where(ymax > 0, ymax, layer.y_max))
    ym = layer.y_max.clone()
    unset = torch.isnan(ym)
    s_y, bad = dt.scale_for(torch.where(unset, 0.0, ym), i8)
    mult, bad_m = dt.requant_multiplier(acc_scale, s_y)
    _flag(layer, bad | bad_m, "output scale out of range")
    y = psg._output_buffer(acc, dtype)
    top = requantize_parts(layer, acc, mult, i8, y, s_y.value, peak)
    if layer.training and y.numel():
        est = torch.where((top >= i8.hi) & ~unset, 2 * ym, top * s_y.value)
        layer.y_max.copy_(torch.where(est > 0, running(ym, est), ym))
    return y


def _grad_input(layer, gq, s_gy, x_shape, dtype, w, acc=None) -> torch.Tensor:
    codes, w_scale, wsum_t, wsum_bound = w
    i16 = fxp.INT16
    acc_scale = s_gy.value * w_scale.value
    if _maybe_unset(layer, "gx_max"):
        layer.gx_max.copy_(torch.where(torch.isnan(layer.gx_max), acc_scale * absmax(gq) * wsum_t, layer.gx_max))
    s_gx, bad = dt.scale_for(layer.gx_max, i16)
    mult, bad_m = dt.requant_multiplier(acc_scale, s_gx)
    _flag(layer, bad | bad_m, "input-gradient scale out of range")
    if acc is None:
        if layer.exact:
            acc = psg.conv2d_input_parts(x_shape, codes, gq, layer.stride, layer.padding, layer.groups, wsum_bound,
                                         peak=float(-i16.lo))
        else:
            acc = psg.fast_conv2d_input_parts(x_shape, codes, gq, layer.stride, layer.padding, layer.groups)
    gx = psg._output_buffer(acc, dtype)
    top = requantize_parts(layer, acc, mult, i16, gx, s_gx.value, -i16.lo * wsum_bound)
    gmax = layer.gx_max
    layer.gx_max.copy_(torch.where(top >= i16.hi, 2 * gmax, torch.where(top > 0, top * s_gx.value, gmax)))
    return gx


def backward(ctx, gy):
    layer = ctx.layer
    (xq,) = ctx.saved_tensors
    s_gy, bad = dt.scale_for(absmax(gy), fxp.INT16)
    _flag(layer, bad, "the output gradient is not finite")
    gq = quantize(gy, s_gy, fxp.INT16, psg._scratch.get("gy codes", gy.shape, torch.float32, gy.device))
    gx = gw = None
    if not layer.exact and ctx.needs_input_grad[0] and ctx.needs_input_grad[1]:
        acc_x, g_exact = psg.fast_grads(xq, ctx.w[0], gq, layer.stride, layer.padding, layer.groups)
        gx = _grad_input(layer, gq, s_gy, xq.shape, gy.dtype, ctx.w, acc=((acc_x, 1),))
        gw = layer._sign_grad(xq, gq, g_exact=g_exact).to(layer.weight.dtype)
        return gx, gw, None
    if ctx.needs_input_grad[0]:
        gx = _grad_input(layer, gq, s_gy, xq.shape, gy.dtype, ctx.w)
    if ctx.needs_input_grad[1]:
        gw = layer._sign_grad(xq, gq, static=True).to(layer.weight.dtype)
    return gx, gw, None


def read_step(layers) -> None:
    """After a backward: the MAC counts the layers' backward passes left as device tensors
    become ints, and the layers' error flags are checked, in one transfer for the whole step
    (raising the first layer's error as the host passes would have)."""
    at = [(m, i, j) for m in layers for i, pair in enumerate(m.pending_wgrad)
          for j, v in enumerate(pair) if isinstance(v, torch.Tensor)]
    flagged = _pending_flags(layers)
    for m in layers:
        m._sf_bad = None
    if not at and not flagged:
        return
    vals = [m.pending_wgrad[i][j] for m, i, j in at] + [b for _, _, b in flagged]
    dev = vals[0].device                # one transfer (a pipeline's stages may differ)
    values = torch.stack([v.reshape(()).to(dev, torch.int64) for v in vals]).tolist()
    for (m, i, j), v in zip(at, values):
        pair = list(m.pending_wgrad[i])
        pair[j] = int(v)
        m.pending_wgrad[i] = tuple(pair)
    for (m, what, _), v in zip(flagged, values[len(at):]):
        if v:
            _raise(m, what)
