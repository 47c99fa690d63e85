"""The distributed flags of ``e2train torch-train`` and the run they start.

    e2train torch-train --model modified_alexnet --dataset sat6 --pipeline 2 --split paper
    e2train torch-train --model resnet8 --pipeline 2 --pipe-schedule gpipe --microbatches 4
    e2train torch-train --model resnet20 --dataset cifar10 --nproc 2          # data parallel
    torchrun --nnodes 2 --nproc-per-node 1 ... $(which e2train) torch-train --nproc 2

A config file may hold the same keys in a ``[distributed]`` (or ``[pipeline]``) section.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .config import PIPE_SCHEDULES, DistConfig, DistConfigError

SECTIONS = ("distributed", "pipeline")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("distributed (torch.distributed: gloo on CPU, NCCL on CUDA)")
    g.add_argument("--pipeline", type=int, metavar="S", help="pipeline-parallel training in S stages, one process each")
    g.add_argument("--nproc", type=int, metavar="N", help="processes on this machine; without --pipeline: data parallel (DDP)")
    g.add_argument("--pipe-schedule", choices=PIPE_SCHEDULES,
                   help="async: paper 003's 1F1B with weight stashing (default); gpipe / 1f1b: torch's, synchronous")
    g.add_argument("--stash", action=argparse.BooleanOptionalAction, default=None, help="weight stashing (async)")
    g.add_argument("--vertical-sync", action=argparse.BooleanOptionalAction, default=None,
                   help="async: every stage runs mini-batch k on stage 0's weight version")
    g.add_argument("--microbatches", type=int, help="gpipe / 1f1b: micro-batches per mini-batch")
    g.add_argument("--split", help="balanced (profiled), paper (Table 4) or layer bounds like 0,7,16")
    g.add_argument("--timeout-s", type=float, help="seconds any wait on another process may last")


def pop_section(d: dict) -> dict:
    """The distributed keys of a config file's dict (removed from it)."""
    out: dict = {}
    for name in SECTIONS:
        v = d.get(name)
        if isinstance(v, dict):
            out.update(d.pop(name))
    return out


def dist_config(args: argparse.Namespace, section: dict) -> DistConfig | None:
    """The DistConfig the flags and the file ask for, or None for a one-process run."""
    d = dict(section)
    for k in ("pipeline", "nproc"):            # 0 means "unset" in a config file, never on the command line
        v = getattr(args, k, None)
        if v is not None and v < 1:
            raise DistConfigError(f"--{k} must be at least 1, got {v} (leave it out for one process)")
    for k in ("pipeline", "nproc", "pipe_schedule", "stash", "vertical_sync", "microbatches", "timeout_s"):
        v = getattr(args, k, None)
        if v is not None:
            d[k] = v
    if getattr(args, "split", None) is not None:
        s = args.split
        d["split"] = s if s in ("balanced", "paper") else _bounds(s)
    if isinstance(d.get("split"), str) and d["split"] not in ("balanced", "paper"):
        d["split"] = _bounds(d["split"])
    dcfg = DistConfig.from_dict(d)
    if os.environ.get("WORLD_SIZE") and not (dcfg.pipeline or dcfg.nproc):
        dcfg.nproc = int(os.environ["WORLD_SIZE"])        # torchrun without --nproc: data parallel
    if not dcfg.pipeline and dcfg.nproc <= 1 and not os.environ.get("WORLD_SIZE"):
        return None
    ws = os.environ.get("WORLD_SIZE")
    if ws and int(ws) != dcfg.world:
        raise DistConfigError(f"torchrun started {ws} processes but this run needs {dcfg.world} "
                              f"({'--pipeline' if dcfg.pipeline else '--nproc'} {dcfg.world})")
    return dcfg


def _bounds(s: str) -> list[int]:
    try:
        return [int(v) for v in s.replace("[", "").replace("]", "").split(",")]
    except ValueError:
        raise DistConfigError(f"split must be balanced, paper or comma-separated layer bounds like 0,7,16, got {s!r}") \
            from None


def run(cfg, dcfg: DistConfig, as_json: bool) -> int:
    from .launch import DistributedError, under_torchrun
    try:
        if dcfg.pipeline:
            from .pipeline import train_pipeline
            res = train_pipeline(cfg, dcfg)
        else:
            from .ddp import train_ddp
            res = train_ddp(cfg, dcfg)
    except DistributedError as e:
        print(f"e2train torch-train: {e}", file=sys.stderr)
        return 1
    if res is None:          # a torchrun worker other than rank 0
        return 0
    if as_json:
        print(json.dumps({k: v for k, v in res.items() if k != "traces"}, indent=1))
        return 0
    for r in res["records"]:
        print(f"epoch {r['epoch']:3d}  test {r['test_acc']:6.2f}%  loss {r['train_loss']:.4f}  "
              f"batches {r['batches_run']}/{r['batches_run'] + r['batches_skipped']}  step {r['step_ms']:.1f} ms  "
              f"wall {r['wall_s']:.1f} s")
    if dcfg.pipeline:
        print(f"stages {dcfg.pipeline} ({dcfg.pipe_schedule}{', stashing' if dcfg.stash and dcfg.pipe_schedule == 'async' else ''}), "
              f"split {res['bounds']}")
        for s in res["stages"]:
            line = f"  stage {s['stage']}: layers {s['layers'][0]}-{s['layers'][1]}"
            if s.get("fwd_ms") is not None:
                line += (f"  fwd {s['fwd_ms']:.2f} ms  bwd {s['bwd_ms']:.2f} ms  send act {s['send_act_ms']:.2f} ms  "
                         f"send grad {s['send_grad_ms']:.2f} ms  idle {s['recv_wait_ms']:.2f} ms/mb")
            if "stash_peak_bytes" in s:
                line += f"  stash peak {s['stash_peak_bytes'] / 1e6:.2f} MB ({s['stash_peak_versions']} versions)"
            print(line)
        if "analytic_step_ms_measured_stages" in res:
            print(f"analytic step from the measured stage times {res['analytic_step_ms_measured_stages']:.2f} ms "
                  f"(paper 003 sec. 4), measured {res['records'][-1]['step_ms']:.2f} ms")
    print(f"final test accuracy {res['final_test_acc']:.2f}% (best {res['best_test_acc']:.2f}%); "
          f"training wall clock {res['wall_s']:.1f} s ({'torchrun' if under_torchrun() else 'this machine'}); "
          "no energy modelled for distributed runs")
    return 0
