"""The on-device trainer's configuration: one flat dict (JSON over the link), validated up front.

The keys, their types, ranges and defaults are the shared vocabulary of both trainers
(``core.train_keys``, docs/config.md), and ``core.train_keys.check_config`` validates them: each
bad value gets one line that names the key, what it got and what it accepts. Unknown keys are
rejected too (a typo that silently fell back to a default would train the wrong thing for
hours), and so are the torch trainer's keys, naming that trainer. The board trainer's old key
names (``depth``, ``psg_beta``, ``gate_target``, ...) still load, with a ``RenamedKeyWarning``.

The three E²-Train levels are switched by one key each, so the baselines are one config away:
``smd=False`` (all batches), ``slu=False`` (no gates, every block runs),
``precision="int8_int16grad"`` (8-bit training with exact weight-gradient signs, i.e.
``beta_q = 0`` in the kernel).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ..core import train_keys as tk
from ..core.fixedpoint import beta_to_fixed
from ..core.model_names import resnet_cifar_depth, resnet_cifar_name
from ..core.train_keys import ConfigError, RenamedKeyWarning  # noqa: F401 (re-exported: the one config error)

_D = tk.defaults(tk.DEVICE)


@dataclass(frozen=True)
class TrainConfig:
    # Defaults and allowed values: core.train_keys (docs/config.md); dataclass fields list the
    # keys the device trainer implements, and a test keeps them equal to the vocabulary's.
    model: str = _D["model"]                        # resnet<6n+2>: ResNet-CIFAR, depth 8..110
    width: int = _D["width"]                        # stage widths (w, 2w, 4w)
    # schedule
    epochs: int = _D["epochs"]                      # epochs of the plain schedule (SMD stretches it)
    batch_size: int = _D["batch_size"]
    seed: int = _D["seed"]
    augment: bool = _D["augment"]
    augment_shift: int = _D["augment_shift"]        # random +-shift in pixels when augment is on
    augment_pad: str = _D["augment_pad"]            # the uncovered border: the mean, edge pixels repeated, or black
    # BN / FC / gate parameters: float32 SGD with momentum, cosine schedule
    lr: float = _D["lr"]
    momentum: float = _D["momentum"]
    weight_decay: float = _D["weight_decay"]
    # conv weights: the kernel's sign step on int32 master weights, cosine schedule
    conv_lr: float = _D["conv_lr"]
    conv_weight_decay: float = _D["conv_weight_decay"]
    schedule: str = _D["schedule"]                  # cosine only on the device
    # fixed point: the kernels' int8/int16; psg (predictor on) or int8_int16grad (exact signs)
    precision: str = _D["precision"]
    beta: float = _D["beta"]
    # which batch statistic the running max of the activations follows (docs/fixed-point.md)
    act_scale: str = _D["act_scale"]
    # SMD
    smd: bool = _D["smd"]
    smd_p: float = _D["smd_p"]
    smd_energy_ratio: float | None = _D["smd_energy_ratio"]   # 2/3 at p 0.5: epochs x4/3
    # SLU
    slu: bool = _D["slu"]
    slu_alpha: float = _D["slu_alpha"]              # weight of the penalty (see slu_cost)
    slu_target: float = _D["slu_target"]            # execution ratio the penalty pushes towards
    slu_cost: str = _D["slu_cost"]                  # target: alpha (ratio - target)**2; flops: alpha ratio (paper)
    slu_cell: str = _D["slu_cell"]                  # the shared recurrent cell of the gates
    slu_hidden: int = _D["slu_hidden"]
    slu_lr: float = _D["slu_lr"]
    slu_sampling: bool = _D["slu_sampling"]         # training decisions ~ Bernoulli(p) (SkipNet); else p > 0.5
    slu_downsample: bool = _D["slu_downsample"]     # gate the stride-2 blocks too (their shortcut is lossy)
    # the ARM's throughput in the time model (`e2train calibrate-arm` measures it on a board)
    arm_ops_per_second: float = _D["arm_ops_per_second"]
    # reporting / robustness
    eval_batch_size: int = _D["eval_batch_size"]
    progress_every: int = _D["progress_every"]      # steps between progress events (0 = none)
    checkpoint_every: int = _D["checkpoint_every"]  # steps between checkpoints (0 = at epoch ends only)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        cfg = tk.load({} if d is None else d, tk.DEVICE)
        # one spelling per model, so that a checkpoint's config compares equal to its run's
        cfg["model"] = resnet_cifar_name(resnet_cifar_depth(cfg["model"]))
        return cls(**cfg)

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

    def validate(self) -> None:
        """The shared validator on this config's values (a TrainConfig built directly in code)."""
        tk.check_config(self.to_dict(), tk.DEVICE, complete=True)

    # -- derived -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return resnet_cifar_depth(self.model)

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    @property
    def beta_q(self) -> int:
        """The kernel's beta: 0 turns the predictor off (exact signs, the 8-bit baseline)."""
        return beta_to_fixed(self.beta) if self.precision == "psg" else 0

    @property
    def shift(self) -> int:
        """The largest random shift of an augmented image (0: no augmentation)."""
        return self.augment_shift if self.augment else 0

    @property
    def total_epochs(self) -> int:
        """Epochs actually scheduled: SMD trains longer (e.g. 1.33x) on half the batches."""
        return tk.run_epochs(self)
