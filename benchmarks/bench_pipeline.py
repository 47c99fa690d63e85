"""Pipeline-parallel training measured side by side on this machine (ratios, not absolutes).

1. Paper 003's experiment in small: the Modified AlexNet on the SAT-6 stand-in
   (4 x 28 x 28, 6 classes): per-layer forward/backward times of the sequential model
   (Table 1), the paper's 2- and 4-stage splits and the balanced ones with their stage times
   and the analytic 1F1B step and speedup (section 4), then steps/s of sequential training
   (one process, the same runner) and of torch's GPipe and 1F1B and the asynchronous 1F1B with
   weight stashing on 2 processes, with each run's per-stage compute and send times, and the
   analytic step from those measured stage times beside the measured step.
2. Time-to-accuracy on digits (ResNet-8): sequential vs GPipe vs 1F1B vs async 1F1B, 2
   processes (and async on 4), the same epochs and learning-rate rule; training wall clock
   until the test accuracy first reaches the target, and the final accuracy.
3. Weak scaling (paper 003, Table 7): W_p = p x W_1 mini-batches on p stages of the async
   pipeline, T_p and the efficiency E_p = T_1 / T_p.

The CPU (2 cores) is shared with other work while this runs: absolute times are noisy, and
each comparison is measured in the same run, one configuration after another. Energy is not
measured or modelled here (wall clock only).

Usage: python benchmarks/bench_pipeline.py [--steps 8] [--batch 32] [--epochs 6] [--target 95]
       [--out runs/bench-pipeline.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def step_times(args) -> dict:
    from e2train.torch import data as tdata
    from e2train.torch.distributed.config import DistConfig
    from e2train.torch.distributed.partition import (PAPER_SPLITS, analytic_speedup, analytic_step_time, balance,
                                                     format_profile, profile_layers, stage_times)
    from e2train.torch.distributed.pipeline import train_pipeline
    from e2train.torch.distributed.stages import layers_of
    from e2train.torch.models import build_model
    from e2train.torch.trainer import TrainConfig

    torch.set_num_threads(1)
    data = tdata.load("sat6synthetic")
    torch.manual_seed(0)
    model = build_model("modified_alexnet", 4, 6)
    x, y = data.x_train[: args.batch], data.y_train[: args.batch]
    prof = profile_layers(layers_of(model), x, y, repeats=args.profile_repeats)
    out: dict = {"batch": args.batch, "profile": [vars(p) for p in prof], "splits": {}}
    print(f"== 1. Modified AlexNet (paper 003, Table 1) on the SAT-6 stand-in, batch {args.batch}, one thread")
    print(format_profile(prof))
    for S in (2, 4):
        for name, bounds in (("paper", PAPER_SPLITS["modified_alexnet"][S]), ("balanced", balance([p.total_ms for p in prof], S))):
            st = stage_times(prof, bounds)
            out["splits"][f"{name}{S}"] = {"bounds": bounds, "stages": st, "analytic_step_ms": analytic_step_time(st),
                                          "analytic_speedup": analytic_speedup(st)}
            print(f"{S} stages, {name:8s} split {bounds}: stage fwd/bwd ms "
                  + "  ".join(f"{f:.1f}/{b:.1f}" for f, b in st)
                  + f"  -> analytic step {analytic_step_time(st):.1f} ms, speedup {analytic_speedup(st):.2f}x")

    cfg = TrainConfig(dataset="sat6synthetic", model="modified_alexnet", epochs=1, batch_size=args.batch,
                      max_batches=args.steps, lr=0.05, threads=1, augment=False, progress=False)
    runs = [("sequential", DistConfig(pipeline=1, split=[0, 16])),
            ("gpipe", DistConfig(pipeline=2, pipe_schedule="gpipe", split="paper", microbatches=4)),
            ("1f1b", DistConfig(pipeline=2, pipe_schedule="1f1b", split="paper", microbatches=4)),
            ("async+stash", DistConfig(pipeline=2, pipe_schedule="async", split="paper"))]
    print(f"\nsteps/s over {args.steps} mini-batches (one epoch, after a warm-up run of each), 2 processes, paper split [0, 7, 16]:")
    res = {}
    for name, d in runs:
        train_pipeline(cfg, d)                 # warm-up: oneDNN kernels, forkserver
        r = train_pipeline(cfg, d)
        step = r["records"][0]["step_ms"]
        res[name] = {"step_ms": step, "steps_per_s": 1e3 / step, "stages": [{k: v for k, v in s.items() if k != "ops_epoch1"}
                                                                           for s in r["stages"]],
                     "analytic_step_ms_measured_stages": r.get("analytic_step_ms_measured_stages")}
    seq = res["sequential"]["step_ms"]
    ana2 = out["splits"]["paper2"]["analytic_speedup"]
    print(f"{'schedule':<12} {'step ms':>8} {'steps/s':>8} {'speedup':>8}  analytic speedup (profile)  stage times (fwd/bwd/send ms)")
    for name, r in res.items():
        stages = "  ".join(f"s{s['stage']}: {s['fwd_ms']:.1f}/{s['bwd_ms']:.1f}/{s['send_act_ms'] + s['send_grad_ms']:.1f}"
                           for s in r["stages"] if s.get("fwd_ms") is not None)
        print(f"{name:<12} {r['step_ms']:8.1f} {r['steps_per_s']:8.2f} {seq / r['step_ms']:7.2f}x  "
              f"{'-' if name == 'sequential' else f'{ana2:.2f}x':>10}  {stages}")
        if r.get("analytic_step_ms_measured_stages") and name != "sequential":
            print(f"{'':<12} analytic step from these measured stage times {r['analytic_step_ms_measured_stages']:.1f} ms "
                  f"vs measured {r['step_ms']:.1f} ms")
    out["schedules"] = res
    return out


def time_to_accuracy(args) -> dict:
    from e2train.torch.distributed.config import DistConfig
    from e2train.torch.distributed.pipeline import train_pipeline
    from e2train.torch.trainer import TrainConfig

    from e2train.torch import data as tdata
    from e2train.torch.distributed.partition import analytic_speedup, balance, profile_layers, stage_times
    from e2train.torch.distributed.stages import layers_of
    from e2train.torch.models import build_model

    cfg = TrainConfig(dataset="digits", model="resnet8", epochs=args.epochs, batch_size=64, lr=0.05, threads=1,
                      progress=False)
    # one profile, one split per stage count, for every schedule (a profile per run differs by noise)
    data = tdata.load("digits")
    torch.manual_seed(0)
    prof = profile_layers(layers_of(build_model("resnet8", 1, 10)), data.x_train[:64], data.y_train[:64],
                          repeats=args.profile_repeats)
    b2, b4 = (balance([p.total_ms for p in prof], S) for S in (2, 4))
    ana = {2: analytic_speedup(stage_times(prof, b2)), 4: analytic_speedup(stage_times(prof, b4))}
    runs = [("sequential", DistConfig(pipeline=1, split=[0, 5])),
            ("gpipe 2", DistConfig(pipeline=2, pipe_schedule="gpipe", split=b2)),
            ("1f1b 2", DistConfig(pipeline=2, pipe_schedule="1f1b", split=b2)),
            ("async+stash 2", DistConfig(pipeline=2, split=b2)),
            ("async+stash 4", DistConfig(pipeline=4, split=b4))]
    print(f"\n== 2. Time to {args.target}% on digits, ResNet-8, batch 64, {args.epochs} epochs, lr 0.05 cosine, one thread per process")
    print(f"balanced splits from one profile: 2 stages {b2} (analytic speedup {ana[2]:.2f}x), "
          f"4 stages {b4} ({ana[4]:.2f}x)")
    print(f"{'schedule':<14} {'split':<14} {'steps/s':>8} {'t->target s':>11} {'final %':>8}  accuracy per epoch")
    out = {}
    for name, d in runs:
        r = train_pipeline(cfg, d)
        recs = r["records"]
        hit = next((x["wall_s"] for x in recs if x["test_acc"] >= args.target), None)
        sps = sum(x["batches_run"] for x in recs) / r["wall_s"]
        out[name] = {"bounds": r["bounds"], "steps_per_s": sps, "time_to_target_s": hit,
                     "final_test_acc": r["final_test_acc"], "accs": [x["test_acc"] for x in recs],
                     "analytic_speedup_profile": ana.get(d.pipeline)}
        print(f"{name:<14} {str(r['bounds']):<14} {sps:8.1f} {('%.2f' % hit) if hit else 'not reached':>11} "
              f"{r['final_test_acc']:8.2f}  " + " ".join(f"{a:.1f}" for a in out[name]["accs"]))
    s = out["sequential"]["steps_per_s"]
    print("speedup in steps/s over sequential: " + ", ".join(
        f"{k} {v['steps_per_s'] / s:.2f}x" + (f" (analytic {v['analytic_speedup_profile']:.2f}x)"
                                              if v.get("analytic_speedup_profile") else "")
        for k, v in out.items() if k != "sequential"))
    return out


def weak_scaling(args) -> dict:
    from e2train.torch.distributed.config import DistConfig
    from e2train.torch.distributed.pipeline import train_pipeline
    from e2train.torch.trainer import TrainConfig

    print(f"\n== 3. Weak scaling (paper 003, Table 7): W_p = p x {args.weak_batches} mini-batches of 64 on digits, ResNet-8")
    print(f"{'p':>2} {'W_p':>5} {'T_p s':>8} {'E_p':>6}")
    out = {}
    for p in (1, 2, 4):
        cfg = TrainConfig(dataset="digits", model="resnet8", epochs=p, batch_size=64, max_batches=args.weak_batches,
                          lr=0.05, threads=1, progress=False)
        r = train_pipeline(cfg, DistConfig(pipeline=p, split="balanced" if p > 1 else [0, 5]))
        out[p] = {"batches": p * args.weak_batches, "T_s": r["wall_s"]}
        out[p]["E"] = out[1]["T_s"] / r["wall_s"]
        print(f"{p:2d} {p * args.weak_batches:5d} {r['wall_s']:8.2f} {out[p]['E']:6.3f}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--profile-repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--target", type=float, default=95.0)
    ap.add_argument("--weak-batches", type=int, default=20)
    ap.add_argument("--out", default="runs/bench-pipeline.json")
    args = ap.parse_args(argv)
    print("Measured on this machine while its 2 cores are shared with other work: absolute times are noisy; "
          "compare the ratios, measured in this one run. Wall clock only; no energy.")
    t0 = time.time()
    res = {"step_times": step_times(args), "time_to_accuracy": time_to_accuracy(args), "weak_scaling": weak_scaling(args)}
    res["bench_s"] = time.time() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"\nwritten {args.out} ({res['bench_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
