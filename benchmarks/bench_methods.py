"""The other work-skipping methods on digits, side by side with standard training and with
their random controls, in one run.

For every seed: standard training, then each method, then its random control at the skip
ratio the method *measured* in that run (same unit, chosen at random), and for DeadHorse also
the non-uniform control (the policy's measured rate per epoch). Per arm, over the seeds:

* skip ratio, in the method's own unit (layer-steps, samples, weight-steps);
* wall clock of training per epoch (the trainer's step time, plus Learn&Drop's cache fills,
  which run between epochs), as a ratio to standard training of the same seed; and the
  thread's CPU time per epoch (whole run), which other load on a shared machine disturbs less;
* energy, *modelled* (core.energy over the work the meter saw; no meter is involved), as a
  ratio to standard training of the same seed;
* final test accuracy.

Intervals are Student-t 95% over the seeds (e2train.bench.stats). Digits sits near its
ceiling and one test image is 0.28 points: read accuracy differences against the intervals.

    .venv/bin/python benchmarks/bench_methods.py [--epochs 10] [--seeds 0 1] [--methods gskip dh ...]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import torch

from e2train.bench.stats import t_interval
from e2train.core.energy import ENERGY_KIND
from e2train.torch import data as tdata
from e2train.torch.methods import REGISTRY, make
from e2train.torch.methods.deadhorse import REACTIVE, PREDICTIVE, RandomSamplePolicy
from e2train.torch.trainer import TrainConfig, train

DEADHORSE = REACTIVE + PREDICTIVE


def method_options(name: str, data: tdata.Data, batches_per_epoch: int) -> dict:
    """Options for digits-sized runs (documented in docs/methods.md)."""
    if name == "gskip":
        # the default 750-step warm-up is 32 digits epochs: scale warm-up and re-checks to epochs
        return dict(warmup_steps=2 * batches_per_epoch, recheck_every=batches_per_epoch)
    if name in DEADHORSE:
        opts = dict(threshold=0.9)
        if name in PREDICTIVE:
            opts.update(n_samples=data.x_train.shape[0], n_classes=data.num_classes)
        return opts
    if name in ("learn-drop", "freeze"):
        return dict(train_x=data.x_train)
    if name == "wus-lr":
        return dict(lr_change_rel=0.5)        # cosine schedule: a full epoch each time lr halves
    return {}


def one_run(cfg: TrainConfig, data, policy=None) -> dict:
    cpu0 = time.thread_time()
    res = train(cfg, [policy] if policy is not None else [], data=data)
    cpu = time.thread_time() - cpu0
    # res.wall_s already holds a method's own work between steps (Learn&Drop's cache fills)
    return {"acc": res.final_test_acc, "wall_epoch": res.wall_s / len(res.records),
            "cpu_epoch": cpu / len(res.records), "energy": res.energy_j, "kind": res.energy_kind}


def fmt(samples: list[float], scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    iv = t_interval(samples)
    if iv.n == 1:
        return f"{iv.mean * scale:.{digits}f}{unit} (n=1)"
    return f"{iv.mean * scale:.{digits}f}±{iv.half * scale:.{digits}f}{unit}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--methods", nargs="+", default=list(REGISTRY))
    ap.add_argument("--no-nonuniform", action="store_true", help="skip DeadHorse's non-uniform controls")
    args = ap.parse_args(argv)
    unknown = [m for m in args.methods if m not in REGISTRY]
    if unknown:
        ap.error(f"unknown methods {unknown}; registered: {', '.join(REGISTRY)}")
    torch.set_num_threads(1)
    data = tdata.load("digits")
    cfg = TrainConfig(dataset="digits", model=args.model, epochs=args.epochs, threads=1, progress=False)
    nb = tdata.num_batches(data, cfg.batch_size)
    print(f"digits {tuple(data.x_train.shape)} {args.model} fp32, {args.epochs} epochs, seeds {args.seeds}, "
          f"1 thread; energy is {ENERGY_KIND} (core.energy), not measured")

    # warm-up (discarded): the first run of a process pays one-time costs (lazy imports,
    # allocator, kernel selection) that would otherwise count against standard training
    train(TrainConfig(**{**cfg.to_dict(), "epochs": 1, "max_batches": 3}), data=data)

    rows: dict[str, list[dict]] = defaultdict(list)   # arm -> one dict per seed
    order: list[str] = []
    ld_drops: dict[int, list] = {}                    # seed -> Learn&Drop's (epoch, tail length)
    t_start = time.monotonic()

    def say(seed: int, arm: str, r: dict, skip: float, unit: str) -> None:
        print(f"[{time.monotonic() - t_start:6.0f}s] seed {seed} {arm:<28} acc {r['acc']:6.2f}%  "
              f"{r['wall_epoch']:.3f} s/epoch  energy {r['energy']:.4g} J ({r['kind']})  "
              f"skipped {100 * skip:.1f}% {unit}", flush=True)

    def record(arm: str, seed: int, r: dict, base: dict, skip: float | None, unit: str) -> None:
        if arm not in order:
            order.append(arm)
        rows[arm].append(dict(r, seed=seed, skip=skip, unit=unit, wall_ratio=r["wall_epoch"] / base["wall_epoch"],
                              cpu_ratio=r["cpu_epoch"] / base["cpu_epoch"],
                              energy_ratio=r["energy"] / base["energy"]))

    for seed in args.seeds:
        c = TrainConfig(**{**cfg.to_dict(), "seed": seed})
        # standard training runs first and last of the seed; the ratios use the mean of the
        # two, so that a change of load on a shared machine during the seed shows (the two
        # rows differ) and biases no arm more than the others
        first = one_run(c, data)
        pending: list[tuple] = []
        for name in args.methods:
            spec = REGISTRY[name]
            opts = method_options(name, data, nb)
            if name == "freeze" and seed in ld_drops:
                opts["schedule"] = ld_drops[seed]      # the very layers and epochs Learn&Drop chose
            pol = make(name, seed=seed, **opts)
            r = one_run(c, data, pol)
            ratio = pol.skip_ratios()[spec.skip_unit]
            if name == "learn-drop":
                ld_drops[seed] = list(pol.drop_epochs)
            pending.append((name, r, ratio, spec.skip_unit))
            say(seed, name, r, ratio, spec.skip_unit)
            if ratio > 0:
                ctl = spec.random_control(ratio, seed + 1000)
                rc = one_run(c, data, ctl)
                arm = f"  random control of {name}"
                pending.append((arm, rc, ctl.skip_ratios()[spec.skip_unit], spec.skip_unit))
                say(seed, arm, rc, pending[-1][2], spec.skip_unit)
            else:
                print(f"         {name} skipped nothing: no random control", flush=True)
            if name in DEADHORSE and not args.no_nonuniform and ratio > 0:
                nu = RandomSamplePolicy(pol.epoch_rates, seed + 2000)
                rn = one_run(c, data, nu)
                arm = f"  non-uniform control of {name}"
                pending.append((arm, rn, nu.skip_ratios()["sample"], "sample"))
                say(seed, arm, rn, pending[-1][2], "sample")
        last = one_run(c, data)
        base = {k: (first[k] + last[k]) / 2 for k in ("wall_epoch", "cpu_epoch", "energy")}
        print(f"         standard training, seed {seed}: {first['wall_epoch']:.3f} s/epoch first, "
              f"{last['wall_epoch']:.3f} s/epoch last", flush=True)
        record("standard", seed, {**first, **base}, base, None, "")
        for arm, r, ratio, unit in pending:
            record(arm, seed, r, base, ratio, unit)

    print()
    print(f"Over seeds {args.seeds} (mean ± 95% t half-width; ratios are to standard training of the same "
          f"seed; energy {ENERGY_KIND}):")
    head = (f"{'arm':<32} {'skipped':>24} {'wall/epoch':>13} {'CPU/epoch':>13} {'energy':>13} "
            f"{'final acc %':>13}")
    print(head)
    print("-" * len(head))
    for arm in order:
        rs = rows[arm]
        skip = "-" if rs[0]["skip"] is None else fmt([r["skip"] for r in rs], 100, 1, "%") + " " + rs[0]["unit"]
        print(f"{arm:<32} {skip:>24} {'x' + fmt([r['wall_ratio'] for r in rs]):>13} "
              f"{'x' + fmt([r['cpu_ratio'] for r in rs]):>13} {'x' + fmt([r['energy_ratio'] for r in rs]):>13} "
              f"{fmt([r['acc'] for r in rs]):>13}")
    b = rows["standard"]
    print(f"\nstandard training: {sum(r['wall_epoch'] for r in b) / len(b):.3f} s/epoch wall clock (training "
          f"steps), {sum(r['energy'] for r in b) / len(b):.4g} J ({ENERGY_KIND}) per run.")
    print("wall/epoch: the trainer's step time (+ Learn&Drop's cache fills); CPU/epoch: this thread's CPU "
          "time over the whole run, evaluation included, less sensitive to other load on the machine.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
