"""Pipeline-parallel training: the worker every stage process runs, and ``train_pipeline``.

    from e2train.torch.distributed.pipeline import train_pipeline
    res = train_pipeline(TrainConfig(dataset="sat6synthetic", model="modified_alexnet", ...),
                         DistConfig(pipeline=2, pipe_schedule="async", split="paper"))

Rules shared with the one-process trainer (``e2train.torch.trainer``), so that a pipelined
run means the same as a sequential one: the same model built from the same seed (every rank
builds it whole and keeps its slice), the same batch order and augmentation
(``data.train_batches``), the same optimizer (``optim.build_optimizer``) and learning-rate
rule (``trainer.lr_factor`` at each mini-batch's global step), the same SMD draw
(``policy.RandomBatchSkip`` seeded with seed + 1: every rank draws the same sequence, so all
stages drop the same mini-batches without a message). A partial last batch of an epoch is
dropped (torch's pipelining schedules need one shape per step; all schedules, and the
sequential reference with ``pipeline = 1``, drop it alike).

Every record's times are wall clock on this machine; no energy is modelled for distributed
runs (the work meter is not attached to stages).
"""
from __future__ import annotations

import copy
import os
import sys
import time
import types

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .. import data as tdata
from ..models import build_model, parse_model
from ..optim import build_optimizer
from ..policy import RandomBatchSkip
from ..psg import set_exact
from ..slu import SLU, set_gate_cell
from ..trainer import SIGN_PRECISIONS, ConfigError, TrainConfig, lr_factor
from . import launch
from .async_1f1b import AsyncStage, inject_failure
from .config import DistConfig, DistConfigError
from .p2p import P2P, TAG_EVAL
from .partition import PAPER_SPLITS, analytic_speedup, analytic_step_time, balance, format_profile, \
    profile_layers, stage_times
from .stages import check_bounds, layers_of, stage_module

PIPELINE_PRECISIONS = ("fp32", "signsgd", "int8_fp32grad", "int8_int16grad", "psg")


def check_pipeline_config(cfg: TrainConfig, dcfg: DistConfig) -> None:
    """One-line refusals of what the pipeline does not compose with (and why)."""
    if cfg.precision not in PIPELINE_PRECISIONS:
        raise ConfigError(f"--pipeline trains precision {', '.join(PIPELINE_PRECISIONS)}, not {cfg.precision!r}")
    if dcfg.vertical_sync and cfg.precision in ("psg", "int8_int16grad"):
        raise ConfigError("vertical_sync versions parameters; PSG layers run on the newest integer masters: "
                          "use vertical_sync with fp32, signsgd or int8_fp32grad")
    if cfg.slu and dcfg.pipe_schedule != "async":
        raise ConfigError(f"--pipeline with slu runs pipe_schedule async (the gates' state travels with the "
                          f"activation), not {dcfg.pipe_schedule}")
    if cfg.slu and dcfg.vertical_sync:
        raise ConfigError("--pipeline with slu does not run vertical_sync (it trained to 40 % where the "
                          "schedule without it reaches 97 % on digits, cause not found): drop --vertical-sync")
    if cfg.slu and not isinstance(dcfg.split, list):
        raise ConfigError(f"--pipeline with slu needs an explicit split of layer indices (e.g. split = [0, 2, "
                          f"{len_hint(cfg)}] for {cfg.model}), not {dcfg.split!r}: the profiler times plain layers")
    if cfg.stochastic_depth or cfg.swa or cfg.resume:
        raise ConfigError("--pipeline does not run stochastic_depth, swa or resume; drop them or train without --pipeline")
    if dcfg.pipe_schedule in ("gpipe", "1f1b") and dcfg.pipeline < 2:
        raise ConfigError(f"pipe_schedule {dcfg.pipe_schedule} needs pipeline >= 2 stages")
    if dcfg.pipe_schedule in ("gpipe", "1f1b") and cfg.batch_size < dcfg.microbatches:
        raise ConfigError(f"batch_size {cfg.batch_size} < microbatches {dcfg.microbatches}")


