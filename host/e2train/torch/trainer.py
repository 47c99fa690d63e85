"""The torch reference trainer: one loop, configured by a ``TrainConfig``.

    from e2train.torch.trainer import TrainConfig, train
    result = train(TrainConfig(dataset="digits", model="resnet8", precision="psg",
                               smd=True, slu=True, epochs=40))
    result.final_test_acc, result.energy_j, result.records[-1]

Every skipping method goes through ``e2train.torch.policy.Policy`` hooks, E2-Train's own
included: SMD is a ``RandomBatchSkip``, SLU a gated model plus the ``SLU`` penalty policy,
stochastic depth a ``StochasticDepth`` policy, PSG a precision. Extra policies (the other
methods, the harness's random controls) are passed to ``train(..., policies=[...])``.

Energy is *modelled* (``core.energy``, Horowitz 45 nm per-op figures, no static power) over
the work that ran, tallied by ``WorkMeter``; every record says so in ``energy_kind``.
Checkpoints (``out_dir/checkpoint.pt``, state dicts only, loaded with ``weights_only=True``)
are written at epoch ends; ``resume=True`` continues from one and ends with the same
weights as an uninterrupted run.

``train`` reads as its steps: ``_setup`` (data, model, optimiser, policies, SWA copy, work
meter), ``_resume`` (from a checkpoint), then per epoch ``_train_epoch`` (``_step`` per
batch, with the policy hooks in the order ``policy.py`` lists them) and ``_end_epoch`` (SWA
update, ``_epoch_record`` with the evaluation, ``on_epoch_end``, callback, checkpoint, next
optimiser), and ``_finish`` (the SWA model, the result, ``records.json``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F

from ..core import run_record as rr
from ..core import train_keys as tk
from ..core.energy import ENERGY_KIND, EnergyModel
from ..core.fixedpoint import CONTRACT_VERSION
from ..core.train_keys import ConfigError  # noqa: F401 (re-exported: the one config error)
from ..core.work import Work
from ..data.datasets import NAMES as DATASET_NAMES
from . import data as tdata
from .models import build_model
from .optim import build_optimizer
from .policy import Compose, Policy, RandomBatchSkip, StepContext
from .psg import PSGConv2d, set_act_scale, set_exact
from .rng import rng_state, set_rng_state
from .slu import SLU, StochasticDepth, set_gate_cell
from .memory import PeakMemory
from .work_meter import WorkMeter, energy_platform

ENERGY_LABEL = "modelled (core.energy, platform horowitz45: Horowitz 45 nm per-op, no static power)"
CHECKPOINT = "checkpoint.pt"
# precisions whose conv weights step by sign (small conv lr, ordinary BN/FC lr: DESIGN.md's calibration)
SIGN_PRECISIONS = ("signsgd", "int8_int16grad", "psg")


_D = tk.defaults(tk.TORCH)


@dataclass
class TrainConfig:
    """Everything a run needs. Load from a file with ``TrainConfig.from_file`` (JSON or
    TOML, the same keys) or build in code; ``validate()`` checks it with clear messages.
    Keys, allowed values and defaults: ``core.train_keys`` (docs/config.md), the vocabulary
    both trainers share; a test keeps these fields equal to it."""

    dataset: str = _D["dataset"]                  # digits | cifar10 | cifar100 | mnist | imagenette | sat6...
    data_dir: str | None = _D["data_dir"]         # CIFAR python-format files (default $E2TRAIN_DATA)
    model: str = _D["model"]                      # resnet<6n+2> | mobilenetv2[_<width>] | other papers' models
    precision: str = _D["precision"]              # fp32 | signsgd | int8_fp32grad | int8_int16grad | psg
    beta: float = _D["beta"]                      # PSG predictor threshold (fraction of max |G_msb|)
    psg_exact: bool = _D["psg_exact"]             # bit-exact PSG emulation; false: float32 sums (fast, near-ties may differ)
    act_scale: str = _D["act_scale"]              # activation scale: batch_max | mean_sample_max (docs/fixed-point.md)
    epochs: int = _D["epochs"]
    batch_size: int = _D["batch_size"]
    lr: float = _D["lr"]                          # SGD (BN, classifier; every weight under fp32)
    conv_lr: float = _D["conv_lr"]                # sign step of conv weights (signsgd, int8_int16grad, psg)
    momentum: float = _D["momentum"]
    weight_decay: float = _D["weight_decay"]
    schedule: str = _D["schedule"]                # cosine | constant | step | cyclic (per batch)
    lr_steps: str = _D["lr_steps"]                # step: comma-separated epochs (or iterations) where lr *= lr_gamma
    lr_step_unit: str = _D["lr_step_unit"]        # epoch | iteration: the unit of lr_steps
    lr_gamma: float = _D["lr_gamma"]              # step: factor at each step (0.1: divide by 10)
    lr_cycle: float = _D["lr_cycle"]              # cyclic: period in epochs (cosine from lr to 0, restarting)
    iterations: int | None = _D["iterations"]     # train this many steps (batches) instead of whole epochs
    val_split: float = _D["val_split"]            # fraction of the training set held out as validation
    augment: bool = _D["augment"]
    augment_pad: str = _D["augment_pad"]
    smd: bool = _D["smd"]                         # stochastic mini-batch dropping
    smd_p: float = _D["smd_p"]
    smd_energy_ratio: float | None = _D["smd_energy_ratio"]   # if set: epochs *= ratio / (1 - smd_p) (0.67 -> x1.33)
    slu: bool = _D["slu"]                         # SkipNet gates + FLOPs penalty
    slu_alpha: float = _D["slu_alpha"]            # weight of the cost alpha * C (see slu_cost; 2.0 suits target)
    slu_target: float = _D["slu_target"]          # target FLOPs-weighted execution ratio (slu_cost = target)
    slu_cost: str = _D["slu_cost"]                # flops: C = executed FLOPs ratio (paper); target: (r - target)**2
    slu_cell: str = _D["slu_cell"]                # the gates' recurrent cell: lstm (SkipNet) | gru (the device's)
    stochastic_depth: float = _D["stochastic_depth"]   # p_L of stochastic depth (0 = off)
    swa: bool = _D["swa"]                         # stochastic weight averaging (PSG: of the masters' float view)
    swa_start: float = _D["swa_start"]            # fraction of the epochs after which weights are averaged
    seed: int = _D["seed"]
    device: str = _D["device"]                    # auto | cpu | cuda | cuda:N
    threads: int | None = _D["threads"]           # torch CPU threads (None: torch's default)
    progress: bool | None = _D["progress"]        # progress bars (None: only on a terminal)
    out_dir: str | None = _D["out_dir"]           # checkpoints and records.json go here
    resume: bool = _D["resume"]
    limit_train: int | None = _D["limit_train"]   # use only the first N training samples (quick runs)
    max_batches: int | None = _D["max_batches"]   # stop each epoch after N batches (quick runs)

    # -- construction and checks ---------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**tk.load(d, tk.TORCH)).validate()

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TrainConfig":
        return cls.from_dict(cls.read_file(path))

    @staticmethod
    def read_file(path: str | os.PathLike) -> dict:
        """The keys of a JSON or TOML config file (not yet checked)."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config {p}: {e.strerror or e}") from e
        return tk.parse_config_text(text, str(p))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """The shared validator (``core.train_keys``) and the data set's name."""
        tk.check_config(self.to_dict(), tk.TORCH, complete=True)
        if self.dataset.lower().replace("-", "") not in DATASET_NAMES:
            raise tk.bad("dataset", self.dataset, f"must be one of {', '.join(DATASET_NAMES)}")
        return self

    def lr_step_points(self) -> list[float]:
        """The ``lr_steps`` as numbers, increasing (ValueError otherwise)."""
        return tk.lr_step_points(self.lr_steps)

    @property
    def run_epochs(self) -> int:
        """Epochs actually run: SMD with an energy ratio stretches them (0.67 at p=0.5 -> x1.33)."""
        return tk.run_epochs(self)


