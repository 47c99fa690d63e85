"""Torch reference step times, measured side by side in one run (ratios, not absolutes).

1. PSG training step / fp32 training step (same ResNet, same batch). Goal: <= 1.6x.
2. Gated ResNet at 50% block execution / the same ResNet ungated. Goal: <= 0.65x.

A "step" is forward + backward + optimizer step. The two variants alternate, repeat by
repeat, and the median of each is reported, so load on the machine hits both alike.
Usage: python benchmarks/bench_torch.py [--reps 15] [--threads 1] [--shape digits|cifar]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from e2train.torch.models import build_model
from e2train.torch.optim import build_optimizer

SHAPES = {"digits": (1, 8, 8, "resnet8"), "cifar": (3, 32, 32, "resnet20")}


def make_step(precision: str, shape: str, batch: int, masks_ratio: float | None = None):
    c, h, w, name = SHAPES[shape]
    torch.manual_seed(0)
    model = build_model(name, c, 10, precision=precision).train()
    opt = build_optimizer(model, sign_convs=precision != "fp32", lr=0.1, conv_lr=1e-3,
                          momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(batch, c, h, w), torch.randint(0, 10, (batch,))
    gen = torch.Generator().manual_seed(1)

    def step():
        masks = None
        if masks_ratio is not None:
            masks = [torch.rand(batch, generator=gen) < masks_ratio for _ in model.blocks]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x, block_masks=masks), y).backward()
        opt.step()
    return step


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def compare(label: str, a, b, reps: int, goal: float) -> None:
    for _ in range(3):            # warm-up (allocator, first-call calibration of scales)
        a(), b()
    ta, tb = [], []
    for _ in range(reps):
        ta.append(timed(a))
        tb.append(timed(b))
    ma, mb = statistics.median(ta), statistics.median(tb)
    r = ma / mb
    print(f"{label}: {ma * 1e3:.1f} ms / {mb * 1e3:.1f} ms = {r:.2f}x  (goal <= {goal}x: {'met' if r <= goal else 'NOT met'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--shape", choices=sorted(SHAPES), action="append")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for shape in args.shape or ["digits", "cifar"]:
        c, h, w, name = SHAPES[shape]
        print(f"== {name}, input {c}x{h}x{w}, batch {args.batch}, {args.threads} thread(s), median of {args.reps}")
        compare("PSG step / fp32 step", make_step("psg", shape, args.batch), make_step("fp32", shape, args.batch),
                args.reps, 1.6)
        compare("gated 50% / ungated step", make_step("fp32", shape, args.batch, 0.5),
                make_step("fp32", shape, args.batch), args.reps, 0.65)


if __name__ == "__main__":
    main()
