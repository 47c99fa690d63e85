"""Data-parallel training with DistributedDataParallel: ``e2train torch-train --nproc N``
(one machine) or under torchrun (several).

Same meaning as one process (docs/distributed.md):

* effective batch = ``batch_size`` (the global batch): every rank draws the same global batch
  (``data.train_batches``, seeded by (seed, epoch)) and takes its contiguous 1/N share;
* each rank's loss is its share's summed cross-entropy times N / (global batch size), so that
  DDP's gradient average is exactly the gradient of the mean loss over the global batch, also
  for a last batch that does not split evenly;
* the same optimizer and learning-rate rule per global step (``trainer.lr_factor``), the same
  SMD draw on every rank (``RandomBatchSkip`` seeded with seed + 1): all ranks drop the same
  batches, so no all-reduce waits for a rank that skipped;
* one difference stays: BatchNorm normalises each rank's share with its own statistics (as
  PyTorch's DDP does without SyncBatchNorm, which needs CUDA); running statistics are rank 0's
  (DDP broadcasts buffers).

Precisions whose backward yields signs (psg, int8_int16grad) are refused: averaging per-shard
signs is not PSG on the global batch. signsgd is allowed: its gradient is float, averaged,
then its sign taken, as in one process.
"""
from __future__ import annotations

import os
import sys
import time
import types

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from .. import data as tdata
from ..models import build_model
from ..optim import build_optimizer
from ..policy import RandomBatchSkip
from ..trainer import ConfigError, TrainConfig, evaluate, lr_factor
from . import launch
from .config import DistConfig
from .pipeline import fail_point, launch_and_record

DDP_PRECISIONS = ("fp32", "signsgd", "int8_fp32grad")


def check_ddp_config(cfg: TrainConfig, dcfg: DistConfig) -> None:
    if cfg.precision not in DDP_PRECISIONS:
        raise ConfigError(f"--nproc (data parallel) trains precision {', '.join(DDP_PRECISIONS)}; {cfg.precision!r} "
                          "gives signs per shard, and their average is not its rule on the whole batch")
    if cfg.slu or cfg.stochastic_depth or cfg.swa or cfg.resume:
        raise ConfigError("--nproc (data parallel) does not run slu, stochastic_depth, swa or resume yet; "
                          "drop them or train in one process")
    world = dcfg.world
    if cfg.batch_size < 2 * world:
        raise ConfigError(f"batch_size {cfg.batch_size} gives fewer than 2 samples per process with nproc {world} "
                          "(BatchNorm needs 2): raise batch_size or lower nproc")


def train_ddp(cfg: TrainConfig, dcfg: DistConfig) -> dict:
    cfg.validate()
    dcfg.validate()
    check_ddp_config(cfg, dcfg)
    return launch_and_record(ddp_worker, dcfg.world, cfg, dcfg)


def ddp_worker(rank: int, world: int, payload: dict) -> dict | None:
    cfg = TrainConfig.from_dict(payload["train"])
    dcfg = DistConfig.from_dict(payload["dist"])
    device = launch.local_device(cfg.device, int(os.environ.get("LOCAL_RANK", rank)))
    data = tdata.load(cfg.dataset, cfg.data_dir, cfg.limit_train)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.in_channels, data.num_classes, precision=cfg.precision,
                        beta=cfg.beta).to(device)
    net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    opt = build_optimizer(model, sign_convs=cfg.precision == "signsgd", lr=cfg.lr, conv_lr=cfg.conv_lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    epochs = cfg.run_epochs
    nb = tdata.num_batches(data, cfg.batch_size)
    if cfg.max_batches:
        nb = min(nb, cfg.max_batches)
    smd = RandomBatchSkip(cfg.smd_p, seed=cfg.seed + 1) if cfg.smd else None
    fail = fail_point(dcfg, rank)
    records, step_losses, wall, done = [], [], 0.0, 0
    for epoch in range(epochs):
        model.train()
        tot = torch.zeros(3, dtype=torch.float64, device=device)      # loss sum, correct, samples
        run = skipped = 0
        dist.barrier()
        t0 = time.perf_counter()
        for b, (x, y, _) in enumerate(tdata.train_batches(data, cfg.batch_size, epoch, cfg.seed, cfg.augment, cfg.augment_pad)):
            if b >= nb:
                break
            step = epoch * nb + b
            f = lr_factor(cfg, step / (epochs * nb))
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * f
            if smd is not None and smd.skip_batch(types.SimpleNamespace(step=step)):
                skipped += 1
                continue
            n = int(x.shape[0])
            if n < 2 * world:          # a last batch too small to give every rank 2 samples
                skipped += 1
                continue
            if fail is not None and done >= fail[0]:
                from .async_1f1b import inject_failure
                inject_failure(fail[1], rank, b)
            share = torch.tensor_split(torch.arange(n), world)[rank]
            xs, ys = x[share].to(device), y[share].to(device)
            out = net(xs)
            losses = F.cross_entropy(out, ys, reduction="none")
            opt.zero_grad(set_to_none=True)
            (losses.sum() * (world / n)).backward()       # DDP averages: the global batch mean
            opt.step()
            part = torch.stack([losses.detach().sum().double(), (out.detach().argmax(1) == ys).sum().double(),
                                torch.tensor(float(ys.shape[0]), dtype=torch.float64, device=device)])
            dist.all_reduce(part)
            step_losses.append(float(part[0] / part[2]))
            tot += part
            run += 1
            done += 1
        dist.barrier()
        t_epoch = time.perf_counter() - t0
        wall += t_epoch
        acc = torch.zeros(1, dtype=torch.float64, device=device)
        if rank == 0:
            acc[0] = evaluate(model, data.x_test, data.y_test, device)
        dist.broadcast(acc, src=0)
        records.append({"epoch": epoch + 1, "train_loss": float(tot[0] / tot[2].clamp(min=1)),
                        "train_acc": float(100 * tot[1] / tot[2].clamp(min=1)), "test_acc": float(acc[0]),
                        "epoch_wall_s": t_epoch, "wall_s": wall, "batches_run": run, "batches_skipped": skipped,
                        "step_ms": 1e3 * t_epoch / max(1, run), "energy_kind": "none (wall clock only)"})
        if rank == 0 and cfg.progress:
            r = records[-1]
            print(f"epoch {r['epoch']:3d}  test {r['test_acc']:6.2f}%  loss {r['train_loss']:.4f}  "
                  f"wall {wall:.1f} s  ({world} processes)", file=sys.stderr, flush=True)
    if rank != 0:
        return None
    accs = [r["test_acc"] for r in records]
    return {"config": cfg.to_dict(), "dist": dcfg.to_dict(), "world": world, "records": records,
            "step_losses": step_losses, "final_test_acc": accs[-1], "best_test_acc": max(accs), "wall_s": wall,
            "energy_kind": "none (wall clock only)"}