@dataclass
class RunResult:
    """What a run produced. ``records``: one dict per epoch (see ``EPOCH_KEYS``)."""

    config: dict
    records: list[dict]
    final_test_acc: float
    best_test_acc: float
    wall_s: float                       # training wall clock (excludes evaluation)
    energy_j: float                     # modelled training energy, all epochs
    energy_kind: str
    work: Work
    model: torch.nn.Module = field(repr=False)
    checkpoint: str | None = None
    energy_platform: str | None = None      # core.energy platform the energy is priced on
    energy_parts_j: dict | None = None      # compute / on_chip / dram / static, modelled
    record: rr.TrainingRecord | None = field(default=None, repr=False)   # the run record (records.json)

    def to_dict(self) -> dict:
        return {"config": self.config, "records": self.records, "final_test_acc": self.final_test_acc,
                "best_test_acc": self.best_test_acc, "wall_s": self.wall_s, "energy_j": self.energy_j,
                "energy_kind": self.energy_kind, "energy_label": ENERGY_LABEL, "work": self.work.to_dict(),
                "energy_platform": self.energy_platform, "energy_parts_j": self.energy_parts_j,
                "checkpoint": self.checkpoint}


# keys of each epoch record (all JSON-safe); policies may add their own in on_epoch_end
EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_acc", "test_top5", "val_acc", "epoch_wall_s", "wall_s", "energy_j",
              "epoch_energy_j", "energy_kind", "energy_platform", "energy_parts_j", "batches_run", "batches_skipped",
              "samples_run", "exec_ratio", "predicted_frac", "macs", "lr", "peak_mem_mb", "mean_mem_mb", "peak_mem_kind")


