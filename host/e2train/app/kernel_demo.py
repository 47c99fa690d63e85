"""`e2train kernels`: the three kernels' C simulation on a real mini-batch, against the golden
model, with the performance model's cycles on xc7z020.

A mini-batch of scikit-learn digits (8x8, or upsampled) goes through two 3x3 convolutions
(1 -> C channels with int8 input, then the ResNet-ish C -> C layer with uint8 input after a
fused ReLU) and a float average-pool + linear head whose cross-entropy gradient, quantised
to int16, is the real g_y of the second layer. The second layer's three kernels run through
the C simulation and the golden model; outputs are compared bit for bit. Times and cycles
printed are *modelled* (e2train.core.call_price on the training engine), not measured on a board.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import call_price, csim, golden, perfmodel
from ..core.fixedpoint import INT8, INT16, UINT8, beta_to_fixed, lr_to_fixed, master_frac_bits, quantize, \
    requant_multiplier, scale_for, weight_codes
from ..core.shapes import ConvShape


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--channels", type=int, default=16, help="channels of the conv layers (default 16)")
    p.add_argument("--upsample", type=int, default=2, choices=(1, 2, 4),
                   help="upsample the 8x8 digits by this factor (default 2: 16x16)")
    p.add_argument("--beta", type=float, default=0.05, help="PSG threshold beta in (0, 1] (default 0.05)")
    p.add_argument("--active", type=float, default=1.0,
                   help="fraction of samples the SLU gate keeps in the layer (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random layer weights and of the SLU keep list (default 0)")


def _mini_batch(batch: int, upsample: int) -> tuple[np.ndarray, np.ndarray]:
    from ..data.datasets import load
    x, y, _, _ = load("digits")
    if not 1 <= batch <= len(x):
        raise SystemExit(f"--batch must be in 1..{len(x)}, got {batch}")
    x = x[:batch]
    if upsample > 1:
        x = x.repeat(upsample, axis=2).repeat(upsample, axis=3)
    return x.astype(np.float64), y[:batch]


def _compare(name: str, got: np.ndarray, want: np.ndarray, rows: list) -> bool:
    same = got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want)
    diff = int(np.count_nonzero(got != want)) if got.shape == want.shape else got.size
    rows.append((name, "yes" if same else "NO", f"{got.size - diff}/{got.size}"))
    return same


@dataclass
class _Layer:
    """The second (C -> C) layer as the kernels see it, with what its scales came from."""

    x: np.ndarray                      # uint8 input (layer 1's fused-ReLU output)
    w_master: np.ndarray               # int32 master weights
    frac: int                          # fractional bits of the masters
    w: np.ndarray                      # int8 weight codes
    s_w: Any                           # their scale
    s_x: Any                           # the input's scale
    keep: np.ndarray                   # samples the SLU gate keeps
    shape: ConvShape
    m: Any                             # forward requantisation multiplier
    s_y: Any                           # the output's scale


def run(args: argparse.Namespace) -> int:
    if not 0 < args.active <= 1:
        print(f"--active must be in (0, 1], got {args.active}", file=sys.stderr)
        return 2
    if args.batch < 1:                 # the digits set's size is checked where it is loaded
        print(f"--batch must be at least 1, got {args.batch}", file=sys.stderr)
        return 2
    try:
        beta_q = beta_to_fixed(args.beta)
        csim.load()
    except (ValueError, csim.CsimUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    xf, labels = _mini_batch(args.batch, args.upsample)
    layer = _layers(xf, args.channels, args.active, rng)
    rows: list = []
    ok = True
    y_c = csim.conv_fwd(layer.x, layer.w, None, layer.m, pad=1, samples=layer.keep)
    y_g = golden.conv_fwd(layer.x, layer.w, None, layer.m, pad=1, samples=layer.keep)
    ok &= _compare("conv_fwd        y", y_c, y_g, rows)
    g2, s_g = _head_gradient(y_g, labels, layer, args.channels, rng)
    ok &= _check_bwd_data(g2, s_g, layer, rows)
    psg, psg_ok = _check_psg(g2, layer, args.beta, beta_q, rows)
    ok &= psg_ok
    _print_comparison(xf, layer, rows)
    r, _ = _print_psg(psg, args.beta, beta_q)
    _print_modelled(layer, r)
    print("bit-exact: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


def _layers(xf: np.ndarray, c: int, active: float, rng: np.random.Generator) -> _Layer:
    """Layer 1 run on the batch (its output is layer 2's input) and layer 2's weights and scales."""
    n = len(xf)
    # Layer 1: int8 input (standardised pixels are signed), ReLU fused -> uint8.
    s_x = scale_for(np.abs(xf).max(), INT8)
    x0 = quantize(xf, s_x, INT8)
    w1f = rng.normal(0, np.sqrt(2 / 9), (c, 1, 3, 3))
    s_w1 = scale_for(np.abs(w1f).max(), INT8)
    w1 = quantize(w1f, s_w1, INT8)
    sh1 = ConvShape.of(x0, w1, 1, 1)
    acc1 = golden.conv_fwd_acc(x0, w1, sh1)
    s_y1 = scale_for(max(int(acc1.max()), 1) * s_x.value * s_w1.value, UINT8)   # max of the batch
    m1 = requant_multiplier(s_x.value * s_w1.value, s_y1)
    x1 = csim.conv_fwd(x0, w1, None, m1, pad=1, relu=True)

    # Layer 2: the ResNet-ish C -> C layer, uint8 input; an SLU gate keeps some samples.
    w2f = rng.normal(0, np.sqrt(2 / (9 * c)), (c, c, 3, 3))
    frac = master_frac_bits(np.abs(w2f).max())
    w2m = np.round(w2f * 2.0**frac).astype(np.int32)
    w2, s_w2 = weight_codes(w2m, frac)
    keep = np.sort(rng.permutation(n)[: max(1, int(round(active * n)))]).astype(np.int32)
    sh2 = ConvShape.of(x1, w2, 1, 1)
    acc2 = golden.conv_fwd_acc(x1[keep], w2, sh2)
    s_y2 = scale_for(max(int(np.abs(acc2).max()), 1) * s_y1.value * s_w2.value, INT8)
    m2 = requant_multiplier(s_y1.value * s_w2.value, s_y2)
    return _Layer(x=x1, w_master=w2m, frac=frac, w=w2, s_w=s_w2, s_x=s_y1, keep=keep, shape=sh2, m=m2, s_y=s_y2)


def _head_gradient(y: np.ndarray, labels: np.ndarray, layer: _Layer, c: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, Any]:
    """g_y of layer 2 (int16) and its scale, from a float head: global average pool + linear,
    softmax cross-entropy."""
    n, sh2, keep = len(labels), layer.shape, layer.keep
    yf = y.astype(np.float64) * layer.s_y.value
    head = rng.normal(0, 1 / np.sqrt(c), (c, 10))
    logits = yf.mean(axis=(2, 3)) @ head
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(n), labels] -= 1
    gf = np.zeros(sh2.y_shape)
    gf[keep] = ((p / n) @ head.T)[keep, :, None, None] / (sh2.ho * sh2.wo)
    s_g = scale_for(np.abs(gf).max(), INT16)
    return quantize(gf, s_g, INT16), s_g


def _check_bwd_data(g2: np.ndarray, s_g: Any, layer: _Layer, rows: list) -> bool:
    """conv_bwd_data through the C simulation and the golden model, compared."""
    w2, sh2, keep = layer.w, layer.shape, layer.keep
    s_gx = scale_for(np.abs(golden.conv_bwd_data(g2, w2, requant_multiplier(1.0, scale_for(1.0, INT16)),
                                                 in_hw=(sh2.h, sh2.w), pad=1, samples=keep)).max() or 1.0, INT16)
    mb = requant_multiplier(s_g.value * layer.s_w.value, s_gx)
    gx_c = csim.conv_bwd_data(g2, w2, mb, in_hw=(sh2.h, sh2.w), pad=1, samples=keep)
    gx_g = golden.conv_bwd_data(g2, w2, mb, in_hw=(sh2.h, sh2.w), pad=1, samples=keep)
    return _compare("conv_bwd_data   g_x", gx_c, gx_g, rows)


def _check_psg(g2: np.ndarray, layer: _Layer, beta: float, beta_q: int, rows: list) -> tuple[dict, bool]:
    """conv_bwd_weight_psg with the predictor on and off, compared; ({beta_q: (result, stats)}, ok)."""
    lr_q = lr_to_fixed(1e-3, layer.frac)
    psg, ok = {}, True
    for label, bq in ((f"beta={beta}", beta_q), ("beta_q=0 (off)", 0)):
        r_c, st = csim.conv_bwd_weight_psg_stats(layer.x, g2, layer.w_master, pad=1, beta_q=bq, lr_q=lr_q,
                                                 samples=layer.keep)
        r_g = golden.conv_bwd_weight_psg(layer.x, g2, layer.w_master, pad=1, beta_q=bq, lr_q=lr_q,
                                         samples=layer.keep)
        ok &= _compare(f"psg {label:<11} W", r_c.w_master, r_g.w_master, rows)
        ok &= _compare(f"psg {label:<11} sign", r_c.sign, r_g.sign, rows)
        ok &= _compare(f"psg {label:<11} predicted", r_c.predicted, r_g.predicted, rows)
        same_max = r_c.gmsb_absmax == r_g.gmsb_absmax
        rows.append((f"psg {label:<11} max|G_msb|", "yes" if same_max else "NO", f"{r_c.gmsb_absmax}"))
        ok &= same_max
        psg[bq] = (r_c, st)
    return psg, ok


def _print_comparison(xf: np.ndarray, layer: _Layer, rows: list) -> None:
    n, sh2 = len(xf), layer.shape
    print(f"digits mini-batch: {n} samples {xf.shape[2]}x{xf.shape[3]}, layer {sh2.ci}->{sh2.co} 3x3 pad 1, "
          f"SLU keeps {layer.keep.size}/{n} samples")
    print(f"{'C simulation vs golden model':<34}{'bit-exact':>10}{'equal':>16}")
    for name, same, cnt in rows:
        print(f"  {name:<32}{same:>10}{cnt:>16}")


def _print_psg(psg: dict, beta: float, beta_q: int) -> tuple[Any, Any]:
    """What the predictor decided and the engine work that ran; the predictor-on (result, stats)."""
    r, st = psg[beta_q]
    nw = r.predicted.size
    print(f"PSG beta={beta} (beta_q={beta_q}): {r.n_predicted}/{nw} weights decided by the MSB predictor "
          f"({100 * r.n_predicted / nw:.1f}%); one sweep: exact MACs {st.exact_terms} and predictor MACs "
          f"{st.predict_terms} of {nw * st.beats_per_tile} (every weight: the exact sums run beside the "
          f"predictor, so a decided sign saves no engine work)")
    _, st0 = psg[0]
    print(f"  predictor off: predictor MACs {st0.predict_terms}, exact MACs {st0.exact_terms}")
    return r, st


def _print_modelled(layer: _Layer, r: Any) -> None:
    """The engine's cycles and MAC-slot use for the layer's kernel calls (core.call_price, modelled)."""
    sh2, n_keep = layer.shape, layer.keep.size
    print("modelled on xc7z020 @ 100 MHz (e2train.core.call_price, the training engine; not measured, no synthesis):")
    calls = [("conv_fwd", {}), ("conv_bwd_data", {}),
             ("conv_bwd_weight_psg", dict(predicted=r.predicted)),
             ("conv_bwd_weight_psg", dict(predictor_on=False))]
    for kernel, kw in calls:
        cyc = call_price.call_cycles(kernel, sh2, n_keep, **kw)
        util = call_price.utilisation(kernel, sh2, n_keep, **kw)
        tag = kernel + (" (beta_q=0)" if kw.get("predictor_on") is False else "")
        print(f"  {tag:<32}{cyc:>12} cycles {1e6 * cyc / perfmodel.CLOCK_HZ:>10.1f} us  "
              f"{100 * util:5.1f}% of the engine's MAC slots busy")