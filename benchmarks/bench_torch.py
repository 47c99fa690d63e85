"""Torch reference step times, measured side by side in one run (ratios, not absolutes).

1. PSG training step / fp32 training step (same ResNet, same batch). Goal: <= 1.6x. Printed
   for the exact (bit-exact, default) emulation and for the fast float32 one
   (``psg.set_exact(model, False)``), each against the same fp32 step, followed by the
   fraction of weight-update signs on which the fast mode differs from the exact one when
   both start from the same state and see the same batch.
2. Gated ResNet at 50% block execution / the same ResNet ungated. Goal: <= 0.65x.

A "step" is forward + backward + optimizer step. The two variants alternate, repeat by
repeat, and the median of each is reported, both wall clock and the thread's CPU time (the
latter is steadier on a shared machine; with one thread the two agree on an idle one).

The gated comparison is printed twice: after the same 3 warm-up steps as the PSG one, and
again after more warm-up. Random masks give every block a new batch size on most steps,
and the first call of a convolution at a new batch size creates its oneDNN kernels (about a
millisecond each); a long training run pays that once per size, so the second line is the
steady state and the first shows the transient.

After the timed runs, one extra PSG step runs with timers around the PSG layer's stages
(not counted above) and its breakdown is printed. Finally the PSG comparison is repeated in
a fresh process where glibc keeps freed memory (``e2train.torch.psg.keep_freed_memory``;
both sides run in that process), since allocation costs much of the emulation's time.
With ``--device cuda`` the same ratios are measured on the GPU instead (wall clock, the
device synchronised around every step), for ResNet-20 and ResNet-56 at batch 128 and 512
(``--batch`` to choose others), and then the exact PSG layer is compared bit for bit between
the CPU and the GPU on the layer cases of ``e2train.torch.device_check`` (outputs, input
gradients, signs, predictor counts, master weights, scales). Without CUDA it exits with a
one-line message.
Usage: python benchmarks/bench_torch.py [--reps 15] [--threads 1] [--shape digits|cifar]
       [--keep-freed-memory --psg-only] [--device cuda [--batch 128 --batch 512]]
"""
from __future__ import annotations

import argparse
import collections
import copy
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from e2train.torch import psg
from e2train.torch.models import build_model
from e2train.torch.optim import build_optimizer

SHAPES = {"digits": (1, 8, 8, "resnet8"), "cifar": (3, 32, 32, "resnet20"), "cifar56": (3, 32, 32, "resnet56")}
STEADY_WARMUP = {"digits": 60, "cifar": 30, "cifar56": 30}   # extra gated warm-up: most batch sizes seen
CUDA_SHAPES, CUDA_BATCHES = ["cifar", "cifar56"], [128, 512]
DEVICE = torch.device("cpu")       # --device


def make_step(precision: str, shape: str, batch: int, masks_ratio: float | None = None,
              exact: bool = True):
    c, h, w, name = SHAPES[shape]
    torch.manual_seed(0)
    model = build_model(name, c, 10, precision=precision).train().to(DEVICE)
    psg.set_exact(model, exact)
    opt = build_optimizer(model, sign_convs=precision != "fp32", lr=0.1, conv_lr=1e-3,
                          momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(batch, c, h, w).to(DEVICE), torch.randint(0, 10, (batch,)).to(DEVICE)
    gen = torch.Generator().manual_seed(1)

    def step():
        masks = None
        if masks_ratio is not None:
            masks = [torch.rand(batch, generator=gen) < masks_ratio for _ in model.blocks]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x, block_masks=masks), y).backward()
        opt.step()
    return step