def len_hint(cfg: TrainConfig) -> str:
    """Layers in a ResNet-CIFAR chain (stem, blocks, head), for the hint of an error."""
    kind, arg = parse_model(cfg.model)
    return str((int(arg) - 2) // 2 + 2) if kind == "resnet" else "n_layers"


def precheck_data(cfg: TrainConfig) -> None:
    """Missing SAT-6 files end here with one line, not once per spawned process."""
    if cfg.dataset.lower().replace("-", "") == "sat6":
        from ...data.sat6 import find_files
        find_files(cfg.data_dir)


def launch_and_record(worker, nprocs: int, cfg: TrainConfig, dcfg: DistConfig, recorded=lambda res: res) -> dict:
    """Spawn nprocs workers on the configs and write recorded(result) to out_dir/records.json as
    a run record (docs/records.md); the data is checked once here first."""
    precheck_data(cfg)
    payload = {"train": cfg.to_dict(), "dist": dcfg.to_dict(), "device": cfg.device, "threads": cfg.threads or 1}
    res = launch.run(worker, nprocs, payload, timeout_s=dcfg.timeout_s)
    if res is not None and cfg.out_dir:
        from pathlib import Path

        from ...core import run_record as rr
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rr.save(rr.torch_record(recorded(res), env=rr.environment()), out / rr.RECORD_FILE)
    return res


def train_pipeline(cfg: TrainConfig, dcfg: DistConfig) -> dict:
    cfg.validate()
    dcfg.validate()
    if not dcfg.pipeline:
        raise DistConfigError("train_pipeline needs pipeline >= 1")
    check_pipeline_config(cfg, dcfg)
    # the per-microbatch traces are for tests; records.json keeps the rest
    return launch_and_record(pipeline_worker, dcfg.pipeline, cfg, dcfg,
                             lambda res: {k: v for k, v in res.items() if k != "traces"})


# -- the worker ------------------------------------------------------------------------------
def fail_point(dcfg: DistConfig, rank: int) -> tuple[int, str] | None:
    """(mini-batches done, "raise" | "exit") where this rank fails, from ``fail_at``."""
    if dcfg.fail_at and dcfg.fail_at[0] == rank:
        return int(dcfg.fail_at[1]), str(dcfg.fail_at[2]) if len(dcfg.fail_at) > 2 else "raise"
    return None


def choose_split(cfg: TrainConfig, dcfg: DistConfig, model, layers, data, device, rank: int):
    """(bounds, profile or None); a balanced split is profiled on rank 0 (on a copy of the
    model: profiling must not move BatchNorm statistics) and broadcast."""
    S = dcfg.pipeline
    if isinstance(dcfg.split, list):
        check_bounds(dcfg.split, len(layers))
        return list(dcfg.split), None
    if dcfg.split == "paper":
        kind = parse_model(cfg.model)[0]
        if kind not in PAPER_SPLITS or S not in PAPER_SPLITS[kind]:
            raise ConfigError(f"paper 003 gives splits for modified_alexnet into {sorted(PAPER_SPLITS['modified_alexnet'])} "
                              f"stages only, not {cfg.model} into {S}: use split = \"balanced\"")
        return list(PAPER_SPLITS[kind][S]), None
    obj: list = [None, None]
    if rank == 0:
        twin = copy.deepcopy(model).to(device)
        x, y, _ = next(tdata.train_batches(data, cfg.batch_size, 0, cfg.seed, cfg.augment, cfg.augment_pad))
        prof = profile_layers(layers_of(twin), x.to(device), y.to(device), repeats=dcfg.profile_repeats)
        bounds = balance([p.total_ms for p in prof], S)
        obj = [bounds, [vars(p) for p in prof]]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(obj, src=0)
    return obj[0], obj[1]


@torch.no_grad()
def evaluate_pipeline(module, rank: int, world: int, x_test, y_test, p2p: P2P, device, batch: int = 500) -> float:
    """Top-1 accuracy (%) of the whole pipeline on the test set, forward only (all ranks call)."""
    module.eval()
    correct = 0
    for i in range(0, x_test.shape[0], batch):
        h = x_test[i: i + batch].to(device) if rank == 0 else p2p.recv_all(rank - 1, TAG_EVAL)[0]
        h = module(h)
        if rank < world - 1:
            p2p.send_all(h, rank + 1, TAG_EVAL)
        else:
            if not isinstance(h, torch.Tensor):
                h = h[0]             # a gated model's head: (logits, executed FLOPs ratio)
            correct += int((h.argmax(1).cpu() == y_test[i: i + batch]).sum())
    p2p.wait()
    module.train()
    acc = torch.tensor([100.0 * correct / max(1, x_test.shape[0])], dtype=torch.float64, device=device)
    if world > 1:
        dist.broadcast(acc, src=world - 1)
    return float(acc.item())


def epoch_batches(cfg: TrainConfig, data, epoch: int, nb: int, smd, device):
    """[(x, y, global step)] of the epoch that run, and the number SMD dropped."""
    out, dropped = [], 0
    for b, (x, y, _) in enumerate(tdata.train_batches(data, cfg.batch_size, epoch, cfg.seed, cfg.augment, cfg.augment_pad)):
        if b >= nb:
            break
        step = epoch * nb + b
        if smd is not None and smd.skip_batch(types.SimpleNamespace(step=step)):
            dropped += 1              # every rank draws the same: no stage runs it
            continue
        out.append((x.to(device), y.to(device), step))
    return out, dropped


def pipeline_worker(rank: int, world: int, payload: dict) -> dict | None:
    cfg = TrainConfig.from_dict(payload["train"])
    dcfg = DistConfig.from_dict(payload["dist"])
    device = launch.local_device(cfg.device, int(os.environ.get("LOCAL_RANK", rank)))
    data = tdata.load(cfg.dataset, cfg.data_dir, cfg.limit_train)
    module, bounds, profile = _build_stage(cfg, dcfg, data, device, rank)
    sign_convs = cfg.precision in SIGN_PRECISIONS
    opt = build_optimizer(module, sign_convs=sign_convs, lr=cfg.lr, conv_lr=cfg.conv_lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    nb = data.x_train.shape[0] // cfg.batch_size
    if cfg.max_batches:
        nb = min(nb, cfg.max_batches)
    if nb < 1:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the training set ({data.x_train.shape[0]})")
    total_steps = cfg.run_epochs * nb
    smd = RandomBatchSkip(cfg.smd_p, seed=cfg.seed + 1) if cfg.smd else None
    p2p = P2P(device)
    steps: dict[int, int] = {}           # micro-batch index in the epoch -> global step

    def set_lr(mb: int) -> None:
        f = lr_factor(cfg, steps[mb] / total_steps)
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * f

    fail_at = fail_point(dcfg, rank)
    if dcfg.pipe_schedule == "async":
        runner = AsyncStage(module, rank, world, opt, p2p, stash=dcfg.stash, vertical_sync=dcfg.vertical_sync,
                            trace=dcfg.trace, set_lr=set_lr, fail_at=fail_at,
                            penalty=SLU(cfg.slu_alpha, cfg.slu_target, cfg.slu_cost).penalty if cfg.slu else None)
    else:
        runner = _TorchSchedule(module, rank, world, opt, dcfg, device, set_lr, fail_at)

    records, wall, ops_first = [], 0.0, None
    for epoch in range(cfg.run_epochs):
        batches, dropped = epoch_batches(cfg, data, epoch, nb, smd, device)
        steps.clear()
        steps.update({k: s for k, (_, _, s) in enumerate(batches)})
        t_epoch = _run_epoch(runner, batches, world)
        wall += t_epoch
        if ops_first is None:
            ops_first = list(runner.stats.ops)
        acc = evaluate_pipeline(module, rank, world, data.x_test, data.y_test, p2p, device)
        records.append(_epoch_record(runner, world, epoch, acc, t_epoch, wall, len(batches), dropped, cfg.slu))
        if rank == 0 and cfg.progress:
            r = records[-1]
            print(f"epoch {r['epoch']:3d}  test {acc:6.2f}%  loss {r['train_loss']:.4f}  step {r['step_ms']:.1f} ms  "
                  f"wall {wall:.1f} s", file=sys.stderr, flush=True)
    p2p.wait()
    infos = _gather(_stage_info(runner, p2p, rank, bounds, ops_first), world)
    traces = _gather(getattr(runner, "trace", None), world) if dcfg.trace else None
    if rank != 0:
        return None
    return _pipeline_result(cfg, dcfg, records, wall, bounds, profile, infos, traces, world)


def _build_stage(cfg: TrainConfig, dcfg: DistConfig, data, device, rank: int):
    """(this rank's stage module, bounds, profile or None): the whole model built from the
    seed on every rank, split, and this rank's slice kept."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.in_channels, data.num_classes, precision=cfg.precision, beta=cfg.beta,
                        gated=cfg.slu)
    if cfg.slu and cfg.slu_cell != "lstm":
        set_gate_cell(model, cfg.slu_cell)              # as trainer.train, after the same draws
    layers = layers_of(model, data.image_hw if cfg.slu else None)
    bounds, profile = choose_split(cfg, dcfg, model, layers, data, device, rank)
    if rank == 0 and profile is not None:
        from .partition import LayerTime
        print(format_profile([LayerTime(**p) for p in profile], bounds), file=sys.stderr, flush=True)
    module = stage_module(layers, bounds, rank).to(device).train()
    if not cfg.psg_exact:
        set_exact(module, False)
    return module, bounds, profile


def _run_epoch(runner, batches: list, world: int) -> float:
    """The epoch's mini-batches through the pipeline; its wall seconds (all ranks in step)."""
    runner.reset_epoch()
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    runner.run([(x, y) for x, y, _ in batches])
    if world > 1:
        dist.barrier()
    return time.perf_counter() - t0


def _epoch_record(runner, world: int, epoch: int, acc: float, t_epoch: float, wall: float, n_run: int,
                  dropped: int, slu: bool) -> dict:
    """The epoch's record; loss, accuracy and the executed FLOPs share are the last stage's (it
    holds the labels and the gates' summed ratio)."""
    st = runner.stats
    mine = {"loss": st.loss, "correct": st.correct, "samples": st.samples, "exec_w": getattr(st, "exec_w", 0.0)}
    last = _gather(mine, world)[-1]
    return {"epoch": epoch + 1, "train_loss": last["loss"] / max(1, last["samples"]),
            "train_acc": 100.0 * last["correct"] / max(1, last["samples"]), "test_acc": acc,
            "epoch_wall_s": t_epoch, "wall_s": wall, "batches_run": n_run,
            "batches_skipped": dropped,
            "exec_ratio": last["exec_w"] / max(1, last["samples"]) if slu else 1.0,
            "step_ms": 1e3 * t_epoch / max(1, n_run),
            "energy_kind": "none (wall clock only)"}


def _stage_info(runner, p2p: P2P, rank: int, bounds: list[int], ops_first) -> dict:
    """This stage's layers, times, messages and memory."""
    return {"stage": rank, "layers": [bounds[rank], bounds[rank + 1] - 1], **runner.times_dict(),
            "send_act_ms": 1e3 * p2p.send_s[1] / max(1, runner.times.n_fwd),
            "send_grad_ms": 1e3 * p2p.send_s[2] / max(1, runner.times.n_bwd),
            "recv_wait_ms": 1e3 * (p2p.recv_wait_s[1] + p2p.recv_wait_s[2]) / max(1, runner.times.n_fwd),
            "bytes_sent": p2p.bytes_sent, **runner.memory(), "ops_epoch1": ops_first}


def _pipeline_result(cfg: TrainConfig, dcfg: DistConfig, records: list[dict], wall: float, bounds: list[int],
                     profile, infos: list[dict], traces, world: int) -> dict:
    """Rank 0's result: records, stages, and the analytic step times of the measured and
    profiled stages."""
    accs = [r["test_acc"] for r in records]
    res = {"config": cfg.to_dict(), "dist": dcfg.to_dict(), "records": records, "final_test_acc": accs[-1],
           "best_test_acc": max(accs), "wall_s": wall, "bounds": bounds, "profile": profile, "stages": infos,
           "energy_kind": "none (wall clock only)"}
    measured = [(i["fwd_ms"], i["bwd_ms"]) for i in infos if i.get("fwd_ms") is not None]
    if len(measured) == world:
        res["analytic_step_ms_measured_stages"] = analytic_step_time(measured)
        res["analytic_speedup_measured_stages"] = analytic_speedup(measured)
    if profile is not None:
        from .partition import LayerTime
        st = stage_times([LayerTime(**p) for p in profile], bounds)
        res["analytic_step_ms_profile"] = analytic_step_time(st)
        res["analytic_speedup_profile"] = analytic_speedup(st)
    if traces is not None:
        res["traces"] = traces
    return res


def _gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out: list = [None] * world
    dist.all_gather_object(out, obj)
    return out


class _TorchSchedule:
    """torch.distributed.pipelining's synchronous GPipe or 1F1B: each mini-batch split into
    micro-batches, gradients accumulated (and scaled by 1/micro-batches: the mean over the
    mini-batch), one optimizer step per mini-batch after the flush."""

    def __init__(self, module, rank, world, opt, dcfg: DistConfig, device, set_lr, fail_at):
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
        self.rank, self.world, self.opt, self.set_lr, self.fail_at = rank, world, opt, set_lr, fail_at
        self.stage = PipelineStage(module, rank, world, device)
        # the stage infers its shapes by running a forward and backward on uninitialised
        # buffers; that forward moved BatchNorm's running statistics to inf (measured: test
        # accuracy fell to chance), so the module's buffers are put back after the inference
        # (after its backward: the forward's graph may hold them)
        infer_f, infer_b = self.stage._forward_metadata_inference, self.stage._backward_metadata_inference
        saved: dict = {}

        def infer_forward(*a, **kw):
            saved.update({n: b.clone() for n, b in module.named_buffers()})
            return infer_f(*a, **kw)

        def infer_backward(*a, **kw):
            try:
                return infer_b(*a, **kw)
            finally:
                with torch.no_grad():
                    for n, b in module.named_buffers():
                        b.copy_(saved[n])
        self.stage._forward_metadata_inference = infer_forward
        self.stage._backward_metadata_inference = infer_backward
        cls = ScheduleGPipe if dcfg.pipe_schedule == "gpipe" else Schedule1F1B
        self.sched = cls(self.stage, n_microbatches=dcfg.microbatches, loss_fn=lambda out, y: F.cross_entropy(out, y))
        from .async_1f1b import StageTimes, TrainStats
        self.times, self.stats = StageTimes(), TrainStats()
        self._stats_cls = TrainStats
        self.n_done = 0

    def reset_epoch(self):
        self.stats = self._stats_cls()

    def run(self, batches):
        for k, (x, y) in enumerate(batches):
            if self.fail_at is not None and self.n_done >= self.fail_at[0]:
                inject_failure(self.fail_at[1], self.rank, k)
            self.opt.zero_grad(set_to_none=True)
            self.set_lr(k)
            if self.rank == 0:
                self.sched.step(x)
            elif self.rank == self.world - 1:
                losses: list = []
                out = self.sched.step(target=y, losses=losses)
                n = int(y.shape[0])
                self.stats.loss += float(sum(float(v.detach()) for v in losses)) / max(1, len(losses)) * n
                self.stats.correct += int((out.detach().argmax(1) == y).sum())
                self.stats.samples += n
            else:
                self.sched.step()
            self.opt.step()
            self.stats.ops.append(("step", k, self.n_done))
            self.n_done += 1
            self.times.n_fwd += 1
            self.times.n_bwd += 1

    def times_dict(self):
        return {"fwd_ms": None, "bwd_ms": None}

    def memory(self):
        return {}