def policies_from_config(cfg: TrainConfig) -> list[Policy]:
    """E2-Train's own techniques as policies: SMD, SLU, stochastic depth."""
    out: list[Policy] = []
    if cfg.smd:
        out.append(RandomBatchSkip(cfg.smd_p, seed=cfg.seed + 1))
        out[-1].name = "smd"
    if cfg.slu:
        out.append(SLU(cfg.slu_alpha, cfg.slu_target, cfg.slu_cost))
    if cfg.stochastic_depth:
        out.append(StochasticDepth(cfg.stochastic_depth, seed=cfg.seed + 2))
    return out


def _timed(batches: Iterable, fetch: list[float]):
    """Yield from ``batches``, leaving in ``fetch[0]`` how long each item took to produce."""
    it = iter(batches)
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        fetch[0] = time.perf_counter() - t
        yield item


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device: use device = \"cpu\"")
    return torch.device(name)


def lr_factor(cfg: TrainConfig, progress: float, epoch_pos: float | None = None, step: int | None = None) -> float:
    """Factor on the base learning rates. ``progress`` in [0, 1] over the run; ``epoch_pos``
    the position in epochs (epoch + batch / batches) and ``step`` the global step, for the
    step and cyclic schedules.

    step: x lr_gamma at each of ``lr_steps`` passed (epochs, or iterations with
    lr_step_unit = iteration), as the papers' "divide by 10 at ..." schedules (E2-Train:
    64k iterations, steps at 32k and 48k; WUS: after 30 epochs). cyclic: cosine from the
    base rate to 0 over every ``lr_cycle`` epochs, restarting (one run passes several
    accuracy-time points for a Pareto curve, paper 000's guideline)."""
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    if epoch_pos is None:              # callers that know only the run's progress
        epoch_pos = progress * cfg.epochs
    if step is None and cfg.iterations:
        step = round(progress * cfg.iterations)
    if cfg.schedule == "step" and cfg.lr_step_unit == "iteration" and step is None:
        raise ValueError("a step schedule in iterations needs the global step: pass step=")
    if cfg.schedule == "step":
        at = float(step if cfg.lr_step_unit == "iteration" else epoch_pos)
        return cfg.lr_gamma ** sum(1 for p in cfg.lr_step_points() if at >= p)
    if cfg.schedule == "cyclic":
        phase = (epoch_pos % cfg.lr_cycle) / cfg.lr_cycle
        return 0.5 * (1.0 + math.cos(math.pi * phase))
    return 1.0