def sign_disagreement(shape: str, batch: int, steps: int = 3, warmup: int = 2) -> None:
    """Fraction of PSG weight-update signs (and of predictor decisions) that differ between
    the fast and the exact emulation on the same step: the exact model trains; before each
    measured step a copy of it is switched to the fast mode and run on the same batch."""
    c, h, w, name = SHAPES[shape]
    torch.manual_seed(0)
    model = build_model(name, c, 10, precision="psg").train()
    opt = build_optimizer(model, sign_convs=True, lr=0.1, conv_lr=1e-3, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(2)
    differ = total = pred_differ = 0
    for i in range(warmup + steps):
        x, y = torch.randn(batch, c, h, w, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
        fast = None
        if i >= warmup:
            fast = copy.deepcopy(model)
            psg.set_exact(fast, False)
            F.cross_entropy(fast(x), y).backward()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        if fast is not None:
            pairs = [(a, b) for a, b in zip(model.modules(), fast.modules()) if isinstance(a, psg.PSGConv2d)]
            for a, b in pairs:
                differ += int((a.weight.grad != b.weight.grad).sum())
                total += a.weight.grad.numel()
                pred_differ += abs(a.n_predicted - b.n_predicted)
        opt.step()
    print(f"fast-mode sign disagreement with the exact mode (same state, same batch, {steps} steps "
          f"after {warmup}): {differ} of {total} weight signs = {differ / total:.2e}; "
          f"predicted-weight count differs by {pred_differ}", flush=True)


def timed(fn) -> tuple[float, float]:
    if DEVICE.type == "cuda":       # the step's kernels, not their launches
        torch.cuda.synchronize(DEVICE)
    w, c = time.perf_counter(), time.thread_time()
    fn()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
    return time.perf_counter() - w, time.thread_time() - c


def compare(label: str, a, b, reps: int, goal: float, warmup: int = 3) -> None:
    for _ in range(warmup):      # allocator, first-call calibration of scales, kernel creation
        a(), b()
    ta, tb = [], []
    for _ in range(reps):
        ta.append(timed(a))
        tb.append(timed(b))
    (wa, ca), (wb, cb) = ([statistics.median(v) for v in zip(*t)] for t in (ta, tb))
    r, rc = wa / wb, ca / cb
    if DEVICE.type == "cuda":       # the host's CPU time says nothing about the GPU's
        print(f"{label}: wall {wa * 1e3:.2f} / {wb * 1e3:.2f} ms = {r:.2f}x  "
              f"(goal <= {goal}x: {'met' if r <= goal else 'NOT met'})", flush=True)
        return
    verdict = "met" if max(r, rc) <= goal else "met on CPU time only" if rc <= goal else "NOT met"
    print(f"{label}: wall {wa * 1e3:.1f} / {wb * 1e3:.1f} ms = {r:.2f}x, "
          f"cpu {ca * 1e3:.1f} / {cb * 1e3:.1f} ms = {rc:.2f}x  (goal <= {goal}x: {verdict})")


def psg_profile(step, label: str = "PSG step") -> None:
    """One PSG step with thread-CPU timers around the PSG layer's stages (those of the
    exact or the fast mode: the stages the step did not run are left out of the line).
    Each stage's time is its own: a stage called inside another (quantize_t inside
    _quantize_input) pauses the outer one's clock."""
    spent: collections.Counter = collections.Counter()
    stages = {
        "x scale (running max)": (psg.PSGConv2d, "_quantize_input"),
        "quantise x, g": (psg, "quantize_t"),
        "fwd conv": (psg, "conv2d_parts"),
        "fwd conv (fast)": (psg, "fast_conv2d_parts"),
        "requantise y": (psg.PSGConv2d, "_requantize_output"),
        "input-grad conv+requant": (psg.PSGConv2d, "_grad_input"),
        "weight-grad sums": (psg, "exact_wgrad"),
        "weight-grad sums (fast)": (psg, "fast_wgrad"),
        "input-grad sums + G (fast, one call)": (psg, "fast_grads"),
        "G_msb sums (fast)": (psg, "fast_msb_wgrad"),
        "decide": (psg.PSGConv2d, "decide"),
        "sign update": (psg.PSGConv2d, "sign_step"),
    }
    running: list = []            # [stage name, clock at its (re)start] of the open stages

    def stop_top(now: float) -> None:
        if running:
            spent[running[-1][0]] += now - running[-1][1]

    saved = []
    for name, (owner, attr) in stages.items():
        orig = owner.__dict__[attr]
        fn = orig.__func__ if isinstance(orig, staticmethod) else orig

        def wrapped(*args, _fn=fn, _name=name, **kw):
            stop_top(time.thread_time())
            running.append([_name, time.thread_time()])
            try:
                return _fn(*args, **kw)
            finally:
                now = time.thread_time()
                stop_top(now)
                running.pop()
                if running:
                    running[-1][1] = now
        saved.append((owner, attr, orig))
        setattr(owner, attr, staticmethod(wrapped) if isinstance(orig, staticmethod) else wrapped)
    try:
        t = time.thread_time()
        step()
        total = time.thread_time() - t
    finally:
        for owner, attr, orig in saved:
            setattr(owner, attr, orig)
    rest = total - sum(spent.values())
    parts = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in spent.items() if v)
    print(f"{label} profile (thread CPU ms, one step): total {total * 1e3:.1f} = {parts}, "
          f"rest (BN, ReLU, loss, autograd, optimizer) {rest * 1e3:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, action="append", help="batch size (default 64; on CUDA 128 and 512)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--shape", choices=sorted(SHAPES), action="append")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="glibc keeps freed memory for reuse (process-wide, set before anything runs)")
    ap.add_argument("--psg-only", action="store_true", help="only the PSG / fp32 comparison")
    args = ap.parse_args()
    if args.device == "cuda":
        cuda_main(args)
        return
    args.batch = (args.batch or [64])[0]
    if args.keep_freed_memory and not psg.keep_freed_memory():
        sys.exit("--keep-freed-memory needs glibc's mallopt, which this C library does not have")
    torch.set_num_threads(args.threads)
    shapes = args.shape or ["digits", "cifar"]
    for shape in shapes:
        c, h, w, name = SHAPES[shape]
        memory = ", glibc keeping freed memory" if args.keep_freed_memory else ""
        print(f"== {name}, input {c}x{h}x{w}, batch {args.batch}, {args.threads} thread(s), "
              f"median of {args.reps}{memory}", flush=True)
        psg_step, fp32_step = make_step("psg", shape, args.batch), make_step("fp32", shape, args.batch)
        compare("PSG step / fp32 step", psg_step, fp32_step, args.reps, 1.6)
        fast_step = make_step("psg", shape, args.batch, exact=False)
        compare("PSG fast-mode step (not bit-exact) / fp32 step", fast_step, fp32_step, args.reps, 1.6)
        if not args.keep_freed_memory:       # the same numbers again in the second process
            sign_disagreement(shape, args.batch)
        psg_profile(psg_step)
        psg_profile(fast_step, "PSG fast-mode step")
        if args.psg_only:
            continue
        gated, ungated = make_step("fp32", shape, args.batch, 0.5), make_step("fp32", shape, args.batch)
        compare("gated 50% / ungated step, 3 warm-up steps", gated, ungated, args.reps, 0.65)
        compare(f"gated 50% / ungated step, steady state (+{STEADY_WARMUP[shape]} warm-up steps)",
                gated, ungated, args.reps, 0.65, warmup=STEADY_WARMUP[shape])
    if not args.keep_freed_memory and not args.psg_only:
        cmd = [sys.executable, __file__, "--keep-freed-memory", "--psg-only", "--reps", str(args.reps),
               "--threads", str(args.threads), "--batch", str(args.batch)]
        subprocess.run(cmd + [a for s in shapes for a in ("--shape", s)], check=True)


def cuda_main(args) -> None:
    """The GPU comparison: ratios per model and batch, then the CPU/GPU bit-exactness check."""
    global DEVICE
    if not torch.cuda.is_available():
        sys.exit("bench_torch.py --device cuda: torch sees no CUDA device, nothing was measured")
    from e2train.torch import device_check
    DEVICE = torch.device("cuda")
    torch.backends.cudnn.benchmark = False
    print(f"== {torch.cuda.get_device_name(DEVICE)}, torch {torch.__version__}, cuDNN TF32 "
          f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}, median of {args.reps}", flush=True)
    for shape in args.shape or CUDA_SHAPES:
        c, h, w, name = SHAPES[shape]
        for batch in args.batch or CUDA_BATCHES:
            print(f"-- {name}, input {c}x{h}x{w}, batch {batch}", flush=True)
            fp32_step = make_step("fp32", shape, batch)
            compare("PSG exact step / fp32 step", make_step("psg", shape, batch), fp32_step, args.reps, 1.5)
            compare("PSG fast-mode step / fp32 step", make_step("psg", shape, batch, exact=False), fp32_step,
                    args.reps, 1.2)
            if not args.psg_only:
                compare("gated 50% / ungated step (steady state)", make_step("fp32", shape, batch, 0.5),
                        make_step("fp32", shape, batch), args.reps, 0.65, warmup=STEADY_WARMUP[shape])
            torch.cuda.empty_cache()
    bad = 0
    for case in device_check.LAYER_CASES:
        diff = device_check.differences(case, ("cpu", "cuda"))
        bad += bool(diff)
        print(f"exact layer {case}: CPU vs CUDA {'bit-identical' if not diff else '; '.join(diff)}", flush=True)
    print(f"bit-exactness CPU vs CUDA: {len(device_check.LAYER_CASES) - bad} of {len(device_check.LAYER_CASES)} "
          "layer cases identical (outputs, input gradients, signs, n_predicted, masters, scales)")


if __name__ == "__main__":
    main()
