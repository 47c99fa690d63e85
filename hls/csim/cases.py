"""Test cases for the kernels' C testbench (hls/csim/san_driver.cpp): inputs, the outputs'
prior contents and the golden model's results, one directory per kernel call.

    python hls/csim/cases.py OUTDIR      # writes OUTDIR/<case>/, prints the case directories

Used by tests/kernels/test_sanitizer.py (ASan+UBSan build) and by the Vitis HLS C
simulation (hls/scripts/run_hls.sh csim), so both check the same calls.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from e2train.core import golden
from e2train.core.fixedpoint import Dyadic
from e2train.core.shapes import ConvShape, check_samples

SHAPES = [
    (ConvShape(2, 3, 7, 6, 5, 3, 1, 1), [1]),
    (ConvShape(3, 9, 8, 9, 10, 3, 2, 1), None),
    (ConvShape(1, 4, 5, 5, 3, 1, 2, 0), []),
    (ConvShape(2, 2, 3, 3, 9, 3, 1, 0), [1, 0]),
    (ConvShape(1, 1, 1, 1, 1, 1, 1, 0), None),
    # engine layouts beyond one call: two weight-gradient chunks per block; a row block of
    # 8 x 2340 weights, more than the on-chip partial sums (column groups)
    (ConvShape(3, 2, 13, 11, 3, 3, 1, 1), [2, 0]),
    (ConvShape(1, 260, 3, 3, 9, 3, 1, 1), None),
]


def write_case(d: Path, args: dict, arrays: dict) -> Path:
    d.mkdir(parents=True)
    (d / "args.txt").write_text("".join(f"{k} {v}\n" for k, v in args.items()))
    for name, a in arrays.items():
        (d / f"{name}.bin").write_bytes(np.ascontiguousarray(a).tobytes())
    return d


def write_cases(root: Path) -> list[Path]:
    rng = np.random.default_rng(7)
    out = []
    for i, (sh, samples) in enumerate(SHAPES):
        geo = dict(n=sh.n, ci=sh.ci, h=sh.h, wd=sh.w, co=sh.co, k=sh.k, stride=sh.stride, pad=sh.pad)
        idx = check_samples(samples, sh.n)
        unsigned = i % 2 == 0
        x = (rng.integers(0, 256, sh.x_shape).astype(np.uint8) if unsigned
             else rng.integers(-128, 128, sh.x_shape).astype(np.int8))
        w = rng.integers(-128, 128, sh.w_shape).astype(np.int8)
        bias = rng.integers(-5000, 5000, sh.co).astype(np.int32)
        m = Dyadic(int(rng.integers(1, 1 << 15)), 20)
        y0 = rng.integers(-128, 128, sh.y_shape).astype(np.int8)
        y = golden.conv_fwd(x, w, bias, m, stride=sh.stride, pad=sh.pad, samples=samples, out=y0.copy())
        out.append(write_case(root / f"fwd{i}", {"kernel": "conv_fwd", **geo, "x_unsigned": int(unsigned),
                                              "has_bias": 1, "relu": 0, "mult_m": m.m, "mult_s": m.s},
                          dict(x=x, w=w, bias=bias, samples=idx, y_in=y0, y_expect=y)))
        g = rng.integers(-32768, 32768, sh.y_shape).astype(np.int16)
        gx0 = rng.integers(-100, 100, sh.x_shape).astype(np.int16)
        gx = golden.conv_bwd_data(g, w, m, in_hw=(sh.h, sh.w), stride=sh.stride, pad=sh.pad,
                                  samples=samples, out=gx0.copy())
        out.append(write_case(root / f"bwd{i}", {"kernel": "conv_bwd_data", **geo, "mult_m": m.m, "mult_s": m.s},
                          dict(g_y=g, w=w, samples=idx, g_x_in=gx0, g_x_expect=gx)))
        wm = rng.integers(-(1 << 20), 1 << 20, sh.w_shape).astype(np.int32)
        beta_q = (0, 3277, 65536, 1, 3277, 3277, 0)[i]
        r = golden.conv_bwd_weight_psg(x, g, wm, stride=sh.stride, pad=sh.pad, beta_q=beta_q,
                                       lr_q=77, wd_q=1 << 20, samples=samples)
        out.append(write_case(root / f"wgrad{i}", {"kernel": "conv_bwd_weight_psg", **geo,
                                                "x_unsigned": int(unsigned), "beta_q": beta_q, "lr_q": 77,
                                                "wd_q": 1 << 20, "n_predicted": r.n_predicted},
                          dict(x=x, g_y=g, w_in=wm, samples=idx, w_expect=r.w_master, sign_expect=r.sign,
                               pred_expect=r.predicted.astype(np.uint8))))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python hls/csim/cases.py OUTDIR")
    print(" ".join(str(p) for p in write_cases(Path(sys.argv[1]))))
