"""The on-device trainer's configuration: one flat dict (JSON over the link), validated up front.

Every value is checked before anything runs, and each bad value gets a message that names the
key, what it got and what it accepts. Unknown keys are rejected too: a typo in a config that
silently falls back to a default would train the wrong thing for hours.

The three E²-Train levels are switched by booleans, so the baselines are one config away:
``smd=False`` (all batches), ``slu=False`` (no gates, every block runs), ``psg=False`` (8-bit
training with exact weight-gradient signs, i.e. ``beta_q = 0`` in the kernel).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..core.fixedpoint import ACT_SCALE_DEFAULT, ACT_SCALE_POLICIES, beta_to_fixed
from ..core.shapes import MAX_BATCH
from .nn_layers import ARM_OPS_PER_SECOND

# Bit widths the kernels implement: int8/uint8 activations and weights, int16 gradients.
SUPPORTED_ACT_BITS = (8,)
SUPPORTED_GRAD_BITS = (16,)
MIN_DEPTH, MAX_DEPTH = 8, 110


class ConfigError(ValueError):
    """A configuration value the trainer cannot run with (raised before any work starts)."""


@dataclass(frozen=True)
class TrainConfig:
    # model: ResNet-CIFAR, depth 6n+2, stage widths (w, 2w, 4w)
    depth: int = 8
    width: int = 16
    # schedule
    epochs: int = 20                  # epochs of the plain schedule (SMD multiplies it)
    batch_size: int = 64
    seed: int = 0
    augment_shift: int = 1            # random +-shift in pixels (0 = off)
    # BN / FC / gate parameters: float32 SGD with momentum, cosine schedule
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # conv weights: the kernel's sign step on int32 master weights, cosine schedule
    conv_lr: float = 1e-3
    conv_weight_decay: float = 5e-4
    # fixed point (only what the kernels implement)
    act_bits: int = 8
    grad_bits: int = 16
    # which batch statistic the running max of the activations follows: batch_max |
    # mean_sample_max (core.fixedpoint.ACT_SCALE_POLICIES, docs/fixed-point.md section 2)
    act_scale: str = ACT_SCALE_DEFAULT
    # PSG
    psg: bool = True
    psg_beta: float = 0.05
    # SMD
    smd: bool = True
    smd_p: float = 0.5
    smd_epoch_multiplier: float = 4.0 / 3.0
    # SLU
    slu: bool = True
    gate_target: float = 0.5          # execution ratio the FLOPs penalty pushes towards
    gate_alpha: float = 2.0           # weight of the penalty alpha * (ratio - target)**2
    gate_hidden: int = 10             # size of the shared recurrent cell
    gate_lr: float = 0.1
    gate_sampling: bool = True        # training decisions drawn ~ Bernoulli(p) (SkipNet); else p > 0.5
    gate_downsample: bool = False     # gate the stride-2 blocks too (their shortcut is lossy)
    # the ARM's throughput in the time model (nn_layers.ARM_OPS_PER_SECOND is the assumed default;
    # `e2train calibrate-arm` measures it on a board)
    arm_ops_per_second: float = ARM_OPS_PER_SECOND
    # reporting / robustness
    progress_every: int = 10          # steps between progress events (0 = none)
    checkpoint_every: int = 0         # steps between checkpoints (0 = at epoch ends only)
    eval_batch_size: int = 256

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a JSON object (dict), got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; known keys: {sorted(known)}")
        kw = {}
        for name, value in d.items():
            kw[name] = _coerce(name, value, type(getattr(cls, name)))
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"training config is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **kw) -> "TrainConfig":
        d = self.to_dict()
        d.update(kw)
        return TrainConfig.from_dict(d)

    # -- validation --------------------------------------------------------------------
    def validate(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"config '{key}' = {getattr(self, key)!r}: {msg}")

        if not MIN_DEPTH <= self.depth <= MAX_DEPTH or (self.depth - 2) % 6:
            raise bad("depth", f"must be 6n+2 in [{MIN_DEPTH}, {MAX_DEPTH}] (8, 14, 20, 26, ..., 110)")
        if self.width < 1:
            raise bad("width", "must be >= 1 (channels of the first stage)")
        if 4 * self.width > 1024:
            raise bad("width", "4*width must be <= 1024 channels (the kernels' limit)")
        if self.epochs < 1:
            raise bad("epochs", "must be >= 1")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise bad("batch_size", f"must be in [1, {MAX_BATCH}]")
        if not 1 <= self.eval_batch_size <= MAX_BATCH:
            raise bad("eval_batch_size", f"must be in [1, {MAX_BATCH}]")
        if self.augment_shift < 0 or self.augment_shift > 4:
            raise bad("augment_shift", "must be in [0, 4] pixels")
        for key in ("lr", "conv_lr", "gate_lr"):
            v = getattr(self, key)
            if not (math.isfinite(v) and 0 < v < 10):
                raise bad(key, "must be a learning rate in (0, 10)")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", "must be in [0, 1)")
        for key in ("weight_decay", "conv_weight_decay"):
            v = getattr(self, key)
            if not (math.isfinite(v) and 0 <= v < 1):
                raise bad(key, "must be in [0, 1)")
        if self.conv_lr * self.conv_weight_decay >= 1:
            raise bad("conv_weight_decay", "conv_lr * conv_weight_decay must be < 1")
        if self.act_bits not in SUPPORTED_ACT_BITS:
            raise bad("act_bits", f"the kernels support {SUPPORTED_ACT_BITS} only")
        if self.grad_bits not in SUPPORTED_GRAD_BITS:
            raise bad("grad_bits", f"the kernels support {SUPPORTED_GRAD_BITS} only")
        if self.act_scale not in ACT_SCALE_POLICIES:
            raise bad("act_scale", f"must be one of {', '.join(ACT_SCALE_POLICIES)}")
        if not (0 < self.psg_beta <= 1):
            raise bad("psg_beta", "must be in (0, 1] (use psg=false for the exact-sign baseline)")
        if not (0 <= self.smd_p < 1):
            raise bad("smd_p", "must be in [0, 1) (the probability of dropping a mini-batch)")
        if not (math.isfinite(self.smd_epoch_multiplier) and 1 <= self.smd_epoch_multiplier <= 10):
            raise bad("smd_epoch_multiplier", "must be in [1, 10]")
        if not (0 < self.gate_target <= 1):
            raise bad("gate_target", "must be in (0, 1] (the fraction of blocks that run)")
        if not (math.isfinite(self.gate_alpha) and self.gate_alpha >= 0):
            raise bad("gate_alpha", "must be >= 0")
        if not 1 <= self.gate_hidden <= 256:
            raise bad("gate_hidden", "must be in [1, 256]")
        if not 1e6 <= self.arm_ops_per_second <= 1e11:
            raise bad("arm_ops_per_second", "must be in [1e6, 1e11] float ops per second "
                      "(measure it on the board with `e2train calibrate-arm`)")
        if self.progress_every < 0:
            raise bad("progress_every", "must be >= 0 (0 = no progress events)")
        if self.checkpoint_every < 0:
            raise bad("checkpoint_every", "must be >= 0 (0 = at epoch ends only)")

    # -- derived -------------------------------------------------------------------------
    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    @property
    def beta_q(self) -> int:
        """The kernel's beta: 0 turns the predictor off (exact signs, the 8-bit baseline)."""
        return beta_to_fixed(self.psg_beta) if self.psg else 0

    @property
    def total_epochs(self) -> int:
        """Epochs actually scheduled: SMD trains longer (e.g. 1.33x) on half the batches."""
        if not self.smd:
            return self.epochs
        return max(1, int(math.floor(self.epochs * self.smd_epoch_multiplier + 0.5)))


def _coerce(name: str, value: Any, want: type) -> Any:
    """Type-check one value (JSON gives int for 1 and float for 1.0; accept ints for floats)."""
    if want is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config '{name}' = {value!r}: must be true or false")
    if want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config '{name}' = {value!r}: must be an integer")
        return value
    if want is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config '{name}' = {value!r}: must be a number")
        v = float(value)
        if not math.isfinite(v):
            raise ConfigError(f"config '{name}' = {value!r}: must be finite")
        return v
    return value
