"""BN, ReLU, the residual add and the requantisation between two convs, on the fabric's block
operations (``core.block_ops``, docs/fixed-point.md section 9), with the ARM's per-channel folds.

Forward, per BN layer: the conv's output stage has summed y and y^2 per channel; the ARM turns
the sums into the batch mean and variance (float64, running statistics updated as torch does),
folds BN, the shortcut's scale and the output scale into ``bn_act``'s integer coefficients
(``fold_bn_act``), and the fabric writes the next conv's uint8 input codes with their pooled
sums and per-sample maxima. Backward: ``bn_bwd_reduce`` masks the output gradient by the ReLU
and reduces it per channel (and per sample for a gate), the ARM folds BN backward
(``fold_bn_bwd``, which also gives dgamma and dbeta), and ``bn_bwd_apply`` writes the conv's
int16 output gradient. The ARM's work is a few operations per channel, tallied as such.

Scale of bn_act's output (the next conv's x; docs/device-training.md): a running max
(momentum 0.9) of the batch statistic ``act_batch_max`` over the per-sample maxima the op
returns, updated after the call for the next batch; a batch whose statistic saturated counts
as twice the range (as a conv's y). The very first call calibrates: it runs with the output
bound ``act_bound``, measures, and runs again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.block_ops import (IDENTITY, Shortcut, act_bound, channel_moments, fold_bn_act, fold_bn_bwd,
                              fold_combine)
from ..core.fixedpoint import UINT8, Dyadic, act_batch_max, scale_for
from .nn_layers import ArmTally
from .nn_qconv import running
from .nn_tally import KernelTally


@dataclass
class Codes:
    """An activation between layers: uint8 codes (n, c, h, w), their scale and bn_act's
    per-(sample, channel) sums of the codes (the average pool's numerator)."""
    q: np.ndarray
    scale: Dyadic
    pooled: np.ndarray

    def mean(self, arm: ArmTally) -> np.ndarray:
        """Each sample's per-channel mean activation (n, c) float32, from the pooled sums."""
        arm.ops("pooled", self.pooled.size)
        hw = self.q.shape[2] * self.q.shape[3]
        return np.multiply(self.pooled, self.scale.value / hw, dtype=np.float64).astype(np.float32)


@dataclass
class Grad:
    """The gradient of an activation, as the fabric holds it: ``a`` int16 codes at the
    activation's geometry (the next conv's input gradient) and/or ``b`` int16 codes at the next
    block's output geometry that reach the activation through that block's option-A shortcut
    (``b_shortcut``): bn_bwd_reduce sums the two (``fold_combine``), no ARM add."""
    a: np.ndarray | None
    s_a: Dyadic | None
    b: np.ndarray | None = None
    s_b: Dyadic | None = None
    b_shortcut: Shortcut = IDENTITY


@dataclass
class BNCache:
    y: np.ndarray             # the conv's int8 output codes
    s_y: Dyadic
    o: np.ndarray             # bn_act's uint8 output codes
    s_o: Dyadic
    mean: np.ndarray          # float64 (c,): the batch statistics BN normalised with
    inv: np.ndarray
    idx: np.ndarray | None
    count: int                # listed samples x H x W


class BatchNorm:
    """Per-channel BN over (N, H, W), run by the fabric's block operations; the parameters,
    running statistics and the output's running max live here (float32 / float)."""

    EPS = 1e-5
    MOMENTUM = 0.1        # running = (1 - m) * running + m * batch, as in torch

    def __init__(self, channels: int, act_scale: str, name: str = ""):
        self.name = name                      # as ResNet.bns() names it (the profile's label)
        self.gamma = np.ones(channels, np.float32)
        self.beta = np.zeros(channels, np.float32)
        self.running_mean = np.zeros(channels, np.float32)
        self.running_var = np.ones(channels, np.float32)
        self.act_scale = act_scale
        self.out_max: float | None = None     # running max of the output (its scale's range)

    def params(self) -> dict[str, np.ndarray]:
        return {"gamma": self.gamma, "beta": self.beta}

    def buffers(self) -> dict[str, np.ndarray]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def scale_state(self) -> dict[str, np.ndarray]:
        return {"out_max": np.float64(np.nan if self.out_max is None else self.out_max)}

    def load_scale_state(self, d: dict[str, np.ndarray]) -> None:
        self.out_max = None if np.isnan(d["out_max"]) else float(d["out_max"])

    # -- forward -------------------------------------------------------------------------
    def statistics(self, sums: np.ndarray, count: int, s_y: Dyadic, train: bool, arm: ArmTally):
        """(mean, 1/sqrt(var + eps)) float64 per channel: the batch's from the conv's sums
        (updating the running statistics) in training, the running ones in evaluation (and
        when no sample is listed: nothing to normalise, nothing to learn from)."""
        if train and count > 0:
            arm.ops("bn_stats", self.gamma.size)
            mean_c, var_c = channel_moments(sums, count)
            mean, var = mean_c * s_y.value, var_c * s_y.value ** 2
            unbiased = var * (count / max(count - 1, 1))
            self.running_mean *= 1 - self.MOMENTUM
            self.running_mean += (self.MOMENTUM * mean).astype(np.float32)
            self.running_var *= 1 - self.MOMENTUM
            self.running_var += (self.MOMENTUM * unbiased).astype(np.float32)
        else:
            arm.ops("bn_stats_eval", self.gamma.size)
            mean, var = self.running_mean.astype(np.float64), self.running_var.astype(np.float64)
        return mean, 1.0 / np.sqrt(var + self.EPS)

    def forward(self, y: np.ndarray, s_y: Dyadic, sums: np.ndarray, idx: np.ndarray | None, train: bool,
                backend, kt: KernelTally, arm: ArmTally, *, r: Codes | None = None,
                shortcut: Shortcut = IDENTITY) -> tuple[Codes, BNCache]:
        """relu(BN(y) [+ sc(r)]) as the next conv's uint8 input codes. ``idx``: the samples
        BN runs for (None: all); with ``r`` the others take the shortcut alone."""
        n, c, h, w = y.shape
        n_listed = n if idx is None else idx.size
        count = n_listed * h * w
        mean, inv = self.statistics(sums, count, s_y, train, arm)
        k = self.gamma * inv                # float32 * float64: widened inside the multiply, as a copy would
        c0 = self.beta - k * mean
        s_r = None if r is None else r.scale

        def call(s_out: Dyadic):
            f = fold_bn_act(k, c0, s_y, s_out, s_r)
            arm.ops("bn_fold_fwd", c)
            out = backend.bn_act(y, f.a, f.b, f.shift, r=None if r is None else r.q, r_mult=f.r_mult,
                                 shortcut=shortcut, samples=idx, relu=True)
            kt.block("bn_act", y.shape, n_listed, residual=r is not None, layer=self.name)
            return out

        def stat(vmax: np.ndarray) -> float:
            arm.ops("scale_stat", vmax.size)
            return act_batch_max(vmax, self.act_scale)

        if self.out_max is None:
            # calibration: the bound never saturates; measure, then run with the measured scale
            r_max = 0.0 if r is None else UINT8.hi * r.scale.value
            s_cal = scale_for(act_bound(k, c0, s_y, r_max), UINT8)
            _, _, vmax = call(s_cal)
            self.out_max = stat(vmax) * s_cal.value or None
        s_out = scale_for(self.out_max or 0.0, UINT8)
        out, pooled, vmax = call(s_out)
        if train and vmax.size:
            top = stat(vmax)
            est = 2 * self.out_max if (top > UINT8.hi and self.out_max) else top * s_out.value
            self.out_max = running(self.out_max, est) if est > 0 else self.out_max
        return Codes(out, s_out, pooled), BNCache(y, s_y, out, s_out, mean, inv, idx, count)

    # -- backward ------------------------------------------------------------------------
    def backward(self, cache: BNCache, g: Grad, backend, kt: KernelTally, arm: ArmTally, *,
                 r: Codes | None = None, shortcut: Shortcut = IDENTITY):
        """From the gradient of the output codes to the conv's int16 output gradient.

        Returns (g_y codes or None when no sample is listed, g_y's scale, g_m: the masked
        gradient of the pre-ReLU sum for every sample (the shortcut's gradient), g_m's scale,
        {gamma, beta} gradients, the gate sums (n, 2) when ``r`` (the block input) is given)."""
        o, y, idx = cache.o, cache.y, cache.idx
        n, c = o.shape[:2]
        n_listed = n if idx is None else idx.size
        if g.a is None:                        # only the shortcut's gradient reaches this output
            g_a, s_a, g_b, s_b = np.zeros(o.shape, np.int16), g.s_b, g.b, g.s_b
        else:
            g_a, s_a, g_b, s_b = g.a, g.s_a, g.b, g.s_b
        cf = fold_combine(s_a, s_b if g_b is not None else None)
        g_m, red, gate = backend.bn_bwd_reduce(o, y, g_a, ma=cf.ma, g_b=g_b, mb=cf.mb, b_shortcut=g.b_shortcut,
                                               shift=cf.shift, r=None if r is None else r.q,
                                               r_shortcut=shortcut, samples=idx)
        kt.block("bn_bwd_reduce", o.shape, n_listed, two_sources=g_b is not None, gate=r is not None,
                 layer=self.name)
        if n_listed == 0:
            z = np.zeros(c, np.float32)
            return None, None, g_m, cf.scale, {"gamma": z, "beta": z.copy()}, gate
        f = fold_bn_bwd(red, cache.count, self.gamma, cache.mean, cache.inv, cf.scale, cache.s_y)
        arm.ops("bn_fold_bwd", c)
        g_y = backend.bn_bwd_apply(g_m, y, f.p, f.q, f.t, f.shift, samples=idx)
        kt.block("bn_bwd_apply", o.shape, n_listed, layer=self.name)
        grads = {"gamma": f.dgamma.astype(np.float32), "beta": f.dbeta.astype(np.float32)}
        return g_y, f.scale, g_m, cf.scale, grads, gate