def sync_psg_average(avg: torch.nn.Module, live: torch.nn.Module) -> None:
    """SWA over PSG layers: the averaged float view becomes the averaged copy's master
    weights (rounded to the live layer's master grid), and the live layers' scale maxima
    are carried over, so the averaged model runs the same fixed-point contract."""
    pairs = [(a, b) for a, b in zip(avg.modules(), live.modules()) if isinstance(b, PSGConv2d)]
    with torch.no_grad():
        for a, b in pairs:
            for name, buf in b.named_buffers(recurse=False):
                if name != "w_master":
                    getattr(a, name).copy_(buf)
            f = int(b.frac_bits)
            codes = torch.round(a.weight.detach().double() * 2.0 ** f)      # exact: a power of two
            a.w_master.copy_(codes.clamp(-2**31, 2**31 - 1).to(torch.int32))
            a._rederive()


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch: int = 500) -> float:
    """Top-1 accuracy (%). Gated models keep gating at test time (that is their inference)."""
    return evaluate_topk(model, x, y, device, batch)[0]


@torch.no_grad()
def evaluate_topk(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                  batch: int = 500) -> tuple[float, float]:
    """(top-1, top-5) accuracy (%), one pass; top-5 is top-k with k = min(5, classes)."""
    model.eval()
    c1 = c5 = 0
    for i in range(0, x.shape[0], batch):
        out = model(x[i: i + batch].to(device)).cpu()
        yy = y[i: i + batch]
        top = out.topk(min(5, out.shape[1]), dim=1).indices
        c1 += int((top[:, 0] == yy).sum())
        c5 += int((top == yy[:, None]).any(1).sum())
    n = max(1, x.shape[0])
    return 100.0 * c1 / n, 100.0 * c5 / n


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by ``train``: plain tensors and containers only (weights_only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ConfigError(f"checkpoint {path} is unreadable or not an e2train checkpoint ({e.__class__.__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); delete it to start over, or point "
                          "out_dir elsewhere") from e


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)            # atomic: an interrupted save never leaves half a file


@dataclass
class _Run:
    """What one run carries from step to step: set up by ``_setup``, advanced by the epochs."""

    cfg: TrainConfig
    data: tdata.Data
    device: torch.device
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    base_lrs: list[float]
    policy: Compose
    plat: Any                          # core.energy platform the work is priced on
    psg_layers: list[PSGConv2d]
    epochs: int
    nb: int                            # batches per epoch
    total_steps: int
    swa_model: torch.optim.swa_utils.AveragedModel | None
    swa_from: int                      # first epoch whose weights are averaged
    meter: WorkMeter
    ctx: StepContext
    out: Path | None = None
    ckpt_path: Path | None = None
    records: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    wall_total: float = 0.0
    mem: PeakMemory | None = None
    show: bool = False
    on_event: Callable[[dict], None] | None = None     # the run record's events (core.run_record.EVENTS)


def train(cfg: TrainConfig, policies: Iterable[Policy] = (), *, model: torch.nn.Module | None = None,
          data: tdata.Data | None = None, energy_model: EnergyModel | str | None = None,
          callback: Callable[[dict], None] | None = None,
          on_event: Callable[[dict], None] | None = None) -> RunResult:
    """Train per ``cfg`` with E2-Train's policies from the config plus ``policies``.

    ``model``/``data`` override what the config would build (tests, the harness).
    ``callback(record)`` is called after every epoch with the trainer's epoch record
    (accuracy in percent). ``on_event(event)`` gets the run record's events, as the device
    trainer emits them (``started``, ``epoch``, ``finished``; accuracy a fraction, docs/records.md).
    """
    run = _setup(cfg, policies, model, data, energy_model)
    run.on_event = on_event
    if cfg.resume and run.ckpt_path and run.ckpt_path.exists():
        _resume(run, load_checkpoint(run.ckpt_path))
    # for policies that need them: the config, the run's own data (methods look samples up
    # by index) and the work meter (``meter.forward_only()`` tallies a forward pass a method
    # runs outside the training step)
    run.ctx.state.update(config=cfg, data=run.data, work_meter=run.meter)
    run.policy.on_train_start(run.ctx)
    run.mem = PeakMemory(run.device, run.model)   # peak memory beside time and energy (memory.py)
    run.show = _show_progress(cfg)
    _emit(run, "started", total_epochs=run.epochs, batches_per_epoch=run.nb,
          resumed_at={"epoch": run.start_epoch, "batch": 0})
    for epoch in range(run.start_epoch, run.epochs):
        stats, t_epoch, e0 = _train_epoch(run, epoch)
        _end_epoch(run, epoch, stats, t_epoch, e0, callback)
    return _finish(run)


