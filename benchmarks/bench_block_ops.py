"""The block operations in torch (``e2train.torch.block_ops_t``) against a plain float BN step,
measured side by side in one run (ratios, not absolutes).

For each layer shape (ResNet-20's three stages on CIFAR-sized maps), one *block step* is what a
bit-exact emulation of the fabric's block runs per training step: BN's sums
(``conv_fwd_stats``), the fold on the host, ``bn_act`` with the residual, then
``bn_bwd_reduce`` (two gradient sources and the gate sums), the backward fold, and
``bn_bwd_apply``. The *float step* is the same block in float32 as torch trains it: forward
``relu(batch_norm(y) + r)`` in training mode and its backward by autograd. The two alternate,
repeat by repeat; the median of each is printed and their ratio (block / float). On CUDA the
device is synchronised around every step (wall clock). On the CPU the table is printed again
after ``psg.keep_freed_memory()`` (glibc keeps freed blocks instead of unmapping them; it cannot
be undone, so it comes second), as ``bench_torch.py`` does.

Usage: python benchmarks/bench_block_ops.py [--device cpu|cuda] [--batch 128] [--reps 15]
       [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from e2train.core import block_ops as bo
from e2train.core.fixedpoint import Dyadic
from e2train.torch import block_ops_t as bt
from e2train.torch import psg

STAGES = [(16, 32, 32), (32, 16, 16), (64, 8, 8)]          # ResNet-20 on 32x32: (c, h, w) per stage
EPS = 1e-5


def _case(n, c, h, w, dev):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(-128, 128, (n, c, h, w), dtype=torch.int8, generator=g)
    r = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    ga = torch.randint(-9000, 9000, (n, c, h, w), dtype=torch.int16, generator=g)
    gb = torch.randint(-9000, 9000, (n, c, h, w), dtype=torch.int16, generator=g)
    return [t.to(dev) for t in (y, r, ga, gb)]


def block_step(y, r, ga, gb):
    """One block step of the bit-exact emulation, with the host folds and the reads they need."""
    s_y, s_r, s_out, s_g = (Dyadic.from_float(v) for v in (0.03, 0.02, 0.04, 2e-5))
    n, c, h, w = y.shape
    m = n * h * w
    stats = bt.conv_fwd_stats(y).cpu().numpy().astype(np.float64)          # one read: BN's sums
    mean = s_y.value * stats[:, 0] / m
    var = s_y.value ** 2 * (stats[:, 1] / m - (stats[:, 0] / m) ** 2)
    inv = 1.0 / np.sqrt(var + EPS)
    gamma, beta = np.ones(c), np.zeros(c)
    k = gamma * inv
    fa = bo.fold_bn_act(k, beta - k * mean, s_y, s_out, s_r)
    o, pooled, vmax = bt.bn_act(y, fa.a, fa.b, fa.shift, r=r, r_mult=fa.r_mult)
    comb = bo.fold_combine(s_g, s_g)
    g_m, red, gate = bt.bn_bwd_reduce(o, y, ga, ma=comb.ma, g_b=gb, mb=comb.mb, shift=comb.shift, r=r)
    fb = bo.fold_bn_bwd(red.cpu().numpy(), m, gamma, mean, inv, comb.scale, s_y)  # one read: red
    g_y = bt.bn_bwd_apply(g_m, y, fb.p, fb.q, fb.t, fb.shift)
    return g_y, pooled, vmax, gate


def float_step(yf, rf, gf, weight, bias):
    """The same block in float32: BN (training mode) + residual + ReLU, forward and backward."""
    yf = yf.detach().requires_grad_(True)
    out = F.relu(F.batch_norm(yf, None, None, weight, bias, training=True, eps=EPS) + rf)
    out.backward(gf)
    return yf.grad


def _time(fn, dev) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench_block_ops: --device cuda needs a CUDA device; none is available", file=sys.stderr)
        return 2
    if a.batch < 1 or a.reps < 1:
        print("bench_block_ops: --batch and --reps must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    print(f"block step (bit-exact block ops, int64) / float32 BN+residual+ReLU step, forward+backward; "
          f"device {dev}, batch {a.batch}, {a.reps} reps, median wall clock"
          + ("" if dev.type == "cuda" else f", {a.threads} thread(s)"))
    _table(a, dev)
    if dev.type == "cpu" and psg.keep_freed_memory():
        print("again, glibc keeping freed memory (psg.keep_freed_memory; both sides in this process):")
        _table(a, dev)
    return 0


def _table(a, dev) -> None:
    print(f"{'layer (c, h, w)':>16} {'block ms':>10} {'float ms':>10} {'ratio':>7}")
    for c, h, w in STAGES:
        y, r, ga, gb = _case(a.batch, c, h, w, dev)
        yf, rf, gf = y.float() * 0.03, r.float() * 0.02, (ga.float() + gb.float()) * 2e-5
        weight = torch.ones(c, device=dev, requires_grad=True)
        bias = torch.zeros(c, device=dev, requires_grad=True)
        for _ in range(2):                                       # warm-up: allocations, kernels
            block_step(y, r, ga, gb)
            float_step(yf, rf, gf, weight, bias)
        tb, tf = [], []
        for _ in range(a.reps):                                  # alternate, repeat by repeat
            tb.append(_time(lambda: block_step(y, r, ga, gb), dev))
            tf.append(_time(lambda: float_step(yf, rf, gf, weight, bias), dev))
        mb, mf = statistics.median(tb), statistics.median(tf)
        print(f"{str((c, h, w)):>16} {mb * 1e3:10.2f} {mf * 1e3:10.2f} {mb / mf:7.2f}x")


if __name__ == "__main__":
    sys.exit(main())
