"""The layers that run on the ARM in float32 numpy: BN, ReLU, option-A shortcut, pooling, FC,
softmax cross-entropy, SGD with momentum; and the per-element cost model that tallies them.

Forward functions return (output, cache); backward functions take the cache. Every function
adds what it computed to an :class:`ArmTally`, so that the ARM's share of a training step is in
the same ``Work`` tally as the kernels' and is priced by the same energy model.
"""
from __future__ import annotations

import numpy as np

from ..core.energy import ARM_OPS_PER_SECOND, FP32   # noqa: F401 (ARM_OPS_PER_SECOND re-exported); float widths are negative in a Work tally
from ..core.work import Work

# -- ARM cost model -------------------------------------------------------------------------
# Operations per element of each ARM-side op, counted as float32 ops (``FP32`` = -32 bits in
# a Work tally, core.energy's convention); FC and gate matrix products as fp32 MACs. The time model is a flat
# throughput for numpy float32 on the Cortex-A9 (650-667 MHz, NEON): an assumption, about
# one operation every 4-6 cycles once numpy's per-call overhead is spread over the small
# tensors of a ResNet-CIFAR layer. It prices the static power of the time the ARM is busy.
# ``e2train calibrate-arm`` measures it on a board (device/arm_calibration.py); a trainer takes
# the measured figure through its config key ``arm_ops_per_second``; the assumed default,
# ``ARM_OPS_PER_SECOND``, lives in core.energy beside the ARM rates it is re-priced at.
OPS_PER_ELEMENT = {
    "bn_fwd": 6,          # sum, sum of squares, subtract, scale, shift (+ stats share)
    "bn_bwd": 9,          # two reductions and the four-term input gradient
    "relu": 1,
    "add": 1,             # residual add, gradient accumulation
    "shortcut": 1,        # option-A subsample / zero-pad copy
    "quantize": 3,        # scale, round, saturate
    "dequantize": 1,
    "maxabs": 1,          # the max |x| a scale is chosen from
    "pool": 1,
    "softmax_ce": 6,
    "sgd": 4,             # weight decay, momentum, step
    "sigmoid": 4,
    "tanh": 4,
    "augment": 1,
}


class ArmTally:
    """Adds ARM-side work (ops, MACs, modelled seconds) to a ``Work``."""

    def __init__(self, work: Work | None = None, ops_per_second: float = ARM_OPS_PER_SECOND, timeline=None):
        if not ops_per_second > 0:
            raise ValueError(f"ARM throughput must be > 0 ops/s, got {ops_per_second!r}")
        self.work = work if work is not None else Work()
        self.ops_per_second = float(ops_per_second)
        self.timeline = timeline                         # core.overlap.Timeline of the step, or None

    def _timed(self, n_ops: int) -> None:
        self.work.add_arm_time(n_ops, self.ops_per_second)
        if self.timeline is not None:
            self.timeline.add("arm", n_ops / self.ops_per_second, arm_ops=n_ops)

    def ops(self, kind: str, n_elements: int) -> None:
        n = int(n_elements) * OPS_PER_ELEMENT[kind]
        if n:
            self.work.add_ops(n, FP32)
            self._timed(n)

    def macs(self, n: int) -> None:
        n = int(n)
        if n:
            self.work.add_macs(n, FP32, FP32)
            # a multiply-accumulate is two operations for the time model
            self._timed(2 * n)


# -- batch norm -----------------------------------------------------------------------------
class BatchNorm:
    """Per-channel BN over (N, H, W) of NCHW float32, with running stats for evaluation."""

    EPS = 1e-5
    MOMENTUM = 0.1        # running = (1 - m) * running + m * batch, as in torch

    def __init__(self, channels: int):
        self.gamma = np.ones(channels, np.float32)
        self.beta = np.zeros(channels, np.float32)
        self.running_mean = np.zeros(channels, np.float32)
        self.running_var = np.ones(channels, np.float32)

    def params(self) -> dict[str, np.ndarray]:
        return {"gamma": self.gamma, "beta": self.beta}

    def buffers(self) -> dict[str, np.ndarray]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def forward(self, x: np.ndarray, train: bool, tally: ArmTally):
        if train:
            mean = x.mean(axis=(0, 2, 3), dtype=np.float32)
            var = x.var(axis=(0, 2, 3), dtype=np.float32)
            m = x.shape[0] * x.shape[2] * x.shape[3]
            unbiased = var * (m / max(m - 1, 1))
            self.running_mean *= 1 - self.MOMENTUM
            self.running_mean += self.MOMENTUM * mean
            self.running_var *= 1 - self.MOMENTUM
            self.running_var += self.MOMENTUM * unbiased.astype(np.float32)
        else:
            mean, var = self.running_mean, self.running_var
        inv = (1.0 / np.sqrt(var + self.EPS)).astype(np.float32)
        xhat = (x - mean[None, :, None, None]) * inv[None, :, None, None]
        y = xhat * self.gamma[None, :, None, None] + self.beta[None, :, None, None]
        tally.ops("bn_fwd", x.size)
        return y.astype(np.float32, copy=False), (xhat, inv)

    def backward(self, gy: np.ndarray, cache, tally: ArmTally):
        xhat, inv = cache
        m = gy.shape[0] * gy.shape[2] * gy.shape[3]
        dgamma = (gy * xhat).sum(axis=(0, 2, 3), dtype=np.float32)
        dbeta = gy.sum(axis=(0, 2, 3), dtype=np.float32)
        g = self.gamma * inv
        gx = g[None, :, None, None] * (gy - (dbeta / m)[None, :, None, None]
                                        - xhat * (dgamma / m)[None, :, None, None])
        tally.ops("bn_bwd", gy.size)
        return gx.astype(np.float32, copy=False), {"gamma": dgamma, "beta": dbeta}