def _setup(cfg: TrainConfig, policies: Iterable[Policy], model: torch.nn.Module | None,
           data: tdata.Data | None, energy_model: EnergyModel | str | None) -> _Run:
    """Data, model, optimiser, policies, schedule length, SWA copy and work meter."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    data = data or tdata.load(cfg.dataset, cfg.data_dir, cfg.limit_train)
    if cfg.val_split and data.x_val is None:
        data = tdata.split_validation(data, cfg.val_split, cfg.seed)
    torch.manual_seed(cfg.seed)
    if model is None:
        model = build_model(cfg.model, data.in_channels, data.num_classes, precision=cfg.precision,
                            beta=cfg.beta, gated=cfg.slu)
        if cfg.slu and cfg.slu_cell != "lstm":
            set_gate_cell(model, cfg.slu_cell)
    model.to(device)
    if not cfg.psg_exact:
        set_exact(model, False)
    set_act_scale(model, cfg.act_scale)
    sign_convs = cfg.precision in SIGN_PRECISIONS
    opt = build_optimizer(model, sign_convs=sign_convs, lr=cfg.lr, conv_lr=cfg.conv_lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    policy = Compose([*policies_from_config(cfg), *policies])
    epochs = cfg.run_epochs
    nb = tdata.num_batches(data, cfg.batch_size)
    if cfg.max_batches:
        nb = min(nb, cfg.max_batches)
    total_steps = epochs * nb
    if cfg.iterations:                 # iteration-based training: as many epochs as the steps need
        total_steps = cfg.iterations
        epochs = -(-cfg.iterations // nb)
    swa_model = torch.optim.swa_utils.AveragedModel(model) if cfg.swa else None
    meter = WorkMeter(model)          # after the SWA copy: the copy must not carry the hooks
    ctx = StepContext(model=model, optimizer=opt, epochs=epochs, batches_per_epoch=nb, device=device,
                      generator=torch.Generator().manual_seed(cfg.seed + 3))
    out = Path(cfg.out_dir) if cfg.out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    return _Run(cfg=cfg, data=data, device=device, model=model, opt=opt, base_lrs=[g["lr"] for g in opt.param_groups],
                policy=policy, plat=energy_platform(energy_model),
                psg_layers=[m for m in model.modules() if isinstance(m, PSGConv2d)], epochs=epochs, nb=nb,
                total_steps=total_steps, swa_model=swa_model, swa_from=int(math.floor(cfg.swa_start * epochs)),
                meter=meter, ctx=ctx, out=out, ckpt_path=out / CHECKPOINT if out else None)


# config keys a checkpoint must share with the run that resumes it
_RESUME_KEYS = ("dataset", "model", "precision", "beta", "act_scale", "batch_size", "seed", "smd", "smd_p", "slu",
                "stochastic_depth", "epochs", "smd_energy_ratio", "schedule")


def _resume(run: _Run, st: dict) -> None:
    """Continue from checkpoint ``st``: weights, optimiser, policies, RNGs, records and work."""
    cfg, ckpt_path = run.cfg, run.ckpt_path
    # fixed-point layers trained under another contract (no field: v1) followed another
    # MSB split, so their master weights and scale state are not this contract's
    if run.psg_layers and st.get("contract_version", 1) != CONTRACT_VERSION:
        raise ConfigError(f"cannot resume: the checkpoint {ckpt_path} was trained under fixed-point contract "
                          f"v{st.get('contract_version', 1)}, this e2train implements v{CONTRACT_VERSION} "
                          "(docs/fixed-point.md); start over with another out_dir or resume = false")
    saved_cfg = json.loads(st["config"])
    for k in _RESUME_KEYS:
        if saved_cfg.get(k) != getattr(cfg, k):
            raise ConfigError(f"cannot resume: the checkpoint was written with {k} = {saved_cfg.get(k)!r}, "
                              f"this config has {getattr(cfg, k)!r}")
    try:
        run.model.load_state_dict(st["model"])
        run.opt.load_state_dict(st["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ConfigError(f"checkpoint {ckpt_path} does not fit this model: {e}") from e
    run.policy.load_state_dict(st.get("policy", {}))
    run.ctx.generator.set_state(st["ctx_generator"])
    if run.swa_model is not None and "swa" in st:
        run.swa_model.load_state_dict(st["swa"])
    if "torch_rng" in st:          # sampled gates and policies that use torch's global RNGs
        set_rng_state(st["torch_rng"] if isinstance(st["torch_rng"], dict) else {"cpu": st["torch_rng"]}, run.device)
    run.records = json.loads(st["records"])
    run.meter.work = Work.from_dict(json.loads(st["work"]))
    run.start_epoch = int(st["epoch"])
    run.wall_total = run.records[-1]["wall_s"] if run.records else 0.0


def _show_progress(cfg: TrainConfig) -> bool:
    """Progress bars: as configured, else only on a terminal; never without tqdm."""
    try:
        import tqdm  # noqa: F401
    except ImportError:  # pragma: no cover - tqdm is in the host extra
        return False
    return sys.stderr.isatty() if cfg.progress is None else cfg.progress


def _train_epoch(run: _Run, epoch: int) -> tuple[dict, float, tuple[float, int]]:
    """One epoch of steps: (tallies, training seconds, (energy, MACs) at the epoch's start)."""
    ctx, nb = run.ctx, run.nb
    ctx.epoch = epoch
    for m in run.psg_layers:
        m.reset_stats()
    run.policy.on_epoch_start(ctx)
    run.model.train()
    e0 = (run.meter.priced(run.plat)["total_j"], run.meter.work.total_macs)
    stats = dict(run=0, skipped=0, samples=0, loss=0.0, correct=0, exec_w=0.0, exec_n=0)
    t_epoch = 0.0
    fetch = [0.0]                  # seconds the last batch took to load (and augment)
    it = _timed(tdata.train_batches(run.data, run.cfg.batch_size, epoch, run.cfg.seed, run.cfg.augment,
                                        run.cfg.augment_pad), fetch)
    if run.show:
        from tqdm import tqdm
        it = tqdm(it, total=nb, desc=f"epoch {epoch + 1}/{run.epochs}", leave=False)
    for b, (x, y, idx) in enumerate(it):
        if b >= nb or epoch * nb + b >= run.total_steps:
            break
        # the clock counts loading the batch too, dropped batches included (paper 000: the
        # clock counts everything a method causes)
        t0 = time.perf_counter() - fetch[0]
        logits = _step(run, epoch, b, x, y, idx)
        t_epoch += time.perf_counter() - t0
        if logits is None:
            stats["skipped"] += 1          # no forward, no backward, no optimizer step
        else:
            _tally(run, stats, logits)
    return stats, t_epoch, e0


def _step(run: _Run, epoch: int, b: int, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor | None:
    """One training step with the policy hooks; the logits, or None if the policies skipped it."""
    ctx, policy, model, opt, nb = run.ctx, run.policy, run.model, run.opt, run.nb
    ctx.batch_in_epoch, ctx.step = b, epoch * nb + b
    ctx.x, ctx.y, ctx.indices = x, y, idx          # on the host until the batch is known to run
    ctx.logits = ctx.loss = ctx.sample_losses = None
    f = lr_factor(run.cfg, ctx.step / run.total_steps, epoch + b / nb, ctx.step)
    for g, base in zip(opt.param_groups, run.base_lrs):
        g["lr"] = base * f
    if policy.skip_batch(ctx):
        return None                                # a dropped batch is not even copied to the device
    ctx.x, ctx.y = x.to(run.device), y.to(run.device)
    keep = policy.sample_mask(ctx)
    if keep is not None:
        keep = keep.to(run.device)
        if not bool(keep.any()):
            return None
        ctx.x, ctx.y, ctx.indices = ctx.x[keep], ctx.y[keep], ctx.indices[keep.cpu()]
    masks = policy.block_masks(ctx)
    policy.before_forward(ctx)
    run.meter.active = True
    with run.mem.step():                  # the memory this step holds for its backward
        logits = model(ctx.x, block_masks=masks) if masks is not None else model(ctx.x)
        sample_losses = F.cross_entropy(logits, ctx.y, reduction="none")
        ctx.logits, ctx.sample_losses = logits, sample_losses.detach()
        ctx.loss = sample_losses.mean()
        extra = policy.extra_loss(ctx)
        loss = ctx.loss if extra is None else ctx.loss + extra
        ctx.loss = loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
    run.meter.collect_backward()
    run.meter.active = False
    policy.after_backward(ctx)
    skip = policy.skip_params(ctx)
    if skip:
        for n_, p in model.named_parameters():
            if n_ in skip:
                p.grad = None
    opt.step()
    policy.after_step(ctx)
    return logits


def _tally(run: _Run, stats: dict, logits: torch.Tensor) -> None:
    """Add a step that ran to the epoch's tallies (loss, accuracy, executed fraction)."""
    ctx, model = run.ctx, run.model
    n = ctx.x.shape[0]
    stats["run"] += 1
    stats["samples"] += n
    stats["loss"] += float(ctx.sample_losses.sum())
    stats["correct"] += int((logits.detach().argmax(1) == ctx.y).sum())
    if hasattr(model, "exec_ratio") and getattr(model, "last_masks", None):
        stats["exec_w"] += model.exec_ratio(tuple(ctx.x.shape[2:])) * n
        stats["exec_n"] += n


def _end_epoch(run: _Run, epoch: int, stats: dict, t_epoch: float, e0: tuple[float, int],
               callback: Callable[[dict], None] | None) -> None:
    """SWA, evaluation and record, the policies' epoch end, callback, checkpoint, next optimiser."""
    if run.swa_model is not None and epoch >= run.swa_from:
        run.swa_model.update_parameters(run.model)
    run.wall_total += t_epoch
    rec = _epoch_record(run, epoch, stats, t_epoch, e0)
    test_acc, energy = rec["test_acc"], rec["energy_j"]      # as measured, whatever a policy adds
    # on_epoch_end runs after this epoch's evaluation (rec has test_acc, energy, counts)
    # and before the record is kept, the callback sees it and the checkpoint is written:
    # keys a policy adds are in all three
    run.policy.on_epoch_end(run.ctx, rec)
    # work a method does between steps (Learn&Drop's cache fill) is training time too
    extra = float(rec.get("method_wall_s", 0.0))
    if extra:
        run.wall_total += extra
        rec["epoch_wall_s"] += extra
        rec["wall_s"] = run.wall_total
    run.records.append(rec)
    if run.show:
        print(f"epoch {epoch + 1}/{run.epochs}: test {test_acc:.2f}%  energy {energy:.3g} J (modelled)  "
              f"{t_epoch:.1f} s", file=sys.stderr)
    if callback:
        callback(rec)
    _emit(run, "epoch", **rr.torch_epoch(rec))
    if run.ckpt_path:
        _save_checkpoint(run.ckpt_path, _checkpoint_state(run, epoch))
    nxt = run.policy.optimizer_for_epoch(run.ctx)
    if nxt is not None:
        run.opt = run.ctx.optimizer = nxt
        run.base_lrs = [g["lr"] for g in nxt.param_groups]


def _epoch_record(run: _Run, epoch: int, stats: dict, t_epoch: float, e0: tuple[float, int]) -> dict:
    """The epoch's record (``EPOCH_KEYS``): evaluation, modelled energy, counts, memory."""
    data, device, mem = run.data, run.device, run.mem
    # evaluation is kept out of the training clock; decisions read val_acc, the test set
    # only reports
    val_acc = evaluate(run.model, data.x_val, data.y_val, device) if data.x_val is not None else None
    test_acc, test_top5 = evaluate_topk(run.model, data.x_test, data.y_test, device)
    priced = run.meter.priced(run.plat)
    energy = priced["total_j"]
    n_dec = sum(m.n_decided for m in run.psg_layers)
    return {
        "epoch": epoch + 1,
        "train_loss": stats["loss"] / max(1, stats["samples"]),
        "train_acc": 100.0 * stats["correct"] / max(1, stats["samples"]),
        "test_acc": test_acc,
        "test_top5": test_top5,
        "val_acc": val_acc,
        "epoch_wall_s": t_epoch,
        "wall_s": run.wall_total,
        "energy_j": energy,
        "epoch_energy_j": energy - e0[0],
        "energy_kind": ENERGY_KIND,
        "energy_platform": run.plat.name,
        "energy_parts_j": priced["parts_j"],
        "batches_run": stats["run"],
        "batches_skipped": stats["skipped"],
        "samples_run": stats["samples"],
        "exec_ratio": stats["exec_w"] / stats["exec_n"] if stats["exec_n"] else 1.0,
        "predicted_frac": (sum(m.n_predicted for m in run.psg_layers) / n_dec) if n_dec else None,
        "macs": run.meter.work.total_macs - e0[1],
        "peak_mem_mb": mem.peak_bytes / 2**20,
        "mean_mem_mb": mem.mean_bytes / 2**20,
        "peak_mem_kind": mem.kind,
        "lr": run.opt.param_groups[0]["lr"],
    }


def _checkpoint_state(run: _Run, epoch: int) -> dict:
    """Everything ``_resume`` needs to continue after ``epoch`` (state dicts and JSON only)."""
    state = {"model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "policy": run.policy.state_dict(),
             "ctx_generator": run.ctx.generator.get_state(), "torch_rng": rng_state(run.device),
             "epoch": epoch + 1,
             "records": json.dumps(run.records), "work": json.dumps(run.meter.work.to_dict()),
             "config": json.dumps(run.cfg.to_dict()), "contract_version": CONTRACT_VERSION}
    if run.swa_model is not None:
        state["swa"] = run.swa_model.state_dict()
    return state


def _finish(run: _Run) -> RunResult:
    """The SWA model's batch norm and accuracy, the result, and ``records.json``."""
    records, data, device = run.records, run.data, run.device
    final_model = run.model
    if run.swa_model is not None and records:
        if run.psg_layers:
            sync_psg_average(run.swa_model.module, run.model)
        x_bn = data.x_train[: min(2048, data.x_train.shape[0])].to(device)
        torch.optim.swa_utils.update_bn([(x_bn,)], run.swa_model)
        final_model = run.swa_model.module
        records[-1]["swa_test_acc"] = evaluate(final_model, data.x_test, data.y_test, device)
    run.meter.close()
    accs = [r["test_acc"] for r in records]
    final = records[-1].get("swa_test_acc", records[-1]["test_acc"]) if records else float("nan")
    priced = run.meter.priced(run.plat)
    result = RunResult(config=run.cfg.to_dict(), records=records, final_test_acc=final,
                       best_test_acc=max(accs) if accs else float("nan"), wall_s=run.wall_total,
                       energy_j=priced["total_j"], energy_kind=ENERGY_KIND,
                       energy_platform=run.plat.name, energy_parts_j=priced["parts_j"],
                       work=run.meter.work, model=final_model,
                       checkpoint=str(run.ckpt_path) if run.ckpt_path else None)
    record = rr.torch_record(result.to_dict(), env=rr.environment(platform=_platform(run.device)))
    result.record = record
    _emit(run, "finished", final=record.final)
    if run.out:
        rr.save(record, run.out / rr.RECORD_FILE)       # the run record, docs/records.md
    return result


def _emit(run: _Run, event: str, **fields) -> None:
    if run.on_event is not None:
        run.on_event({"event": event, **fields})


def _platform(device: torch.device) -> str:
    """Where a torch run trained: the host, torch's version and the device."""
    import platform
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return f"{platform.system()} {platform.machine()}, torch {torch.__version__} on {device.type} ({where})"
