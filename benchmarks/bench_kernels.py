"""C-simulation throughput of the three kernels vs the numpy golden model (int64), measured
side by side in one run on ResNet-CIFAR layer shapes, next to the training engine's
*modelled* GOPS and MAC-slot utilisation on xc7z020 @ 100 MHz (core.call_price; not measured,
no synthesis).

    .venv/bin/python benchmarks/bench_kernels.py [--batch 16] [--repeat 3]

Goals (docs/kernels.md): C-sim conv_fwd >= 5 GMAC/s on one core (CPU time) and >= 10x numpy; the
modelled kernels keep >= 70% of their MAC slots busy. Prints what it gets; fails nothing.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from e2train.core import call_price, csim, engine_map, golden, overlap, perfmodel, psg_schedule
from e2train.core.energy import EnergyModel
from e2train.core.fixedpoint import Dyadic, beta_to_fixed
from e2train.core.shapes import MAX_BATCH, ConvShape


def _best(fn, repeat: int) -> float:
    """Best CPU time of the process over `repeat` calls: the C simulation and the numpy model
    run on one thread, and on a shared machine wall time measures the other processes too."""
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def _psg_table() -> None:
    """Weight gradient, beta_q = 0 vs beta > 0, on digits and ResNet-CIFAR layers: modelled
    cycles on the engine (core.call_price: the kernel's one sweep; the blocks it streamed are its
    own counter, stats[6] over the beats per block), x conv_fwd, modelled energy (zynq7020 model:
    2 W static assumed, plus dynamic)."""
    board = EnergyModel.zynq7020()
    rng = np.random.default_rng(1)
    shapes = [ConvShape(64, 8, 8, 8, 32, 3, 1, 1), ConvShape(64, 32, 4, 4, 32, 3, 1, 1),
              ConvShape(16, 16, 32, 32, 16, 3, 1, 1), ConvShape(16, 32, 16, 16, 32, 3, 1, 1),
              ConvShape(16, 64, 8, 8, 64, 3, 1, 1)]
    print()
    print("weight-gradient kernel call (MODELLED on the engine, xc7z020 @ 100 MHz; gradients t(3)-distributed, "
          "as in training)")
    hdr = (f"{'layer':<22}{'beta':>7}{'predicted':>10}{'cycles':>10}{'vs beta0':>9}{'vs fwd':>8}"
           f"{'exact blocks':>13}{'E total uJ':>11}{'E dyn uJ':>9}{'E mac uJ':>9}")
    print(hdr)
    print("-" * len(hdr))
    for sh in shapes:
        x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
        g = np.clip(rng.standard_t(3, sh.y_shape) * 800, -32768, 32767).astype(np.int16)
        wm = np.zeros(sh.w_shape, np.int32)
        fwd = call_price.call_cycles("conv_fwd", sh, sh.n)
        nblk = call_price.blocks(sh)
        base = None
        for beta in (0.0, 0.05, 0.12):
            bq = beta_to_fixed(beta) if beta else 0
            r, st = csim.conv_bwd_weight_psg_stats(x, g, wm, stride=sh.stride, pad=sh.pad, beta_q=bq, lr_q=1)
            kw = dict(predictor_on=bq != 0, predicted=r.predicted if bq else None)
            w, cyc = call_price.price_call("conv_bwd_weight_psg", sh, sh.n, **kw)
            base = base or cyc
            br = board.breakdown(w)
            name = f"{sh.ci}->{sh.co} {sh.h}px n{sh.n}"
            run = st.decide_beats // max(st.beats_per_tile, 1)      # blocks streamed over every position
            print(f"{name:<22}{beta:>7.2f}{100 * r.n_predicted / wm.size:>9.0f}%{cyc:>10}{cyc / base:>8.2f}x"
                  f"{cyc / fwd:>7.2f}x{run:>8}/{nblk:<4}{br['total'] * 1e6:>11.0f}"
                  f"{(br['total'] - br['static']) * 1e6:>9.1f}{br['mac'] * 1e6:>9.1f}")
    print("one sweep whatever beta: every block's exact sums and G_msb on the same beats, then (beta > 0) the "
          "decision, one weight per cycle (exact blocks = blocks the kernel streamed, from its stats[6]); a decided "
          "sign saves no engine work. E = modelled energy, not measured")


def _engine_table(batch: int) -> None:
    """The training engine (fpga/rtl/train_engine.v) on a ResNet-20 CIFAR training step:
    modelled per layer and pass (perfmodel.engine_training_step)."""
    with_psg = perfmodel.engine_training_step(batch, psg=True)
    no_psg = perfmodel.engine_training_step(batch, psg=False)
    print()
    print(f"training engine {engine_map.ROWS}x{engine_map.COLS} ({perfmodel.engine_dsp()} DSP48E1 with the "
          f"requantisers), ResNet-20 CIFAR step, batch {batch} (MODELLED, xc7z020 @ 100 MHz, not measured)")
    hdr = f"{'layer':<10}{'pass':<10}{'MACs':>14}{'engine cyc':>12}{'loops':>9}{'cycles':>12}{'GMAC/s':>8}  calls bound"
    print(hdr)
    print("-" * len(hdr))
    for r in with_psg["layers"]:
        calls = r["cycles"] - r["loop_cycles"]
        bound = "engine" if calls <= r["blackbox_cycles"] else "shell: output stage/stagers/DDR"
        print(f"{r['layer']:<10}{r['pass']:<10}{r['macs']:>14,}{r['engine_cycles']:>12,}{r['loop_cycles']:>9,}"
              f"{r['cycles']:>12,}{r['gmacs']:>8.2f}  {bound}")
    per: dict = {}
    for r in with_psg["layers"]:
        c, m = per.get(r["pass"], (0, 0))
        per[r["pass"]] = (c + r["cycles"], m + r["macs"])
    print("per pass: " + ", ".join(f"{p} {m / (c / perfmodel.CLOCK_HZ) / 1e9:.2f} GMAC/s" for p, (c, m) in per.items()))
    peak = {"fwd": 2 * engine_map.ROWS * engine_map.COLS, "bwd_data": engine_map.ROWS * engine_map.COLS,
            "wgrad": engine_map.ROWS * engine_map.COLS}
    ideal = with_psg["macs"] / sum(r["macs"] / (peak[r["pass"]] * perfmodel.CLOCK_HZ) for r in with_psg["layers"]) / 1e9
    print(f"step: {no_psg['macs'] / 1e9:.2f} GMAC in {no_psg['seconds'] * 1e3:.1f} ms = "
          f"{no_psg['gmacs']:.2f} GMAC/s effective with beta = 0 (PSG as the kernel runs it is the same sweep, "
          f"exact sums and G_msb on the same beats, plus the G_msb scratch of layers over one weight group); {with_psg['gmacs']:.2f} GMAC/s for a projected PSG schedule the "
          f"kernel does not run (predictor sweep on the input-gradient pass, exact sweep gated). Goal: >= 22 GMAC/s. "
          f"Bound: every pass at the grid's peak (FWD {peak['fwd']}, BWD and WGRAD {peak['wgrad']} MACs per cycle, "
          f"no call overhead or padding) gives {ideal:.2f} GMAC/s")
    em_z = EnergyModel.zynq7020()
    frac = 0.70
    parts = {}
    for psg in (True, False):
        tot: dict = {}
        for name, sh in perfmodel.resnet20_cifar(batch):
            w = perfmodel.engine_wgrad_work(sh, psg=psg, predicted_frac=frac, pred_host=name != "conv1")
            for k, v in em_z.breakdown(w, include_static=False).items():
                tot[k] = tot.get(k, 0.0) + v
        parts[psg] = tot
    dyn = {k: v["total"] for k, v in parts.items()}
    print(f"weight gradient as engine_map lays it out today (the predictor sweep with its own x and g reads, no read "
          f"skipped), modelled dynamic energy (zynq7020 model, not measured): PSG with {frac:.0%} of the "
          f"weights decided (assumed) {dyn[True] * 1e3:.1f} mJ vs beta = 0 {dyn[False] * 1e3:.1f} mJ per step = "
          f"{dyn[True] / dyn[False]:.2f}x (goal <= 0.7x)")
    for psg in (True, False):
        print(f"  {'PSG     ' if psg else 'beta = 0'}: " + ", ".join(f"{k} {parts[psg][k] * 1e3:.2f} mJ"
                                                         for k in ("mac", "ops", "sram", "dram")))
    e_pred, e_exact = em_z.mac_pj(4, 10), em_z.mac_pj(8, 16)
    print(f"  bound: the MACs alone give {(e_pred + (1 - frac) * e_exact) / e_exact:.2f}x (a 4x10 predictor MAC "
          f"{e_pred:.3f} pJ for every weight-position, an 8x16 exact MAC {e_exact:.3f} pJ for {1 - frac:.0%}); "
          "the predictor's sweep must read x and g from DDR a second time (a layer's operands exceed the BRAM "
          "at this batch), and DDR bytes outweigh the MACs")
    print("engine cyc = the engine's own cycles (calls back to back, the count the cocotb bench checks "
          "against the RTL); loops = the pass's loops outside its calls, the engine idle (the forward's and "
          "input gradient's weight loads, a byte a cycle; the forward's bias loop; the weight gradient's update "
          "and, for a layer of more than one weight group, its partial sums read out, a weight a cycle: the C "
          "simulation's counts); cycles = "
          "through the HLS blackbox (N + 8 per call, RTL-counted, and a flush), each call at least its output "
          "stage's trips (the call before's rows, an output a cycle) and its stagers', and the pass at least its "
          "DDR bytes at the DDR rate, plus the loops (perfmodel.engine_pass); calls bound = what sets the calls' "
          "pace")
    loops = sum(r["loop_cycles"] for r in no_psg["layers"])
    print(f"the loops outside the calls: {loops / perfmodel.CLOCK_HZ * 1e3:.1f} ms of the step's "
          f"{no_psg['seconds'] * 1e3:.1f} ms ({loops / no_psg['cycles']:.1%})")


def _overlap_table(batch: int) -> None:
    """The engine's ResNet-20 step with its block operations and the ARM's share (BN's
    per-channel folds, and each layer's int8 weight copy re-derived after its update as side
    work, at the device trainer's op counts) timed at a few ARM rates: the critical path of
    core.overlap beside the sum."""
    from e2train.device.nn_layers import ARM_OPS_PER_SECOND, OPS_PER_ELEMENT as OPS
    from e2train.device.nn_qconv import rederive_ops

    fwd_ops = OPS["bn_stats"] + OPS["bn_fold_fwd"] + OPS["y_range"]
    bwd_ops = OPS["bn_fold_bwd"]
    print()
    print(f"ResNet-20 CIFAR step on the engine with its block operations and ARM work, batch {batch} (MODELLED; "
          f"ARM at a flat rate, {fwd_ops} ops per output channel forward, {bwd_ops} backward, and the weight "
          f"copy's re-derivation as side work, {OPS['weight_codes']} ops a weight; the forward writes BN's sums and, "
          f"where an input gradient follows, the weights' sums of |w| for its gain)")
    print(f"{'ARM ops/s':>10}{'fabric ms':>11}{'ARM ms':>9}{'sum ms':>9}{'critical ms':>13}{'critical/sum':>14}")
    for rate in (0.5e8, ARM_OPS_PER_SECOND, 4e8):
        layers = []
        for name, sh in perfmodel.resnet20_cifar(batch):
            host = name != "conv1"
            c2 = name.endswith("c2")
            nchw = (sh.n, sh.co, sh.ho, sh.wo)
            sec = {p: perfmodel.engine_pass(p, sh, psg=p != "fwd", pred_host=host)["cycles"] / perfmodel.CLOCK_HZ
                   for p in (("fwd", "bwd_data", "wgrad") if host else ("fwd", "wgrad"))}
            # the forward's sums written out after its calls: BN's, and the gain's where an input gradient follows
            sec["fwd"] += (perfmodel.fwd_channel_cycles(sh, True) - perfmodel.fwd_channel_cycles(sh, False)
                           + (perfmodel.fwd_w_sums_cycles(sh, sh.n) if host else 0)) / perfmodel.CLOCK_HZ
            # bn_act follows the layer's forward; bn_bwd_reduce and bn_bwd_apply come before its
            # backward passes (the fold between them on the ARM): their fabric time joins those passes
            act = call_price.block_work("bn_act", nchw, sh.n, residual=c2).seconds
            bwd = (call_price.block_work("bn_bwd_reduce", nchw, sh.n, two_sources=c2).seconds
                   + call_price.block_work("bn_bwd_apply", nchw, sh.n).seconds)
            layers.append(dict(name=name, fwd=sec["fwd"] + act, bwd_data=sec.get("bwd_data", 0.0),
                               wgrad=sec["wgrad"] + bwd, fwd_arm=fwd_ops * sh.co / rate, bwd_arm=bwd_ops * sh.co / rate,
                               side_arm=rederive_ops(sh.co, sh.ci * sh.k * sh.k) / rate))
        r = overlap.schedule(overlap.chain_step_tasks(layers))
        print(f"{rate:>10.2g}{r['busy_s']['fabric'] * 1e3:>11.1f}{r['busy_s']['arm'] * 1e3:>9.1f}"
              f"{r['sum_s'] * 1e3:>9.1f}{r['critical_s'] * 1e3:>13.1f}{r['critical_s'] / r['sum_s']:>14.3f}")
    print("  the block operations' fabric time is added to the layer's forward and weight-gradient passes "
          "(the task graph has no slot of its own for them); the ARM folds a few ops per channel between them; "
          "a layer's weight copy runs beside the next layer's backward passes (core.overlap's side work; the "
          "first layer's after the step's last pass); "
          "DDR transfers already overlap inside each pass (perfmodel.engine_pass takes the max)")


def captured_decisions(beta: float = 0.05, seed: int = 0, epochs: int = 10) -> dict | None:
    """{capture point: [decided (co, ci, k, k) per conv layer of ResNet-20 on digits, in order]}
    from bench-psg's cached captures (contract v2 split, the layer's own activation scale), or
    None when they are not cached (``make bench-psg`` trains and caches them)."""
    import bench_psg                                   # benchmarks/ is the script's own directory
    from e2train.core.fixedpoint import beta_to_fixed as b2f

    ident = [bench_psg.MODELS, epochs, seed, bench_psg.fxp.CONTRACT_VERSION, 1]
    import hashlib
    import json
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:12]
    if not (bench_psg.CACHE / f"cases-{key}.npz").exists():
        return None
    out: dict = {}
    for case in bench_psg.load_cases(epochs, seed, False):
        if case["model"] != "resnet20":
            continue
        g_msb, g_exact = bench_psg.sums(case, bench_psg.x_codes(case), bench_psg.g_codes(case), "half_away")
        _, decided, _ = golden.psg_decide(g_msb, g_exact, b2f(beta))
        out.setdefault(case["point"], []).append(decided)
    return out or None


def _psg_schedule_table(batch: int) -> None:
    """Weight gradient with PSG under core.psg_schedule against beta = 0, per layer and in total,
    with the predictor's decisions measured on captured ResNet-20 layers (digits; the same
    weight shapes as the CIFAR layers but for conv1)."""
    em_z = EnergyModel.zynq7020()
    layers = perfmodel.resnet20_cifar(batch)
    dec = captured_decisions()
    print()
    print(f"weight gradient with PSG scheduled (core.psg_schedule), beta 0.05, ResNet-20 CIFAR shapes, batch {batch}: "
          "modelled dynamic energy (zynq7020 model, not measured) over beta = 0")
    if dec is None:
        print("  no captured layer decisions (run `make bench-psg` once to capture them): every channel counted "
              "as needed by the exact sweep")
        dec = {"none captured": [None] * len(layers)}
    base = {name: em_z.dynamic_j(perfmodel.engine_wgrad_work(sh, psg=False)) for name, sh in layers}
    for point, masks in dec.items():
        if len(masks) != len(layers):
            print(f"  {point}: {len(masks)} captured layers, the CIFAR model has {len(layers)}: skipped")
            continue
        print(f"  decisions: {point}")
        print(f"  {'layer':<10}{'decided':>8}{'co skip':>8}{'ci skip':>8}{'blk skip':>9}"
              f"{'beta0 uJ':>10}{'PSG own g':>10}{'PSG g shared':>13}")
        tot = {"base": 0.0, False: 0.0, True: 0.0, "ex_ddr": 0.0}
        for (name, sh), d in zip(layers, masks):
            host = name != "conv1"
            if d is not None and d.shape == sh.w_shape:
                need, tag = psg_schedule.exact_need(d), ""
            else:          # conv1: digits has 1 input channel, CIFAR 3; its decided share, every channel needed
                need = psg_schedule.all_needed(sh, float(d.mean()) if d is not None else 0.7)
                tag = " *"
            e = {gs: em_z.dynamic_j(psg_schedule.scheduled_wgrad_work(sh, need, g_shared=gs, pred_host=host))
                 for gs in (False, True)}
            tot["base"] += base[name]
            for gs in (False, True):
                tot[gs] += e[gs]
            ex = psg_schedule.exact_sweep_ddr(sh, need) - psg_schedule.reused_bytes(sh, need, g_shared=host)
            tot["ex_ddr"] += ex * em_z.dram_pj_per_byte * 1e-12
            print(f"  {name + tag:<10}{need['decided_share']:>8.0%}{need['co_skip_share']:>8.0%}"
                  f"{need['ci_skip_share']:>8.0%}{need['block_skip_share']:>9.0%}{base[name] * 1e6:>10.0f}"
                  f"{e[False] / base[name]:>9.2f}x{e[True] / base[name]:>12.2f}x")
        print(f"  {point} total: beta = 0 {tot['base'] * 1e3:.2f} mJ; PSG, predictor reads its own g "
              f"{tot[False] * 1e3:.2f} mJ = {tot[False] / tot['base']:.2f}x; PSG, predictor on the input-gradient "
              f"pass's g stream {tot[True] * 1e3:.2f} mJ = {tot[True] / tot['base']:.2f}x (goal <= 0.7x)")
        need_skip = (tot[True] - 0.7 * tot["base"]) / tot["ex_ddr"]
        print(f"  {point} bound: with g shared, the exact sweep's DDR reads (x and g once more, after the predictor) "
              f"cost {tot['ex_ddr'] * 1e3:.2f} mJ; if it read nothing (x and g of a layer kept on chip: 1-3 MB at this "
              f"batch against {psg_schedule.chunk_buffer_bytes() // 1024} KB of chunk buffers) PSG would be "
              f"{(tot[True] - tot['ex_ddr']) / tot['base']:.2f}x; the goal needs {need_skip:.0%} of those bytes skipped, "
              "i.e. that share of channels with every weight decided (measured above)")
    print("  co/ci skip = output/input channels whose weights are all decided (the exact sweep skips their g/x "
          f"reads); blk skip = engine blocks ({engine_map.ROWS} x {engine_map.COLS}) all decided (their calls do not "
          "run); * = conv1: its "
          "digits decisions have another shape, every channel counted as needed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engine-batch", type=int, default=64, help="batch of the engine's ResNet-20 step")
    ap.add_argument("--engine-only", action="store_true", help="only the training engine's modelled step")
    args = ap.parse_args()
    if not 1 <= args.engine_batch <= MAX_BATCH:
        ap.error(f"--engine-batch must be in 1..{MAX_BATCH}, got {args.engine_batch}")
    if args.engine_only:
        _engine_table(args.engine_batch)
        _overlap_table(args.engine_batch)
        _psg_schedule_table(args.engine_batch)
        return 0
    csim.load()
    # One thread for numpy too: the C simulation runs on one core.
    print(f"times: best process CPU time; threads: C-sim 1; numpy BLAS threads as configured (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
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
        r = csim.conv_bwd_weight_psg(x, g, wm, beta_q=beta_q, lr_q=1, **kw)
        runs = [
            ("conv_fwd", lambda: csim.conv_fwd(x, w, None, m, **kw),
             lambda: golden.conv_fwd(x, w, None, m, **kw), {}),
            ("conv_bwd_data", lambda: csim.conv_bwd_data(g, w, m, in_hw=(sh.h, sh.w), **kw),
             lambda: golden.conv_bwd_data(g, w, m, in_hw=(sh.h, sh.w), **kw), {}),
            ("conv_bwd_weight_psg", lambda: csim.conv_bwd_weight_psg(x, g, wm, beta_q=beta_q, lr_q=1, **kw),
             lambda: golden.conv_bwd_weight_psg(x, g, wm, beta_q=beta_q, lr_q=1, **kw),
             dict(predicted=r.predicted)),
        ]
        name = f"{sh.ci}->{sh.co} {sh.h}px s{sh.stride} n{sh.n}"
        for kernel, fc, fg, mkw in runs:
            macs = sh.macs()
            tc = _best(fc, args.repeat)
            tg = _best(fg, max(1, args.repeat - 1))
            cyc = call_price.call_cycles(kernel, sh, sh.n, **mkw)
            gops = 2 * macs / (cyc / perfmodel.CLOCK_HZ) / 1e9
            util = call_price.utilisation(kernel, sh, sh.n, **mkw)
            print(f"{name:<22}{kernel:<22}{macs / tc / 1e9:>13.2f}{macs / tg / 1e9:>13.3f}{tg / tc:>7.1f}x"
                  f"{gops:>12.2f}{100 * util:>11.1f}%")
    print("model GOPS / busy: the call on the training engine (core.call_price; 2 ops per MAC; busy = the "
          "layer's MACs over the grid's MAC slots, two packed int8 MACs per DSP48E1 in the forward pass); "
          "resources: `make fit`")
    _psg_table()
    _engine_table(args.engine_batch)
    _overlap_table(args.engine_batch)
    _psg_schedule_table(args.engine_batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