# -- elementwise / shortcut / pooling ---------------------------------------------------------
def relu(x: np.ndarray, tally: ArmTally) -> np.ndarray:
    tally.ops("relu", x.size)
    return np.maximum(x, 0, dtype=np.float32)


def relu_backward(gy: np.ndarray, y: np.ndarray, tally: ArmTally) -> np.ndarray:
    tally.ops("relu", gy.size)
    return np.where(y > 0, gy, np.float32(0))


def shortcut(x: np.ndarray, c_out: int, stride: int, tally: ArmTally) -> np.ndarray:
    """Option A: subsample by the stride and zero-pad the new channels, half before and half
    after the old ones (as He et al.'s CIFAR ResNets and the torch reference do)."""
    if stride == 1 and c_out == x.shape[1]:
        return x
    xs = x[:, :, ::stride, ::stride]
    out = np.zeros((x.shape[0], c_out) + xs.shape[2:], np.float32)
    lo = (c_out - x.shape[1]) // 2
    out[:, lo: lo + x.shape[1]] = xs
    tally.ops("shortcut", out.size)
    return out


def shortcut_backward(gy: np.ndarray, in_shape: tuple, stride: int, tally: ArmTally) -> np.ndarray:
    if stride == 1 and gy.shape[1] == in_shape[1]:
        return gy
    gx = np.zeros(in_shape, np.float32)
    lo = (gy.shape[1] - in_shape[1]) // 2
    gx[:, :, ::stride, ::stride] = gy[:, lo: lo + in_shape[1]]
    tally.ops("shortcut", gy.size)
    return gx


def avgpool(x: np.ndarray, tally: ArmTally) -> np.ndarray:
    tally.ops("pool", x.size)
    return x.mean(axis=(2, 3), dtype=np.float32)


def avgpool_backward(gy: np.ndarray, in_shape: tuple, tally: ArmTally) -> np.ndarray:
    tally.ops("pool", int(np.prod(in_shape)))
    hw = in_shape[2] * in_shape[3]
    return np.broadcast_to((gy / hw)[:, :, None, None], in_shape).astype(np.float32)


# -- fully connected + loss -------------------------------------------------------------------
class Linear:
    def __init__(self, fan_in: int, fan_out: int, rng: np.random.Generator):
        bound = 1.0 / np.sqrt(fan_in)          # torch's default init
        self.weight = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        self.bias = rng.uniform(-bound, bound, fan_out).astype(np.float32)

    def params(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def forward(self, x: np.ndarray, tally: ArmTally) -> np.ndarray:
        tally.macs(x.shape[0] * self.weight.size)
        return x @ self.weight.T + self.bias

    def backward(self, gy: np.ndarray, x: np.ndarray, tally: ArmTally):
        tally.macs(2 * x.shape[0] * self.weight.size)
        grads = {"weight": gy.T @ x, "bias": gy.sum(axis=0)}
        return gy @ self.weight, grads


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, tally: ArmTally):
    """Mean cross-entropy and its gradient w.r.t. the logits (float32)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = float(-np.log(np.maximum(p[np.arange(n), labels], 1e-30)).mean())
    g = p.copy()
    g[np.arange(n), labels] -= 1.0
    tally.ops("softmax_ce", logits.size)
    return loss, (g / n).astype(np.float32)


# -- optimiser -------------------------------------------------------------------------------
class SGDMomentum:
    """torch.optim.SGD semantics: g += wd*w; v = m*v + g; w -= lr*v (in place, float32)."""

    def __init__(self, momentum: float, weight_decay: float):
        self.momentum = np.float32(momentum)
        self.weight_decay = np.float32(weight_decay)
        self.velocity: dict[str, np.ndarray] = {}

    def step(self, name: str, w: np.ndarray, g: np.ndarray, lr: float, tally: ArmTally,
             decay: bool = True) -> None:
        if decay and self.weight_decay:
            g = g + self.weight_decay * w
        v = self.velocity.get(name)
        if v is None:
            v = self.velocity[name] = g.astype(np.float32, copy=True)
        else:
            v *= self.momentum
            v += g
        w -= np.float32(lr) * v
        tally.ops("sgd", w.size)
