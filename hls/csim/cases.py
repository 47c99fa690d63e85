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

from e2train.core import block_ops, golden
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
    out += write_block_cases(root, rng)
    return out


# The block unit (e2t_engine ops 3..5): (n, c, h, w), sample list, shortcut source (c, h, w,
# stride, lo) or None, second gradient source (c, h, w, stride, lo) or None.
BLOCK_CASES = [
    ((2, 3, 5, 6), [1], (2, 10, 12, 2, 1), (3, 5, 6, 1, 0)),
    ((3, 4, 4, 4), None, (4, 4, 4, 1, 0), (6, 2, 2, 2, 2)),
    ((1, 2, 3, 1), [], None, None),
    ((2, 5, 1, 7), [0, 1], (1, 1, 13, 2, 4), (5, 1, 4, 2, 0)),
]


def write_block_cases(root: Path, rng: np.random.Generator) -> list[Path]:
    out = []
    empty = np.zeros(0, np.uint8)
    for i, ((n, c, h, w), samples, rg, gg) in enumerate(BLOCK_CASES):
        idx = check_samples(samples, n)
        geo = dict(n=n, h=h, wd=w, co=c)
        y = rng.integers(-128, 128, (n, c, h, w)).astype(np.int8)
        r = rng.integers(0, 256, (n,) + rg[:3]).astype(np.uint8) if rg else None
        r_sc = block_ops.Shortcut(*rg[3:]) if rg else block_ops.IDENTITY
        r_args = dict(zip(("r_c", "r_h", "r_w", "r_stride", "r_lo"), rg if rg else (0,) * 5))
        a = rng.integers(-(1 << 23), 1 << 23, c)
        b = rng.integers(-(1 << 43), 1 << 43, c)
        relu = i % 2 == 0
        shift = (30, 40, 0, 17)[i]
        r_mult = int(rng.integers(-(1 << 23), 1 << 23))
        o, pooled, vmax = golden.bn_act(y, a, b, shift, r=r, r_mult=r_mult, shortcut=r_sc, samples=samples,
                                        relu=relu)
        # outputs start at zero: unprocessed samples are not written (the binding's buffers are zeroed)
        o_in, sums_in = np.zeros((n, c, h, w), np.uint8), np.zeros(n * c + n, np.int64)
        flags = (2 if relu else 0) | (4 if rg else 0)
        out.append(write_case(root / f"bn_act{i}", {"kernel": "bn_act", **geo, "b_flags": flags, "b_shift": shift,
                                                   "b_m1": r_mult, **r_args},
                              dict(b_y=y, samples=idx, b_r=r if rg else empty, b_coef=np.concatenate([a, b]),
                                   b_o_in=o_in, b_sums_in=sums_in, b_o_expect=o.view(np.uint8),
                                   b_sums_expect=np.concatenate([pooled.ravel(), vmax]))))
        o = o.view(np.uint8)
        g_a = rng.integers(-32768, 32768, (n, c, h, w)).astype(np.int16)
        g_b = rng.integers(-32768, 32768, (n,) + gg[:3]).astype(np.int16) if gg else None
        gb_sc = block_ops.Shortcut(*gg[3:]) if gg else block_ops.IDENTITY
        gb_args = dict(zip(("gb_c", "gb_h", "gb_w", "gb_stride", "gb_lo"), gg if gg else (0,) * 5))
        ma, mb = int(rng.integers(1, 1 << 23)), int(rng.integers(-(1 << 23), 1 << 23))
        g_m, red, gate = golden.bn_bwd_reduce(o, y, g_a, ma=ma, g_b=g_b, mb=mb if gg else 0, b_shortcut=gb_sc,
                                              shift=22, r=r, r_shortcut=r_sc, samples=samples)
        out.append(write_case(root / f"bn_reduce{i}", {"kernel": "bn_bwd_reduce", **geo,
                                                      "b_flags": (4 if rg else 0) | (8 if gg else 0), "b_shift": 22,
                                                      "b_m1": ma, "b_m2": mb if gg else 0, **r_args, **gb_args},
                              dict(b_y=y, samples=idx, b_o=o, b_r=r if rg else empty, b_ga=g_a,
                                   b_gb=g_b if gg else empty, b_gm_in=np.zeros((n, c, h, w), np.int16),
                                   b_sums_in=np.zeros(3 * c + 2 * n, np.int64), b_gm_expect=g_m,
                                   b_sums_expect=np.concatenate([red.ravel(), gate.ravel()]))))
        p, q = rng.integers(-(1 << 23), 1 << 23, c), rng.integers(-(1 << 23), 1 << 23, c)
        t = rng.integers(-(1 << 43), 1 << 43, c)
        g_y = golden.bn_bwd_apply(g_m, y, p, q, t, 28, samples=samples)
        out.append(write_case(root / f"bn_apply{i}", {"kernel": "bn_bwd_apply", **geo, "b_shift": 28},
                              dict(b_y=y, samples=idx, b_gm=g_m, b_coef=np.concatenate([p, q, t]),
                                   b_gy_in=np.zeros((n, c, h, w), np.int16), b_gy_expect=g_y)))
    # conv_fwd with BN sums and the weights' sums (b_flags 1 | 16), a list and an empty one
    for i, (sh, samples) in enumerate([(ConvShape(2, 3, 6, 5, 10, 3, 1, 1), [1]),
                                       (ConvShape(1, 2, 4, 4, 3, 1, 2, 0), [])]):
        geo = dict(n=sh.n, ci=sh.ci, h=sh.h, wd=sh.w, co=sh.co, k=sh.k, stride=sh.stride, pad=sh.pad)
        x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
        w = rng.integers(-128, 128, sh.w_shape).astype(np.int8)
        bias = rng.integers(-5000, 5000, sh.co).astype(np.int32)
        m = Dyadic(int(rng.integers(1, 1 << 15)), 20)
        y0 = rng.integers(0, 256, sh.y_shape).astype(np.uint8)
        stats, w_sums = np.zeros((sh.co, 2), np.int64), np.zeros(sh.ci, np.int64)
        y = golden.conv_fwd(x, w, bias, m, stride=sh.stride, pad=sh.pad, relu=True, samples=samples,
                            out=y0.copy(), stats=stats, w_sums=w_sums)
        out.append(write_case(root / f"fwd_bn{i}", {"kernel": "conv_fwd", **geo, "x_unsigned": 1, "has_bias": 1,
                                                  "relu": 1, "mult_m": m.m, "mult_s": m.s, "b_flags": 1 | 16},
                              dict(x=x, w=w, bias=bias, samples=check_samples(samples, sh.n), y_in=y0, y_expect=y,
                                   stats_expect=np.concatenate([stats.ravel(), w_sums]))))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python hls/csim/cases.py OUTDIR")
    print(" ".join(str(p) for p in write_cases(Path(sys.argv[1]))))
