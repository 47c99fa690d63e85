"""C-simulation throughput of the three kernels vs the numpy golden model (int64), measured
side by side in one run on ResNet-CIFAR layer shapes, next to the performance model's
*modelled* GOPS and MAC-slot utilisation on xc7z020 @ 100 MHz (not measured, no synthesis).

    .venv/bin/python benchmarks/bench_kernels.py [--batch 16] [--repeat 3]

Goals (docs/kernels.md): C-sim conv_fwd >= 1 GMAC/s on one core and >= 10x numpy; the
modelled kernels keep >= 70% of their MAC slots busy. Prints what it gets; fails nothing.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from e2train.core import csim, golden, perfmodel
from e2train.core.fixedpoint import Dyadic, beta_to_fixed
from e2train.core.shapes import ConvShape


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    csim.load()
    # One thread for numpy too: the C simulation runs on one core.
    print(f"threads: C-sim 1; numpy BLAS threads as configured (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    rng = np.random.default_rng(0)
    beta_q = beta_to_fixed(0.05)
    m = Dyadic(20000, 24)
    shapes = [ConvShape(args.batch, c, hw, hw, c, 3, 1, 1) for c, hw in ((16, 32), (32, 16), (64, 8))]
    shapes.append(ConvShape(args.batch, 16, 32, 32, 32, 3, 2, 1))
    hdr = (f"{'layer':<22}{'kernel':<22}{'C-sim GMAC/s':>13}{'numpy GMAC/s':>13}{'ratio':>8}"
           f"{'model GOPS':>12}{'model busy':>12}")
    print(hdr)
    print("-" * len(hdr))
    for sh in shapes:
        x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
        w = rng.integers(-128, 128, sh.w_shape).astype(np.int8)
        g = rng.integers(-4000, 4000, sh.y_shape).astype(np.int16)
        wm = rng.integers(-(1 << 20), 1 << 20, sh.w_shape).astype(np.int32)
        kw = dict(stride=sh.stride, pad=sh.pad)
        r, st = csim.conv_bwd_weight_psg_stats(x, g, wm, beta_q=beta_q, lr_q=1, **kw)
        runs = [
            ("conv_fwd", lambda: csim.conv_fwd(x, w, None, m, **kw),
             lambda: golden.conv_fwd(x, w, None, m, **kw), {}),
            ("conv_bwd_data", lambda: csim.conv_bwd_data(g, w, m, in_hw=(sh.h, sh.w), **kw),
             lambda: golden.conv_bwd_data(g, w, m, in_hw=(sh.h, sh.w), **kw), {}),
            ("conv_bwd_weight_psg", lambda: csim.conv_bwd_weight_psg(x, g, wm, beta_q=beta_q, lr_q=1, **kw),
             lambda: golden.conv_bwd_weight_psg(x, g, wm, beta_q=beta_q, lr_q=1, **kw),
             dict(n_predicted=r.n_predicted, n_tiles_skipped=st.tiles_skipped)),
        ]
        name = f"{sh.ci}->{sh.co} {sh.h}px s{sh.stride} n{sh.n}"
        for kernel, fc, fg, mkw in runs:
            macs = sh.macs()
            tc = _best(fc, args.repeat)
            tg = _best(fg, max(1, args.repeat - 1))
            gops = perfmodel.gops(kernel, sh, sh.n, **mkw)
            util = perfmodel.utilisation(kernel, sh, sh.n, **mkw)
            print(f"{name:<22}{kernel:<22}{macs / tc / 1e9:>13.2f}{macs / tg / 1e9:>13.3f}{tg / tc:>7.1f}x"
                  f"{gops:>12.2f}{100 * util:>11.1f}%")
    res = perfmodel.resources()
    print("modelled resources (estimate, not synthesis): " +
          ", ".join(f"{k} {v['dsp']} DSP / {v['bram36']:.0f} BRAM36" for k, v in res["kernels"].items()) +
          f"; total {res['total']['dsp']}/{res['device']['dsp']} DSP, "
          f"{res['total']['bram36']:.0f}/{res['device']['bram36']} BRAM36")
    print("model busy = MAC slots doing useful work (conv: 64 DSP MACs/cycle; PSG engine: 8 lanes/cycle)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
