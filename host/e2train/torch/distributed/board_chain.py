"""On paper: a chain of Zynq boards as pipeline stages over Ethernet (docs/distributed.md).

Nothing here ran on a board. Stage times are *modelled*: the fabric kernels' cycles on
the training engine from ``e2train.core.call_price`` (conv_fwd, conv_bwd_data,
conv_bwd_weight_psg and the block operations bn_act, bn_bwd_reduce, bn_bwd_apply at 100 MHz)
plus the ARM's per-channel BN folds priced at ``nn_layers.ARM_OPS_PER_SECOND`` (an assumed
1.2e8 ops/s unless ``e2train calibrate-arm`` measured it) with the device trainer's operation
counts (``nn_layers.OPS_PER_ELEMENT``). The link
carries each cut's activations forward (uint8, one byte per element) and gradients back
(int16, two bytes) over TCP at an assumed throughput; the board link's JSON-lines framing
sends binary as base64 (4/3 bytes per byte).

Step time: paper 003's formula (``partition.analytic_step_time``) over stage times that
include each stage's synchronous sends (as paper 003 measured them, Table 5).

    python -m e2train.torch.distributed.board_chain [--batch 32] [--mbps 100 20 5]
"""
from __future__ import annotations

import argparse

from ...core import call_price, perfmodel
from ...core.shapes import ConvShape
from ...device.nn_layers import ARM_OPS_PER_SECOND, OPS_PER_ELEMENT
from .partition import analytic_step_time, balance

# ARM work per conv output channel (forward; backward): BN's folds, the device trainer's ops
FWD_OPS = OPS_PER_ELEMENT["bn_stats"] + OPS_PER_ELEMENT["bn_fold_fwd"] + OPS_PER_ELEMENT["y_range"]
BWD_OPS = OPS_PER_ELEMENT["bn_fold_bwd"]
PREDICTED_FRACTION = 0.4       # weights decided by the PSG predictor (DESIGN.md calibration: 39-40%)


def _conv_s(shape: ConvShape, residual: bool = False) -> tuple[float, float]:
    """(forward s, backward s) of one conv layer and its BN: kernels, block operations (with the
    shortcut's read for a block's second conv) and the ARM's per-channel folds."""
    n = shape.n
    nw = shape.co * shape.ci * shape.k * shape.k
    f = call_price.call_cycles("conv_fwd", shape, n) / perfmodel.CLOCK_HZ
    # without a layer's decisions every weight-gradient block is priced as swept (an upper bound)
    b = (call_price.call_cycles("conv_bwd_data", shape, n)
         + call_price.call_cycles("conv_bwd_weight_psg", shape, n,
                                  n_predicted=int(PREDICTED_FRACTION * nw))) / perfmodel.CLOCK_HZ
    ho, wo = -(-shape.h // shape.stride), -(-shape.w // shape.stride)
    nchw = (n, shape.co, ho, wo)
    f += call_price.block_work("bn_act", nchw, n, residual=residual).seconds
    b += (call_price.block_work("bn_bwd_reduce", nchw, n, two_sources=residual).seconds
          + call_price.block_work("bn_bwd_apply", nchw, n).seconds)
    return f + shape.co * FWD_OPS / ARM_OPS_PER_SECOND, b + shape.co * BWD_OPS / ARM_OPS_PER_SECOND


def resnet_cifar_layers(depth: int = 20, batch: int = 32, hw: int = 32, width: int = 16):
    """[(name, fwd s, bwd s, elements of the output activation)] for stem, blocks, head."""
    n = (depth - 2) // 6
    out = []
    f, b = _conv_s(ConvShape(batch, 3, hw, hw, width, 3, 1, 1))
    out.append(("stem", f, b, batch * width * hw * hw))
    ci, h = width, hw
    for stage, co in enumerate((width, 2 * width, 4 * width)):
        for j in range(n):
            s = 2 if (stage and j == 0) else 1
            f1, b1 = _conv_s(ConvShape(batch, ci, h, h, co, 3, s, 1))
            h2 = -(-h // s)
            f2, b2 = _conv_s(ConvShape(batch, co, h2, h2, co, 3, 1, 1), residual=True)
            out.append((f"block{len(out) - 1}", f1 + f2, b1 + b2, batch * co * h2 * h2))
            ci, h = co, h2
    fc = batch * ci * (2 + 10) * 2 / ARM_OPS_PER_SECOND          # pooled sums -> means + FC on the ARM
    out.append(("head", fc, 2 * fc, batch * 10))
    return out


def chain(layers, boards: int, mbps: float | None, base64: bool = True) -> dict:
    """Balanced split over ``boards`` and the step time with the link at ``mbps`` MB/s (None:
    no communication, the paper's ideal)."""
    bounds = balance([f + b for _, f, b, _ in layers], boards)
    stages = []
    for s, (a, z) in enumerate(zip(bounds, bounds[1:])):
        f = sum(lay[1] for lay in layers[a:z])
        b = sum(lay[2] for lay in layers[a:z])
        if mbps:
            k = 4 / 3 if base64 else 1.0
            if s < boards - 1:                       # activations to the next board, uint8
                f += k * layers[z - 1][3] / (mbps * 1e6)
            if s > 0:                                # gradients to the previous board, int16
                b += k * 2 * layers[a - 1][3] / (mbps * 1e6)
        stages.append((f, b))
    seq = sum(f + b for _, f, b, _ in layers)
    step = analytic_step_time(stages)
    return {"bounds": bounds, "stages_s": stages, "step_s": step, "sequential_s": seq, "speedup": seq / step}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Predicted pipeline speedup of a chain of Zynq boards (modelled)")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mbps", type=float, nargs="*", default=[100.0, 20.0, 5.0])
    args = ap.parse_args(argv)
    layers = resnet_cifar_layers(args.depth, args.batch)
    seq = sum(f + b for _, f, b, _ in layers)
    print(f"ResNet-{args.depth} on CIFAR (3x32x32), batch {args.batch}, one board: {1e3 * seq:.1f} ms per step "
          f"(modelled: engine kernels (core.call_price) at 100 MHz + ARM at {ARM_OPS_PER_SECOND:.3g} ops/s)")
    for name, f, b, _ in layers:
        print(f"  {name:<8} fwd {1e3 * f:8.2f} ms  bwd {1e3 * b:8.2f} ms")
    for boards in (2, 4):
        for mbps in [None, *args.mbps]:
            r = chain(layers, boards, mbps)
            link = "no link cost (paper's ideal)" if mbps is None else f"link {mbps:g} MB/s, base64"
            print(f"{boards} boards, split {r['bounds']}, {link}: step {1e3 * r['step_s']:.1f} ms, "
                  f"speedup {r['speedup']:.2f}x; stage f/b ms "
                  + "  ".join(f"{1e3 * f:.1f}/{1e3 * b:.1f}" for f, b in r["stages_s"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
