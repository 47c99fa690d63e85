"""A convolution layer whose three passes run in a conv *backend* (the kernels), in fixed point.

The layer owns the int32 master weights, re-derives the int8 compute copy after every PSG
update (``core.fixedpoint.weight_codes``) and keeps the scale state of its tensors. The policy
for each scale (one dyadic scale per tensor, full range, ``core.fixedpoint.scale_for``):

* input x (uint8 after a ReLU, int8 for the network input): *running max*, an exponential
  moving average (momentum 0.9) of the batch's max |x| ("batch_max") or of the mean over its
  samples of each sample's max |x| ("mean_sample_max"; ``core.fixedpoint.act_batch_max``),
  including the current batch; the values above it saturate. Evaluation uses the running
  value as it stands.
* output y (int8, the kernel requantises the accumulator before the ARM sees it): running max
  as for x, estimated from the codes after the call (the float max is only known after the
  kernel has run). When the top code was hit, the estimate is twice the range, so a range that
  is too small grows by 10% a step. The very first call calibrates: it runs once with the
  exact worst-case bound (max_o sum |w| * max|x|), measures, and runs again.
* output gradient g_y (int16): max |g_y| of the current batch (known exactly on the ARM).
* input gradient g_x (int16, requantised in the kernel): the previous batch's max |g_x|
  (doubled when it hit the top code); the first call uses the exact worst-case bound.

Nothing here computes a convolution: every MAC goes through ``backend``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.fixedpoint import (
    ACT_SCALE_DEFAULT,
    INT8,
    INT16,
    UINT8,
    Dyadic,
    act_batch_max,
    check_act_scale,
    dequantize,
    master_frac_bits,
    quantize,
    requant_multiplier,
    scale_for,
    weight_codes,
)
from ..core.shapes import ConvShape
from .nn_layers import ArmTally
from .nn_tally import KernelTally

RUNNING_MOMENTUM = 0.9


def _running(prev: float | None, batch: float) -> float:
    return batch if prev is None else RUNNING_MOMENTUM * prev + (1 - RUNNING_MOMENTUM) * batch


@dataclass
class ConvCache:
    xq: np.ndarray            # the input codes the kernel saw (full batch; listed rows filled)
    idx: np.ndarray | None    # the sample list (None = every sample)
    n: int
    in_hw: tuple[int, int]


class QConv:
    """k x k convolution (no bias: BN follows) through the backend's three kernels."""

    def __init__(self, name: str, ci: int, co: int, k: int, stride: int, rng: np.random.Generator,
                 x_unsigned: bool = True, act_scale: str = ACT_SCALE_DEFAULT):
        self.name = name
        self.act_scale = check_act_scale(act_scale)
        self.ci, self.co, self.k, self.stride, self.pad = ci, co, k, stride, k // 2
        self.x_fmt = UINT8 if x_unsigned else INT8
        # Kaiming normal, fan_out mode (as torchvision's ResNets)
        std = math.sqrt(2.0 / (co * k * k))
        w = rng.standard_normal((co, ci, k, k)) * std
        self.frac_bits = master_frac_bits(float(np.abs(w).max()))
        self.w_master = np.round(np.ldexp(w, self.frac_bits)).astype(np.int32)
        self._rederive()
        # scale state (floats: the max each tensor's full-range scale is chosen from)
        self.x_max: float | None = None
        self.y_max: float | None = None
        self.gx_max: float | None = None

    # -- state -------------------------------------------------------------------------
    def _rederive(self) -> None:
        self.w_codes, self.w_scale = weight_codes(self.w_master, self.frac_bits)
        self._w_abs = np.abs(self.w_codes.astype(np.int64))

    def state(self) -> dict[str, np.ndarray]:
        f = lambda v: np.float64(np.nan if v is None else v)   # noqa: E731
        return {"w_master": self.w_master, "frac_bits": np.int64(self.frac_bits),
                "x_max": f(self.x_max), "y_max": f(self.y_max), "gx_max": f(self.gx_max)}

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        g = lambda v: None if np.isnan(v) else float(v)         # noqa: E731
        if d["w_master"].shape != self.w_master.shape or d["w_master"].dtype != np.int32:
            raise ValueError(f"{self.name}: master weights {d['w_master'].dtype}{d['w_master'].shape} "
                             f"do not fit this model ({self.w_master.dtype}{self.w_master.shape})")
        self.w_master = d["w_master"].copy()
        self.frac_bits = int(d["frac_bits"])
        self.x_max, self.y_max, self.gx_max = g(d["x_max"]), g(d["y_max"]), g(d["gx_max"])
        self._rederive()

    def weights_float(self) -> np.ndarray:
        """The master weights as floats (for inspection and reference computations)."""
        return np.ldexp(self.w_master.astype(np.float64), -self.frac_bits)

    def shape(self, n: int, h: int, w: int) -> ConvShape:
        return ConvShape(n, self.ci, h, w, self.co, self.k, self.stride, self.pad)

    # -- forward -----------------------------------------------------------------------
    def forward(self, x: np.ndarray, idx: np.ndarray | None, n: int, train: bool, backend,
                tally: KernelTally, arm: ArmTally):
        """x: float32 rows of the listed samples (all n when idx is None). Returns float32 rows."""
        h, w = x.shape[2], x.shape[3]
        shape = self.shape(n, h, w)
        n_act = x.shape[0]
        if self.act_scale == "batch_max" or not x.size:
            stat = float(np.abs(x).max()) if x.size else 0.0
        else:                                   # each sample's max |x| in the same pass, then their mean
            stat = act_batch_max(np.abs(x).reshape(n_act, -1).max(axis=1), self.act_scale)
            arm.ops("add", n_act)
        arm.ops("maxabs", x.size)
        if train or self.x_max is None:
            self.x_max = _running(self.x_max, stat) if train else stat
        s_x = scale_for(self.x_max, self.x_fmt)
        xq = np.zeros(shape.x_shape, self.x_fmt.dtype)
        if idx is None:
            xq[...] = quantize(x, s_x, self.x_fmt)
        else:
            xq[idx] = quantize(x, s_x, self.x_fmt)
        arm.ops("quantize", x.size)
        acc_scale = s_x.value * self.w_scale.value
        if self.y_max is None:
            # calibration: the exact bound on |acc| never saturates; measure, then run for real
            peak = int(np.abs(xq.astype(np.int64)).max()) if xq.size else 0
            bound = acc_scale * peak * float(self._w_abs.sum(axis=(1, 2, 3)).max())
            s_cal = scale_for(bound, INT8)
            y = self._fwd_call(backend, xq, s_cal, acc_scale, idx, shape, n_act, tally)
            ya = y if idx is None else y[idx]
            self.y_max = float(np.abs(ya.astype(np.int32)).max()) * s_cal.value if ya.size else 0.0
            if self.y_max <= 0:
                self.y_max = None
        s_y = scale_for(self.y_max or 0.0, INT8)
        y = self._fwd_call(backend, xq, s_y, acc_scale, idx, shape, n_act, tally)
        ya = y if idx is None else y[idx]
        if train and ya.size:
            top = int(np.abs(ya.astype(np.int32)).max())
            est = 2 * self.y_max if (top >= INT8.hi and self.y_max) else top * s_y.value
            self.y_max = _running(self.y_max, est) if est > 0 else self.y_max
        arm.ops("dequantize", ya.size)
        return dequantize(ya, s_y), ConvCache(xq, idx, n, (h, w))

    def _fwd_call(self, backend, xq, s_y: Dyadic, acc_scale: float, idx, shape, n_act, tally):
        mult = requant_multiplier(acc_scale, s_y)
        y = backend.conv_fwd(xq, self.w_codes, None, mult, stride=self.stride, pad=self.pad,
                             relu=False, samples=idx, out=None)
        tally.kernel("conv_fwd", shape, n_act, x_unsigned=self.x_fmt.unsigned, layer=self.name)
        return y

    # -- backward ----------------------------------------------------------------------
    def backward(self, gy: np.ndarray, cache: ConvCache, backend, tally: KernelTally, arm: ArmTally,
                 *, lr_q: int, wd_q: int, beta_q: int, need_gx: bool = True):
        """gy: float32 rows of the listed samples. Updates the master weights (PSG + sign step)
        and returns (g_x rows or None, number of weights decided by the predictor)."""
        idx, n = cache.idx, cache.n
        h, w = cache.in_hw
        shape = self.shape(n, h, w)
        n_act = gy.shape[0]
        gmax = float(np.abs(gy).max()) if gy.size else 0.0
        arm.ops("maxabs", gy.size)
        s_gy = scale_for(gmax, INT16)
        gyq = np.zeros(shape.y_shape, np.int16)
        if idx is None:
            gyq[...] = quantize(gy, s_gy, INT16)
        else:
            gyq[idx] = quantize(gy, s_gy, INT16)
        arm.ops("quantize", gy.size)

        gx = None
        if need_gx:
            acc_scale = s_gy.value * self.w_scale.value
            if self.gx_max is None:
                peak = int(np.abs(gyq.astype(np.int64)).max())
                self.gx_max = acc_scale * peak * float(self._w_abs.sum(axis=(0, 2, 3)).max())
            s_gx = scale_for(self.gx_max, INT16)
            mult = requant_multiplier(acc_scale, s_gx)
            gxq = backend.conv_bwd_data(gyq, self.w_codes, mult, in_hw=(h, w), stride=self.stride,
                                        pad=self.pad, samples=idx, out=None)
            tally.kernel("conv_bwd_data", shape, n_act, layer=self.name)
            gxa = gxq if idx is None else gxq[idx]
            top = int(np.abs(gxa.astype(np.int32)).max()) if gxa.size else 0
            if top >= INT16.hi:
                self.gx_max = 2 * self.gx_max
            elif top > 0:
                self.gx_max = top * s_gx.value          # this batch's max, for the next batch
            arm.ops("dequantize", gxa.size)
            gx = dequantize(gxa, s_gx)

        res = backend.conv_bwd_weight_psg(cache.xq, gyq, self.w_master, stride=self.stride,
                                          pad=self.pad, beta_q=beta_q, lr_q=lr_q, wd_q=wd_q,
                                          samples=idx)
        n_pred = res.n_predicted
        tally.kernel("conv_bwd_weight_psg", shape, n_act, n_predicted=n_pred,
                     x_unsigned=self.x_fmt.unsigned, layer=self.name, n_weights=self.w_master.size,
                     predictor_on=beta_q > 0, predicted=res.predicted)
        self.w_master = np.asarray(res.w_master, dtype=np.int32)
        self._rederive()
        return gx, n_pred
